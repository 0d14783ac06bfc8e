// The runtime port over Deno's FFI (see port.ts).
import type { NativePointer, NativePort } from "./port.ts";
import { type NativeFunctions, symbols } from "./symbols.ts";

type P = Deno.PointerObject;

/** Deno's port. */
export const port: NativePort = {
  runtime: "deno",
  open(path: string): NativeFunctions {
    return Deno.dlopen(path, symbols).symbols as unknown as NativeFunctions;
  },
  readInt32: (p, offset) => new Deno.UnsafePointerView(p as unknown as P).getInt32(offset),
  readPointer: (p, offset) => new Deno.UnsafePointerView(p as unknown as P).getPointer(offset) as NativePointer | null,
  cString: (p) => Deno.UnsafePointerView.getCString(p as unknown as P),
  address: (p) => BigInt(Deno.UnsafePointer.value(p as unknown as P)),
  pointerAt: (buf, index) => Deno.UnsafePointer.create(buf[index]) as NativePointer | null,
};
