// Reusable buffers for int64 arrays and handle arrays, so that passing a shape or a list of
// tensors allocates nothing per call.
import type { NativePointer } from "./port.ts";
import { port } from "./port_deno.ts";

const INT_CAPACITY = 64;
const ints64 = new BigInt64Array(INT_CAPACITY);
const words = new Int32Array(ints64.buffer);

/**
 * Writes integers (each within ±2^31) into the shared int64 buffer and returns it.
 * Sign extension by hand keeps BigInt out of the hot path.
 */
export function ints(values: ArrayLike<number>): BigInt64Array {
  const n = values.length;
  if (n > INT_CAPACITY) throw new RangeError(`at most ${INT_CAPACITY} integers per call, got ${n}`);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    words[2 * i] = v;
    words[2 * i + 1] = v < 0 ? -1 : 0;
  }
  return ints64;
}

let handles = new BigUint64Array(256);

/** Writes handles into a native-visible array and returns it. */
export function handleArray(ptrs: readonly NativePointer[]): BigUint64Array {
  if (ptrs.length > handles.length) handles = new BigUint64Array(ptrs.length * 2);
  for (let i = 0; i < ptrs.length; i++) handles[i] = port.address(ptrs[i]);
  return handles;
}

const outs = new BigUint64Array(256);
const outInts = new BigInt64Array(outs.buffer);

/** Where calls with several results (split, chunk, sort, sizes) write them. */
export const OUT = { buffer: outs, capacity: outs.length };

/** Reads the first `n` int64 values a call wrote to OUT. */
export function readInts(n: number): number[] {
  const result: number[] = [];
  for (let i = 0; i < n; i++) result.push(Number(outInts[i]));
  return result;
}

/** Reads the first `n` handles that a multi-result call wrote. */
export function readHandles(n: number): NativePointer[] {
  const result: NativePointer[] = [];
  for (let i = 0; i < n; i++) result.push(port.pointerAt(outs, i)!);
  return result;
}
