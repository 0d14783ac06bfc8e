// A tensor's elements as raw little-endian bytes of its own dtype, for checkpoint writers.
import { STATUS as ST, sym } from "../../ffi/lib.ts";
import { BYTES } from "../dtype.ts";
import { check } from "../checks.ts";
import type { Tensor } from "../tensor.ts";

/**
 * Copies the elements (contiguous, row-major, on the host) into a new byte array. Unlike
 * `toArray()`, float16 and bfloat16 stay 16-bit patterns: the native copy moves bytes, whatever the
 * dtype, so nothing is widened or rounded and NaN payloads and -0 survive.
 */
export function rawBytes(t: Tensor): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(t.numel * BYTES[t.dtype]);
  if (out.byteLength === 0) return out;
  check(sym.mdm_copy_to_host(t.ptr, out, BigInt(out.byteLength), ST), "rawBytes", t);
  return out;
}
