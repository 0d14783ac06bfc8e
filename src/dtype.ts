// Element types, their codes in the native shim, and the typed arrays that hold them on the host.
import { DTYPE } from "../ffi/codes.ts";

/** Element types mdm tensors can hold. */
export type DType =
  | "float32"
  | "float64"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "uint8"
  | "bool";

/** The floating-point dtypes: those that can require gradients. */
export type FloatDType = "float32" | "float64" | "float16" | "bfloat16";
/** The integer dtypes. */
export type IntDType = "int64" | "int32" | "uint8";

/** Every dtype, in the order of their codes (native/mdm.h's `enum mdm_dtype`). */
export const DTYPES: readonly DType[] = (Object.keys(DTYPE) as DType[]).sort((a, b) => DTYPE[a] - DTYPE[b]);

const CODE: Readonly<Record<DType, number>> = DTYPE;

export function dtypeCode(d: DType): number {
  const c = CODE[d];
  if (c === undefined) {
    throw new TypeError(`unknown dtype ${JSON.stringify(d)}; expected one of ${DTYPES.join(", ")}`);
  }
  return c;
}

export function dtypeFromCode(c: number): DType {
  const d = DTYPES[c];
  if (d === undefined) throw new TypeError(`native library returned unknown dtype code ${c}`);
  return d;
}

/**
 * The host array `toArray()` returns for each dtype. Half-precision values are widened to
 * float32 and booleans are bytes.
 */
export interface HostArrays {
  /** float32 values. */
  float32: Float32Array;
  /** float64 values. */
  float64: Float64Array;
  /** float16 values, widened to float32. */
  float16: Float32Array;
  /** bfloat16 values, widened to float32. */
  bfloat16: Float32Array;
  /** int64 values, as bigints. */
  int64: BigInt64Array;
  /** int32 values. */
  int32: Int32Array;
  /** uint8 values. */
  uint8: Uint8Array;
  /** Booleans as bytes, 0 or 1. */
  bool: Uint8Array;
}

/** The typed array `toArray()` returns for a tensor of dtype `D` (see `HostArrays`). */
export type HostArray<D extends DType> = HostArrays[D];

export const BYTES: Record<DType, number> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  uint8: 1,
  bool: 1,
};

/** Whether `d` is a floating-point dtype. */
export function isFloat(d: DType): d is FloatDType {
  return d === "float32" || d === "float64" || d === "float16" || d === "bfloat16";
}

/** Allocates the host array for `n` elements of dtype `d` as `toArray()` returns it. */
export function hostArray<D extends DType>(d: D, n: number): HostArray<D> {
  switch (d) {
    case "float32":
    case "float16":
    case "bfloat16":
      return new Float32Array(n) as HostArray<D>;
    case "float64":
      return new Float64Array(n) as HostArray<D>;
    case "int64":
      return new BigInt64Array(n) as HostArray<D>;
    case "int32":
      return new Int32Array(n) as HostArray<D>;
    default:
      return new Uint8Array(n) as HostArray<D>;
  }
}

/** The dtype a host array holds natively. */
export type DTypeOf<A> = A extends Float32Array ? "float32"
  : A extends Float64Array ? "float64"
  : A extends BigInt64Array ? "int64"
  : A extends Int32Array ? "int32"
  : A extends Uint8Array ? "uint8"
  : "float32";

/**
 * Result dtype of a binary op between D and E, following PyTorch's promotion for tensors of the
 * same category rank (bool < integers < floats, wider wins; float16 with bfloat16 gives float32).
 */
export type Promote<D extends DType, E extends DType> = D extends E ? D
  : [D, E] extends ["float64", DType] | [DType, "float64"] ? "float64"
  : [D, E] extends ["float32", DType] | [DType, "float32"] ? "float32"
  : [D, E] extends ["float16", "bfloat16"] | ["bfloat16", "float16"] ? "float32"
  : [D, E] extends ["float16", DType] | [DType, "float16"] ? "float16"
  : [D, E] extends ["bfloat16", DType] | [DType, "bfloat16"] ? "bfloat16"
  : [D, E] extends ["int64", DType] | [DType, "int64"] ? "int64"
  : [D, E] extends ["int32", DType] | [DType, "int32"] ? "int32"
  : [D, E] extends ["uint8", DType] | [DType, "uint8"] ? "uint8"
  : "bool";
