// Loads the native shim through the runtime's port and turns its per-call status blocks into
// JavaScript values.
import process from "node:process";
import { STATUS_LAYOUT } from "./codes.ts";
import type { NativePointer } from "./port.ts";
import { port } from "./port_deno.ts";

function libraryPath(): string {
  const fromEnv = process.env.MDM_NATIVE_LIB;
  if (fromEnv) return fromEnv;
  return decodeURIComponent(new URL("../build/libmdm_torch.so", import.meta.url).pathname);
}

function open() {
  const path = libraryPath();
  try {
    return port.open(path);
  } catch (e) {
    throw new Error(
      `mdm: cannot load the native library ${path} (${(e as Error).message}); ` +
        "build it with `bash native/build.sh` or point MDM_NATIVE_LIB at it",
    );
  }
}

/** The shim's functions. */
export const sym = open();

export { port };

/** The status block of synchronous calls: JavaScript runs one call at a time on this thread. */
export const STATUS: NativePointer = sym.mdm_status_new()!;

/** Reads and clears the failure recorded in a status block. */
export function takeError(status: NativePointer = STATUS): string | null {
  if (port.readInt32(status, STATUS_LAYOUT.code) === 0) return null;
  const msg = port.readPointer(status, STATUS_LAYOUT.message);
  const text = msg ? port.cString(msg) : "unknown error";
  sym.mdm_status_clear(status);
  return text;
}

/** Reads a C string owned by the library. */
export function cString(p: NativePointer | null): string {
  return p ? port.cString(p) : "";
}
