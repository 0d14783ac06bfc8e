// Loads the native shim and turns its per-call status blocks into JavaScript values.
import { STATUS_LAYOUT } from "./codes.ts";
import { symbols } from "./symbols.ts";

function libraryPath(): string {
  const fromEnv = Deno.env.get("MDM_NATIVE_LIB");
  if (fromEnv) return fromEnv;
  return new URL("../build/libmdm_torch.so", import.meta.url).pathname;
}

function open() {
  const path = libraryPath();
  try {
    return Deno.dlopen(path, symbols);
  } catch (e) {
    throw new Error(
      `mdm: cannot load the native library ${path} (${(e as Error).message}); ` +
        "build it with `bash native/build.sh` or point MDM_NATIVE_LIB at it",
    );
  }
}

const lib = open();

/** The shim's functions. */
export const sym = lib.symbols;

/** The status block of synchronous calls: JavaScript runs one call at a time on this thread. */
export const STATUS: Deno.PointerObject = sym.mdm_status_new()!;

/** Reads and clears the failure recorded in a status block. */
export function takeError(status: Deno.PointerObject = STATUS): string | null {
  const view = new Deno.UnsafePointerView(status);
  if (view.getInt32(STATUS_LAYOUT.code) === 0) return null;
  const msg = view.getPointer(STATUS_LAYOUT.message);
  const text = msg ? Deno.UnsafePointerView.getCString(msg) : "unknown error";
  sym.mdm_status_clear(status);
  return text;
}

/** Reads a C string owned by the library. */
export function cString(p: Deno.PointerValue): string {
  return p ? Deno.UnsafePointerView.getCString(p) : "";
}
