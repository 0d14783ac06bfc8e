// native/mdm.h is the one native contract: the generated ffi/ tables and the built library's
// exported symbols must agree with it, so that a new op is declared in one place.
import assert from "node:assert/strict";
import * as codes from "../ffi/codes.ts";
import { PROTOTYPES, symbols } from "../ffi/symbols.ts";
import { denoParam, denoResult, readContract } from "../scripts/ffi_contract.ts";
import { generate } from "../scripts/gen_ffi.ts";
import { ROOT } from "./helpers/scripts.ts";

const contract = readContract();

Deno.test("ffi/symbols.ts declares exactly mdm.h's functions with their FFI types", () => {
  // Host memory crosses as a buffer, native objects as pointers.
  const byName = Object.fromEntries(contract.functions.map((f) => [f.name, f]));
  assert.deepEqual(symbols.mdm_from_data.parameters, ["buffer", "i64", "i32", "buffer", "i32", "i32", "pointer"]);
  assert.deepEqual(symbols.mdm_cat.parameters, ["buffer", "i32", "i32", "pointer"]);
  assert.equal(symbols.mdm_status_new.result, "pointer");
  assert.ok(byName.mdm_unary);
  assert.deepEqual(Object.keys(symbols), contract.functions.map((f) => f.name));
  for (const f of contract.functions) {
    const entry = symbols[f.name as keyof typeof symbols];
    assert.deepEqual(entry.parameters, f.params.map((p) => denoParam(p.type, contract.types)), `${f.name}: parameters`);
    assert.equal(entry.result, denoResult(f.result, contract.types), `${f.name}: result`);
    // koffi's declaration: the same name, parameter names and count, every pointer a void *.
    const proto = PROTOTYPES[f.name as keyof typeof symbols];
    assert.match(proto, new RegExp(`\\b${f.name}\\(`));
    assert.equal(
      proto.includes("(void)") ? 0 : proto.split(",").length,
      f.params.length,
      `${f.name}: prototype ${proto}`,
    );
  }
});

Deno.test("ffi/codes.ts holds mdm.h's enums and status layout", () => {
  const exported = codes as unknown as Record<string, Record<string, number>>;
  for (const e of contract.enums) assert.deepEqual(exported[e.tsName], Object.fromEntries(e.members), e.cName);
  // The block's layout by hand: int32 code, int32 reserved, then an 8-byte-aligned pointer.
  assert.deepEqual(codes.STATUS_LAYOUT, { code: 0, reserved: 4, message: 8, size: 16 });
});

Deno.test("the generated files are what scripts/gen_ffi.ts writes today", async () => {
  for (const [path, text] of Object.entries(generate(contract))) {
    const fmt = new Deno.Command(Deno.execPath(), {
      args: ["fmt", "--ext", "ts", "-"],
      cwd: ROOT,
      stdin: "piped",
      stdout: "piped",
    })
      .spawn();
    const writer = fmt.stdin.getWriter();
    await writer.write(new TextEncoder().encode(text));
    await writer.close();
    const formatted = new TextDecoder().decode((await fmt.output()).stdout);
    assert.equal(
      Deno.readTextFileSync(`${ROOT}${path}`),
      formatted,
      `${path} is stale: run deno run -A scripts/gen_ffi.ts`,
    );
  }
});

Deno.test("the library exports exactly mdm.h's functions", () => {
  const lib = Deno.env.get("MDM_NATIVE_LIB") || `${ROOT}build/libmdm_torch.so`;
  const nm = new Deno.Command("nm", { args: ["-D", "--defined-only", lib], stdout: "piped" }).outputSync();
  assert.ok(nm.success, `nm -D ${lib} failed`);
  const exported = new TextDecoder().decode(nm.stdout).split("\n")
    .map((line) => line.trim().split(/\s+/)[2])
    .filter((name) => name?.startsWith("mdm_"))
    .sort();
  assert.deepEqual(exported, contract.functions.map((f) => f.name).sort());
});
