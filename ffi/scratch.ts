// Reusable native-visible buffers for int64 arrays and handle arrays, so that passing a shape or a
// list of tensors allocates nothing per call.
const INT_CAPACITY = 64;
const ints64 = new BigInt64Array(INT_CAPACITY);
const words = new Int32Array(ints64.buffer);
const INTS: Deno.PointerObject = Deno.UnsafePointer.of(ints64)!;

/**
 * Writes integers (each within ±2^31) into the shared int64 buffer and returns its address.
 * Sign extension by hand keeps BigInt out of the hot path.
 */
export function ints(values: ArrayLike<number>): Deno.PointerObject {
  const n = values.length;
  if (n > INT_CAPACITY) throw new RangeError(`at most ${INT_CAPACITY} integers per call, got ${n}`);
  for (let i = 0; i < n; i++) {
    const v = values[i];
    words[2 * i] = v;
    words[2 * i + 1] = v < 0 ? -1 : 0;
  }
  return INTS;
}

let handles = new BigUint64Array(256);

/** Writes handles into a native-visible array and returns its address. */
export function handleArray(ptrs: readonly Deno.PointerObject[]): Deno.PointerObject {
  if (ptrs.length > handles.length) handles = new BigUint64Array(ptrs.length * 2);
  for (let i = 0; i < ptrs.length; i++) handles[i] = BigInt(Deno.UnsafePointer.value(ptrs[i]));
  return Deno.UnsafePointer.of(handles)!;
}

const outs = new BigUint64Array(256);
const outInts = new BigInt64Array(outs.buffer);
const OUTS: Deno.PointerObject = Deno.UnsafePointer.of(outs)!;

/** Where calls with several results (split, chunk, sort, sizes) write them. */
export const OUT = { ptr: OUTS, capacity: outs.length };

/** Reads the first `n` int64 values a call wrote to OUT. */
export function readInts(n: number): number[] {
  const result: number[] = [];
  for (let i = 0; i < n; i++) result.push(Number(outInts[i]));
  return result;
}

/** Reads the first `n` handles that a multi-result call wrote. */
export function readHandles(n: number): Deno.PointerObject[] {
  const result: Deno.PointerObject[] = [];
  for (let i = 0; i < n; i++) result.push(Deno.UnsafePointer.create(outs[i])!);
  return result;
}
