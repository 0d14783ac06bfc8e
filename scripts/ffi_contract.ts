// Reads native/mdm.h, the native contract: its enums (op, dtype and other codes), the status block's
// layout and the functions with their C types. scripts/gen_ffi.ts writes ffi/ from it, and
// tests/contract_test.ts checks that ffi/ and the built library agree with it.

/** One exported function: name, C return type, C parameter types, section of the header. */
export interface CFunction {
  name: string;
  result: string;
  params: { type: string; name: string }[];
  section: string;
  /** The declaration as written, normalised to one line (what koffi takes). */
  prototype: string;
}

/** One enum: its TypeScript name (UNARY for mdm_unary_op) and its members, keyed in camelCase. */
export interface CEnum {
  cName: string;
  tsName: string;
  members: [string, number][];
}

export interface Contract {
  types: NativeTypes;
  enums: CEnum[];
  functions: CFunction[];
  /** Byte offsets of the status block's fields, and its size. */
  status: { fields: Record<string, number>; size: number };
}

const SCALARS: Record<string, "i32" | "i64" | "u64" | "f64"> = {
  int32_t: "i32",
  int64_t: "i64",
  uint64_t: "u64",
  double: "f64",
};

/**
 * The native-owned types of the header: opaque handles (`typedef struct x_s* name;`) and structs
 * (`typedef struct x name;`). A pointer to one of these, or a handle itself, is native memory and
 * crosses as a pointer; any other pointer (`int64_t*`, `const char*`, `mdm_tensor*`, `void*`) is
 * host memory the caller provides, and crosses as a buffer.
 */
export interface NativeTypes {
  handles: Set<string>;
  structs: Set<string>;
}

/** How a C type of the contract crosses: a native pointer, a host buffer, a scalar or nothing. */
export function nativeKind(
  cType: string,
  types: NativeTypes,
): "pointer" | "buffer" | "void" | "i32" | "i64" | "u64" | "f64" {
  const t = cType.replace(/\bconst\b/g, "").replace(/\s+/g, "");
  if (t === "void") return "void";
  if (types.handles.has(t)) return "pointer";
  if (t.endsWith("*")) return types.structs.has(t.slice(0, -1)) ? "pointer" : "buffer";
  const s = SCALARS[t];
  if (!s) throw new Error(`mdm.h: no FFI type for C type "${cType}"`);
  return s;
}

/** Deno's FFI type for a parameter: host memory as "buffer" (a typed array passes as it is). */
export function denoParam(cType: string, types: NativeTypes): Deno.NativeType {
  return nativeKind(cType, types) as Deno.NativeType;
}

/** Deno's FFI type for a result: pointers of any kind come back as pointers. */
export function denoResult(cType: string, types: NativeTypes): Deno.NativeResultType {
  const k = nativeKind(cType, types);
  return k === "buffer" ? "pointer" : k;
}

function camel(upper: string): string {
  return upper.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
}

/** mdm_unary_op -> UNARY, mdm_memory_format -> MEMORY_FORMAT, mdm_optimizer_kind -> OPTIMIZER. */
function enumTsName(cName: string): string {
  return cName.replace(/^mdm_/, "").replace(/_(op|mode|kind)$/, "").toUpperCase();
}

function stripComments(text: string): string {
  return text.replace(/\/\*[\s\S]*?\*\//g, (c) => (c.startsWith("/* ----") ? c : " ")).replace(/\/\/.*$/gm, "");
}

function splitParam(p: string): { type: string; name: string } {
  const m = /^(.*?[\s*])(\w+)$/.exec(p.trim());
  if (!m) throw new Error(`mdm.h: cannot read parameter "${p}"`);
  return { type: m[1].trim(), name: m[2] };
}

/** Parses the header's text. Throws on anything it cannot read, naming it. */
export function parseContract(header: string): Contract {
  const text = stripComments(header);
  const types: NativeTypes = { handles: new Set(), structs: new Set() };
  for (const m of text.matchAll(/typedef\s+struct\s+\w+\s*(\*?)\s*(\w+)\s*;/g)) {
    (m[1] ? types.handles : types.structs).add(m[2]);
  }
  types.structs.add("mdm_status");
  const enums: CEnum[] = [];
  for (const m of text.matchAll(/enum\s+(mdm_\w+)\s*\{([^}]*)\}/g)) {
    const tsName = enumTsName(m[1]);
    const prefix = `MDM_${tsName}_`;
    const members: [string, number][] = [];
    for (const item of m[2].split(",").map((s) => s.trim()).filter(Boolean)) {
      const e = /^(MDM_\w+)\s*=\s*(-?\d+)$/.exec(item);
      if (!e || !e[1].startsWith(prefix)) {
        throw new Error(`mdm.h: enum ${m[1]}: member "${item}" lacks ${prefix}NAME = value`);
      }
      members.push([camel(e[1].slice(prefix.length)), Number(e[2])]);
    }
    enums.push({ cName: m[1], tsName, members });
  }

  const status = /typedef\s+struct\s+mdm_status\s*\{([^}]*)\}\s*mdm_status\s*;/.exec(text);
  if (!status) throw new Error("mdm.h: no `typedef struct mdm_status { ... } mdm_status;`");
  const fields: Record<string, number> = {};
  let offset = 0, align = 1;
  for (const decl of status[1].split(";").map((s) => s.trim()).filter(Boolean)) {
    const { type, name } = splitParam(decl);
    const size = type.endsWith("*") ? 8 : type === "int32_t" ? 4 : type === "int64_t" ? 8 : 0;
    if (size === 0) throw new Error(`mdm.h: mdm_status field "${decl}" has a type of unknown size`);
    offset = Math.ceil(offset / size) * size;
    fields[name] = offset;
    offset += size;
    align = Math.max(align, size);
  }

  const functions: CFunction[] = [];
  let section = "";
  const tokens = text.split(/(\/\* ---- [^*]*\*\/)/);
  for (const part of tokens) {
    const sec = /^\/\* ---- (.*?)\s*\*\/$/.exec(part);
    if (sec) {
      section = sec[1];
      continue;
    }
    for (const m of part.matchAll(/MDM_API\s+([\w\s*]+?)\s*\b(mdm_\w+)\s*\(([^)]*)\)\s*;/g)) {
      const raw = m[3].replace(/\s+/g, " ").trim();
      const params = raw === "void" || raw === "" ? [] : raw.split(",").map(splitParam);
      const result = m[1].replace(/\s+/g, " ").trim();
      for (const p of params) nativeKind(p.type, types);
      nativeKind(result, types);
      const prototype = `${result} ${m[2]}(${params.map((p) => `${p.type} ${p.name}`).join(", ")})`;
      functions.push({ name: m[2], result, params, section, prototype });
    }
  }
  if (functions.length === 0) throw new Error("mdm.h: no MDM_API functions found");
  return { types, enums, functions, status: { fields, size: Math.ceil(offset / align) * align } };
}

/** The contract of this checkout's native/mdm.h. */
export function readContract(): Contract {
  return parseContract(Deno.readTextFileSync(new URL("../native/mdm.h", import.meta.url)));
}
