// Tensor creation: from host data, constants, ranges and random draws.
import { STATUS as ST, sym } from "../ffi/lib.ts";
import { ints } from "../ffi/scratch.ts";
import { type DType, dtypeCode, type DTypeOf } from "./dtype.ts";
import { defaultDevice, type Device, deviceCode } from "./device.ts";
import type { Generator } from "./random.ts";
import { fail, int, intList } from "./checks.ts";
import { Tensor } from "./tensor.ts";

/** Options shared by the creation functions. */
export interface CreateOptions<D extends DType, V extends Device> {
  /** The element type (float32 unless the function says otherwise). */
  dtype?: D;
  /** Where the tensor lives (`defaultDevice()` when omitted). */
  device?: V;
  /** Make the new tensor a leaf that requires grad (floating-point dtypes only). */
  requiresGrad?: boolean;
}

/** Options of the random creation functions. */
export interface RandomOptions<D extends DType, V extends Device> extends CreateOptions<D, V> {
  /** A seeded generator; the global one (see `manualSeed`) when omitted. */
  generator?: Generator;
}

/** Nested arrays of numbers, booleans or bigints, as `tensor()` takes them (one nesting level per dimension). */
export type Nested = number | boolean | bigint | readonly Nested[];
/** The host values `tensor()` copies: a typed array or nested arrays. */
export type HostData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Nested;

function finish<D extends DType, V extends Device>(t: Tensor<D, V>, requiresGrad?: boolean): Tensor<D, V> {
  if (requiresGrad) t.requiresGrad_(true);
  return t;
}

function shapeOfNested(data: Nested, what: string): number[] {
  const shape: number[] = [];
  let level: Nested = data;
  while (Array.isArray(level)) {
    shape.push(level.length);
    level = level[0];
  }
  const check = (x: Nested, depth: number, path: string) => {
    if (depth === shape.length) {
      if (Array.isArray(x)) throw new TypeError(`${what}: ragged nested array at ${path}`);
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[depth]) {
      throw new TypeError(`${what}: ragged nested array at ${path} (expected length ${shape[depth]})`);
    }
    x.forEach((y, i) => check(y, depth + 1, `${path}[${i}]`));
  };
  check(data, 0, "data");
  return shape;
}

function fromBytes<D extends DType, V extends Device>(
  bytes: ArrayBufferView,
  dtype: D,
  shape: readonly number[],
  device: V | undefined,
): Tensor<D, V> {
  const dev = deviceCode(device ?? defaultDevice());
  const ptr = bytes.byteLength ? bytes as Uint8Array<ArrayBuffer> : null;
  return new Tensor(
    sym.mdm_from_data(ptr, BigInt(bytes.byteLength), dtypeCode(dtype), ints(shape), shape.length, dev, ST) ??
      fail("tensor"),
  );
}

/**
 * A tensor of `dtype` and `shape` holding a copy of `bytes`: the dtype's little-endian elements,
 * float16/bfloat16 as their 16-bit patterns (so no value passes through float32). For checkpoint
 * readers; `tensor()` is the API for host values.
 */
export function fromRawBytes<D extends DType, V extends Device = Device>(
  bytes: Uint8Array,
  dtype: D,
  shape: readonly number[],
  device?: V,
): Tensor<D, V> {
  return fromBytes(bytes, dtype, intList(shape, "fromRawBytes: shape"), device);
}

/**
 * A tensor holding a copy of `data`: a typed array (its dtype by default) with an optional shape,
 * or nested arrays of numbers (float32), booleans (bool) or bigints (int64).
 */
export function tensor<A extends HostData, D extends DType = DTypeOf<A>, V extends Device = Device>(
  data: A,
  opts: CreateOptions<D, V> & { shape?: readonly number[] } = {},
): Tensor<D, V> {
  let flat: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;
  let shape: readonly number[];
  let natural: DType;
  if (ArrayBuffer.isView(data)) {
    flat = data as typeof flat;
    shape = opts.shape ? intList(opts.shape, "tensor: shape") : [flat.length];
    natural = flat instanceof Float32Array
      ? "float32"
      : flat instanceof Float64Array
      ? "float64"
      : flat instanceof Int32Array
      ? "int32"
      : flat instanceof BigInt64Array
      ? "int64"
      : "uint8";
  } else {
    shape = shapeOfNested(data as Nested, "tensor");
    const values = [data].flat(Infinity) as (number | boolean | bigint)[];
    const first = values[0];
    if (typeof first === "boolean") {
      flat = Uint8Array.from(values, (v) => (v ? 1 : 0));
      natural = "bool";
    } else if (typeof first === "bigint") {
      flat = BigInt64Array.from(values as bigint[]);
      natural = "int64";
    } else if (opts.dtype === undefined || opts.dtype === "float32") {
      flat = Float32Array.from(values as number[]);
      natural = "float32";
    } else {
      // Keep the doubles for other targets: float32 would round 0.1 for float64 and integers
      // above 2^24 for int64/int32, which PyTorch's torch.tensor(data, dtype=...) does not.
      flat = Float64Array.from(values as number[]);
      natural = "float64";
    }
    if (opts.shape) {
      throw new TypeError("tensor: give `shape` only with flat typed-array data; nested arrays carry their shape");
    }
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== flat.length) {
    throw new TypeError(`tensor: shape [${shape.join(", ")}] needs ${count} values, data has ${flat.length}`);
  }
  const target = (opts.dtype ?? natural) as D;
  if (target === natural) return finish(fromBytes(flat, target, shape, opts.device), opts.requiresGrad);
  // Convert on the native side: it knows float16, bfloat16 and PyTorch's casting rules.
  using raw = fromBytes(flat, natural, shape, opts.device);
  return finish(raw.to({ dtype: target }) as Tensor<D, V>, opts.requiresGrad);
}

