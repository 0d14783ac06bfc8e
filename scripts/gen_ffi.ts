// Writes ffi/symbols.ts (the symbol table) and ffi/codes.ts (op, dtype and other codes, the status
// block's layout) from native/mdm.h, so that a new op is declared in one place. Run after changing
// the header:  deno run -A scripts/gen_ffi.ts
import { type Contract, denoParam, denoResult, nativeKind, readContract } from "./ffi_contract.ts";

const HEADER = "// Generated from native/mdm.h by scripts/gen_ffi.ts: edit the header, not this file.\n";

const TS_PARAM = {
  pointer: "NativePointer | null",
  buffer: "NativeBuffer | null",
  i32: "number",
  f64: "number",
  i64: "number | bigint",
  u64: "number | bigint",
  void: "void",
};
const TS_RESULT = { ...TS_PARAM, pointer: "NativePointer | null", buffer: "NativePointer | null" };

function symbolsSource(c: Contract): string {
  const lines = [
    HEADER,
    "// The C ABI of native/, one entry per exported function: for Deno.dlopen, for koffi (its C",
    "// declaration, every pointer a void *) and as TypeScript signatures. Host memory (sizes, data,",
    "// arrays of handles) crosses as a typed array; native objects (handles, statuses) as pointers.",
    'import type { NativeBuffer, NativePointer } from "./port.ts";',
    "",
    "/** The shim's functions and their FFI types, for `Deno.dlopen`. */",
    "export const symbols = {",
  ];
  let section = "";
  for (const f of c.functions) {
    if (f.section !== section) {
      section = f.section;
      lines.push(`  // ${section}`);
    }
    const params = f.params.map((p) => JSON.stringify(denoParam(p.type, c.types))).join(", ");
    lines.push(`  ${f.name}: { parameters: [${params}], result: ${JSON.stringify(denoResult(f.result, c.types))} },`);
  }
  lines.push("} as const;", "");
  lines.push("/** The shim's functions as the port presents them, with one signature whatever the runtime. */");
  lines.push("export interface NativeFunctions {");
  for (const f of c.functions) {
    const params = f.params.map((p) => `${p.name}: ${TS_PARAM[nativeKind(p.type, c.types)]}`).join(", ");
    lines.push(`  ${f.name}(${params}): ${TS_RESULT[nativeKind(f.result, c.types)]};`);
  }
  lines.push("}", "");
  lines.push("/** Each function's C declaration with every pointer a `void *`, as koffi takes it. */");
  lines.push("export const PROTOTYPES: Record<keyof NativeFunctions, string> = {");
  const cType = (t: string) => {
    const k = nativeKind(t, c.types);
    return k === "pointer" || k === "buffer" ? "void *" : t.replace(/\bconst\s+/g, "");
  };
  for (const f of c.functions) {
    const params = f.params.length ? f.params.map((p) => `${cType(p.type)} ${p.name}`).join(", ") : "void";
    lines.push(`  ${f.name}: ${JSON.stringify(`${cType(f.result)} ${f.name}(${params})`)},`);
  }
  lines.push("};", "");
  return lines.join("\n");
}

function codesSource(c: Contract): string {
  const lines = [HEADER, "// The codes of native/mdm.h's enums, keyed in camelCase.", ""];
  for (const e of c.enums) {
    lines.push(`/** \`enum ${e.cName}\`. */`);
    lines.push(`export const ${e.tsName} = {`);
    for (const [k, v] of e.members) lines.push(`  ${k}: ${v},`);
    lines.push("} as const;", "");
  }
  lines.push("/** Byte offsets of `mdm_status`'s fields, and its size. */");
  lines.push(
    `export const STATUS_LAYOUT = { ${
      Object.entries(c.status.fields).map(([k, v]) => `${k}: ${v}`).join(", ")
    }, size: ${c.status.size} } as const;`,
    "",
  );
  return lines.join("\n");
}

/** The generated files' contents, keyed by path relative to the repository root. */
export function generate(c: Contract): Record<string, string> {
  return { "ffi/symbols.ts": symbolsSource(c), "ffi/codes.ts": codesSource(c) };
}

if (import.meta.main) {
  const root = new URL("../", import.meta.url);
  const files = generate(readContract());
  for (const [path, text] of Object.entries(files)) Deno.writeTextFileSync(new URL(path, root), text);
  const fmt = new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", ...Object.keys(files)], cwd: root }).outputSync();
  if (!fmt.success) throw new Error(new TextDecoder().decode(fmt.stderr));
  console.log(`wrote ${Object.keys(files).join(" and ")} from native/mdm.h`);
}
