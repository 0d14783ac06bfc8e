// The runtime port: what the rest of mdm needs from a foreign-function interface, written once over
// Deno.dlopen (port_deno.ts) and once over koffi for Node (port_node.ts, swapped in by the npm build).
// Everything else calls the shim through `NativeFunctions` and these few helpers.
import type { NativeFunctions } from "./symbols.ts";

declare const nativePointer: unique symbol;
/** A pointer to a native object (a tensor handle, a status block): opaque outside the port. */
export type NativePointer = { readonly [nativePointer]: true };
/** Host memory a native call reads or writes: any typed array. */
export type NativeBuffer = ArrayBufferView;

/** One runtime's foreign-function interface. */
export interface NativePort {
  /** "deno" or "node". */
  readonly runtime: string;
  /** Loads the shim at `path` and returns its functions; throws an Error naming the path. */
  open(path: string): NativeFunctions;
  /** The int32 at `offset` bytes into a native object. */
  readInt32(p: NativePointer, offset: number): number;
  /** The pointer at `offset` bytes into a native object. */
  readPointer(p: NativePointer, offset: number): NativePointer | null;
  /** The NUL-terminated string a native pointer points at. */
  cString(p: NativePointer): string;
  /** A pointer's address, to write into a handle array. */
  address(p: NativePointer): bigint;
  /** The pointer a native call wrote at `index` of a handle array (null for 0). */
  pointerAt(buf: BigUint64Array, index: number): NativePointer | null;
}
