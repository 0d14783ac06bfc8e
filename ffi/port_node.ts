// The runtime port over koffi, for Node (see port.ts). The npm build bundles this file in place of
// port_deno.ts; Deno never loads it.
import koffi from "koffi";
import type { NativePointer, NativePort } from "./port.ts";
import { type NativeFunctions, PROTOTYPES } from "./symbols.ts";

type KoffiPointer = Parameters<typeof koffi.address>[0];

/** Node's port. */
export const port: NativePort = {
  runtime: "node",
  open(path: string): NativeFunctions {
    const lib = koffi.load(path);
    const fns: Record<string, unknown> = {};
    for (const [name, prototype] of Object.entries(PROTOTYPES)) fns[name] = lib.func(prototype);
    return fns as unknown as NativeFunctions;
  },
  readInt32: (p, offset) => koffi.decode(p as unknown as KoffiPointer, offset, "int32_t") as number,
  readPointer: (p, offset) => koffi.decode(p as unknown as KoffiPointer, offset, "void *") as NativePointer | null,
  cString: (p) => koffi.decode(p as unknown as KoffiPointer, "char", -1) as string,
  address: (p) => koffi.address(p as unknown as KoffiPointer) as bigint,
  pointerAt: (buf, index) => koffi.decode(buf, index * 8, "void *") as NativePointer | null,
};
