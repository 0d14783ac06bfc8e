// Writes ffi/symbols.ts (the symbol table) and ffi/codes.ts (op, dtype and other codes, the status
// block's layout) from native/mdm.h, so that a new op is declared in one place. Run after changing
// the header:  deno run -A scripts/gen_ffi.ts
import { type Contract, denoType, readContract } from "./ffi_contract.ts";

const HEADER = "// Generated from native/mdm.h by scripts/gen_ffi.ts: edit the header, not this file.\n";

function symbolsSource(c: Contract): string {
  const lines = [
    HEADER,
    "// The C ABI of native/, one entry per exported function; every handle and array is a pointer.",
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
    const params = f.params.map((p) => JSON.stringify(denoType(p.type))).join(", ");
    lines.push(`  ${f.name}: { parameters: [${params}], result: ${JSON.stringify(denoType(f.result))} },`);
  }
  lines.push("} as const;", "", "/** The type of the symbol table. */", "export type Symbols = typeof symbols;", "");
  lines.push("/** Each function's C declaration, as the header writes it. */");
  lines.push("export const PROTOTYPES: Record<keyof Symbols, string> = {");
  for (const f of c.functions) lines.push(`  ${f.name}: ${JSON.stringify(f.prototype)},`);
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