/** A tensor of `shape` filled with `value`. */
export function full<D extends DType = "float32", V extends Device = Device>(
  shape: readonly number[],
  value: number,
  opts: CreateOptions<D, V> = {},
): Tensor<D, V> {
  const s = intList(shape, "full: shape");
  const t = new Tensor<D, V>(
    sym.mdm_full(
      ints(s),
      s.length,
      value,
      dtypeCode(opts.dtype ?? "float32"),
      deviceCode(opts.device ?? defaultDevice()),
      ST,
    ) ?? fail("full"),
  );
  return finish(t, opts.requiresGrad);
}

/**
 * A tensor of `shape` filled with zeros (float32 unless `dtype` is given).
 * @throws TypeError naming the shape when it is not a list of integers.
 */
export function zeros<D extends DType = "float32", V extends Device = Device>(
  shape: readonly number[],
  opts: CreateOptions<D, V> = {},
): Tensor<D, V> {
  return full(shape, 0, opts);
}

/**
 * A tensor of `shape` filled with ones (float32 unless `dtype` is given).
 * @throws TypeError naming the shape when it is not a list of integers.
 */
export function ones<D extends DType = "float32", V extends Device = Device>(
  shape: readonly number[],
  opts: CreateOptions<D, V> = {},
): Tensor<D, V> {
  return full(shape, 1, opts);
}

/** Values start, start+step, ... below end (int64 when all three are integers, as in PyTorch). */
export function arange<D extends DType = "int64", V extends Device = Device>(
  start: number,
  end?: number,
  step = 1,
  opts: CreateOptions<D, V> = {},
): Tensor<D, V> {
  if (end === undefined) [start, end] = [0, start];
  const integral = Number.isInteger(start) && Number.isInteger(end) && Number.isInteger(step);
  const dtype = opts.dtype ?? (integral ? "int64" : "float32");
  return new Tensor(
    sym.mdm_arange(start, end, step, dtypeCode(dtype), deviceCode(opts.device ?? defaultDevice()), ST) ??
      fail("arange"),
  );
}

/**
 * `steps` values evenly spaced from `start` to `end`, both included.
 * @throws TypeError when `steps` is not an integer.
 */
export function linspace<D extends DType = "float32", V extends Device = Device>(
  start: number,
  end: number,
  steps: number,
  opts: CreateOptions<D, V> = {},
): Tensor<D, V> {
  return new Tensor(
    sym.mdm_linspace(
      start,
      end,
      BigInt(int(steps, "linspace: steps")),
      dtypeCode(opts.dtype ?? "float32"),
      deviceCode(opts.device ?? defaultDevice()),
      ST,
    ) ?? fail("linspace"),
  );
}

type Sampler = "mdm_rand" | "mdm_randn";

function sample<D extends DType, V extends Device>(
  fn: Sampler,
  shape: readonly number[],
  opts: RandomOptions<D, V>,
): Tensor<D, V> {
  const s = intList(shape, `${fn.slice(4)}: shape`);
  const t = new Tensor<D, V>(
    sym[fn](
      ints(s),
      s.length,
      dtypeCode(opts.dtype ?? "float32"),
      deviceCode(opts.device ?? defaultDevice()),
      opts.generator?.ptr ?? null,
      ST,
    ) ?? fail(fn.slice(4)),
  );
  return finish(t, opts.requiresGrad);
}

/** Uniform draws from [0, 1). */
export function rand<D extends DType = "float32", V extends Device = Device>(
  shape: readonly number[],
  opts: RandomOptions<D, V> = {},
): Tensor<D, V> {
  return sample("mdm_rand", shape, opts);
}

/** Standard normal draws. */
export function randn<D extends DType = "float32", V extends Device = Device>(
  shape: readonly number[],
  opts: RandomOptions<D, V> = {},
): Tensor<D, V> {
  return sample("mdm_randn", shape, opts);
}

/** Integers drawn uniformly from [low, high). */
export function randint<D extends DType = "int64", V extends Device = Device>(
  low: number,
  high: number,
  shape: readonly number[],
  opts: RandomOptions<D, V> = {},
): Tensor<D, V> {
  const s = intList(shape, "randint: shape");
  return new Tensor(
    sym.mdm_randint(
      BigInt(int(low, "randint: low")),
      BigInt(int(high, "randint: high")),
      ints(s),
      s.length,
      dtypeCode(opts.dtype ?? "int64"),
      deviceCode(opts.device ?? defaultDevice()),
      opts.generator?.ptr ?? null,
      ST,
    ) ?? fail("randint"),
  );
}

/** A random permutation of 0 .. n-1. */
export function randperm<V extends Device = Device>(
  n: number,
  opts: RandomOptions<"int64", V> = {},
): Tensor<"int64", V> {
  return new Tensor(
    sym.mdm_randperm(
      int(n, "randperm: n"),
      dtypeCode("int64"),
      deviceCode(opts.device ?? defaultDevice()),
      opts.generator?.ptr ?? null,
      ST,
    ) ?? fail("randperm"),
  );
}

/** Draws 1 with probability p, elementwise. */
export function bernoulli<D extends DType, V extends Device>(
  p: Tensor<D, V>,
  opts: { generator?: Generator } = {},
): Tensor<D, V> {
  return new Tensor(sym.mdm_bernoulli(p.ptr, opts.generator?.ptr ?? null, ST) ?? fail("bernoulli", p));
}
