// The typed tensor handle: dtype and device in the type, libtorch ops as methods.
import { STATUS as ST, sym, takeError } from "../ffi/lib.ts";
import type { NativePointer } from "../ffi/port.ts";
import { handleArray, ints, OUT, readHandles, readInts } from "../ffi/scratch.ts";
import { BINARY, EXTREME, INPLACE, MEMORY_FORMAT, REDUCE, SOFTMAX, UNARY } from "../ffi/codes.ts";
import {
  BYTES,
  type DType,
  dtypeCode,
  dtypeFromCode,
  type FloatDType,
  type HostArray,
  hostArray,
  isFloat,
  type Promote,
} from "./dtype.ts";
import { type Device, deviceCode, deviceFromCode } from "./device.ts";
import { check, fail, int, intList } from "./checks.ts";
import { DisposedError, TorchError } from "./error.ts";
import { enter, leave, SCOPE, type Scope, type Scoped } from "./scope.ts";

type Ptr = NativePointer;
type Handle = NativePointer | null;

// The backstop for tensors that were neither disposed nor tidied: GC frees their handles.
const registry = new FinalizationRegistry<Ptr>((h) => sym.mdm_free(h));

// Registering costs more than a small op, and most tensors outside a scope are disposed within the
// same synchronous run. So registration waits for a microtask and skips the tensors freed by then.
// GC callbacks cannot run before that anyway, so no memory is reclaimed later than it would be.
let unregistered: Tensor[] = [];
function registerLater(t: Tensor): void {
  if (unregistered.length === 0) queueMicrotask(registerPending);
  unregistered.push(t);
}
function registerPending(): void {
  const batch = unregistered;
  unregistered = [];
  for (const t of batch) t.registerBackstop();
}

function dims(dim: number | readonly number[] | undefined, what: string): readonly number[] {
  if (dim === undefined) return [];
  return typeof dim === "number" ? [int(dim, what)] : intList(dim, what);
}

function sizesArg(args: readonly (number | readonly number[])[], what: string): readonly number[] {
  const s = args.length === 1 && Array.isArray(args[0]) ? args[0] : args as number[];
  return intList(s as readonly number[], what);
}

/** Wraps a handle a multi-result call wrote. */
function many<D extends DType, V extends Device>(n: number, op: string, ...inputs: unknown[]): Tensor<D, V>[] {
  if (n < 0) fail(op, ...inputs);
  return readHandles(n).map((h) => new Tensor<D, V>(h));
}

/**
 * How a tensor's elements are laid out in memory: "contiguous" (row-major, NCHW for images) or
 * "channelsLast" (NHWC strides for 4-D tensors; the shape stays NCHW).
 */
export type MemoryFormat = "contiguous" | "channelsLast";

/**
 * A tensor of any floating-point dtype on device `V`: images, activations, weights. Layers and
 * models take and return these; the dtype is known only at run time (a half-precision torso).
 */
export type FloatTensor<V extends Device = Device> = Tensor<FloatDType, V>;

/** Options of `Tensor.to`. */
export interface ToOptions<D extends DType, V extends Device> {
  /** The target dtype; the tensor's own when omitted. */
  dtype?: D;
  /** The target device; the tensor's own when omitted. */
  device?: V;
  /** Copy between host and CUDA asynchronously (only meaningful for pinned memory). */
  nonBlocking?: boolean;
}

/**
 * A handle to a libtorch tensor. `D` is its dtype and `V` its device. Free it with `dispose()`,
 * `using`, or an enclosing `tidy`.
 * Ops are methods that return new tensors (in-place ones end in `_` and return `this`). Every
 * method throws a DisposedError once the tensor is disposed, a TorchError naming the op and its
 * input shapes when libtorch rejects the call (shapes that do not broadcast, a dtype the op lacks),
 * and a TypeError naming the argument for a dimension, size or shape that is not an integer.
 */
export class Tensor<D extends DType = DType, V extends Device = Device> implements Scoped {
  /** The `tidy` scope that will free this tensor, or null (part of the scope protocol, see `Scoped`). */
  [SCOPE]: Scope | null = null;
  #h: Ptr | null;
  #shape: readonly number[] | null = null;
  #dtype: D | null = null;
  #registered = false;

  /** Takes ownership of a native handle. Use the creation functions instead. */
  constructor(handle: Handle) {
    if (handle === null) throw new TypeError("Tensor: null native handle");
    this.#h = handle;
    enter(this);
  }

  /**
   * Part of the scope protocol: no scope will free this tensor, so GC must be able to.
   * @internal
   */
  unscoped(): void {
    if (!this.#registered) registerLater(this);
  }

  /**
   * Hands the handle to the GC backstop, unless the tensor was freed or scoped since.
   * @internal
   */
  registerBackstop(): void {
    if (this.#h === null || this.#registered || this[SCOPE] !== null) return;
    this.#registered = true;
    registry.register(this, this.#h, this);
  }

  /**
   * The native handle; throws once the tensor is disposed.
   * @internal
   */
  get ptr(): Ptr {
    const h = this.#h;
    if (h === null) throw new DisposedError("tensor used after dispose()");
    return h;
  }

  /** Whether `dispose()` has freed this tensor (any use of it then throws a DisposedError). */
  get disposed(): boolean {
    return this.#h === null;
  }

  /** Frees the native tensor now. Safe to call twice. */
  dispose(): void {
    const h = this.#h;
    if (h === null) return;
    this.#h = null;
    if (this.#registered) registry.unregister(this);
    if (this[SCOPE] !== null) leave(this);
    sym.mdm_free(h);
  }

  /** Frees the tensor at the end of a `using` block; the same as `dispose()`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // Reading `ptr` first makes a disposed tensor throw even when the shape or dtype is cached.
  /**
   * The size of each dimension (frozen; [] for a scalar).
   * @throws DisposedError once the tensor is disposed, as every method and getter does.
   */
  get shape(): readonly number[] {
    const h = this.ptr;
    if (this.#shape === null) {
      const n = sym.mdm_sizes(h, OUT.buffer, OUT.capacity);
      if (n <= OUT.capacity) {
        this.#shape = Object.freeze(readInts(n));
      } else {
        // More dimensions than the shared buffer holds (libtorch sets no limit): a buffer of its own.
        const sizes = new BigInt64Array(n);
        sym.mdm_sizes(h, sizes, n);
        this.#shape = Object.freeze(Array.from(sizes, Number));
      }
    }
    return this.#shape;
  }

  /** The number of dimensions (0 for a scalar). */
  get ndim(): number {
    return this.shape.length;
  }

  /** The number of elements (the product of the shape). */
  get numel(): number {
    return Number(sym.mdm_numel(this.ptr));
  }

  /** The element type. */
  get dtype(): D {
    const h = this.ptr;
    if (this.#dtype === null) this.#dtype = dtypeFromCode(sym.mdm_dtype(h)) as D;
    return this.#dtype;
  }

  /** The device the tensor lives on ("cpu" or "cuda:N"). */
  get device(): V {
    return deviceFromCode(sym.mdm_device(this.ptr)) as V;
  }

  /**
   * Size of one dimension (negative counts from the end).
   * @throws RangeError when the tensor has no dimension `dim`.
   */
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) {
      throw new RangeError(`size(${dim}): tensor of shape [${s.join(", ")}] has no such dimension`);
    }
    return s[d];
  }

  /** A one-line description: shape, dtype and device (or "Tensor(disposed)"). */
  toString(): string {
    if (this.disposed) return "Tensor(disposed)";
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- host transfer

  /** Copies the values to a new host array (float16/bfloat16 are widened to float32). */
  toArray(): HostArray<D> {
    const d = this.dtype;
    const n = this.numel;
    const out = hostArray(d, n);
    if (n === 0) return out;
    if (d === "float16" || d === "bfloat16") {
      using wide = this.to({ dtype: "float32" });
      check(sym.mdm_copy_to_host(wide.ptr, out, out.byteLength, ST), "toArray", this);
    } else {
      check(sym.mdm_copy_to_host(this.ptr, out, n * BYTES[d], ST), "toArray", this);
    }
    return out;
  }

  /**
   * The single value of a one-element tensor.
   * @throws TorchError when the tensor has more or fewer than one element.
   */
  item(): number {
    const v = sym.mdm_item(this.ptr, ST);
    if (takeError() !== null) {
      throw new TorchError(
        `item() needs exactly one element, tensor has ${this.numel}`,
        "item",
        [this.shape],
      );
    }
    return v;
  }

  // ---- elementwise

  #unary(code: number, op: string): Tensor<D, V> {
    return new Tensor(sym.mdm_unary(code, this.ptr, ST) ?? fail(op, this));
  }

  #binary<E extends DType, R extends DType>(code: number, other: Tensor<E, V> | number, op: string): Tensor<R, V> {
    if (typeof other === "number") {
      return new Tensor(sym.mdm_binary_scalar(code, this.ptr, other, ST) ?? fail(op, this));
    }
    return new Tensor(sym.mdm_binary(code, this.ptr, other.ptr, ST) ?? fail(op, this, other));
  }

  /**
   * Elementwise `this + other` (broadcasting as in PyTorch); the result has the promoted dtype.
   * @throws TorchError naming the shapes when they do not broadcast.
   */
  add<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.add, other, "add");
  }
  /** Elementwise `this - other`, broadcasting. */
  sub<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.sub, other, "sub");
  }
  /** Elementwise `this · other`, broadcasting. */
  mul<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.mul, other, "mul");
  }
  /** True division: integer inputs give a float result, as in PyTorch. */
  div<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.div, other, "div");
  }
  /** Elementwise `this ** other`, broadcasting. */
  pow<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.pow, other, "pow");
  }
  /** Elementwise maximum of `this` and `other` (NaN wins, as in PyTorch). */
  maximum<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.maximum, other, "maximum");
  }
  /** Elementwise minimum of `this` and `other` (NaN wins, as in PyTorch). */
  minimum<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.minimum, other, "minimum");
  }
  /** Elementwise remainder with the sign of the divisor (Python's `%`, PyTorch's `remainder`). */
  remainder<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.remainder, other, "remainder");
  }
  /** Elementwise atan2(this, other) in radians, in (-π, π]. */
  atan2<E extends DType = D>(other: Tensor<E, V>): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.atan2, other, "atan2");
  }
  /** `value - this`. */
  rsub(value: number): Tensor<D, V> {
    return this.#binary(BINARY.rsub, value, "rsub");
  }
  /** `value / this`. */
  rdiv(value: number): Tensor<D, V> {
    return this.#binary(BINARY.rdiv, value, "rdiv");
  }

  /** Elementwise `this == other`, broadcasting; a bool tensor. */
  eq(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.eq, other, "eq");
  }
  /** Elementwise `this != other`, broadcasting; a bool tensor. */
  ne(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.ne, other, "ne");
  }
  /** Elementwise `this < other`, broadcasting; a bool tensor. */
  lt(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.lt, other, "lt");
  }
  /** Elementwise `this <= other`, broadcasting; a bool tensor. */
  le(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.le, other, "le");
  }
  /** Elementwise `this > other`, broadcasting; a bool tensor. */
  gt(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.gt, other, "gt");
  }
  /** Elementwise `this >= other`, broadcasting; a bool tensor. */
  ge(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.ge, other, "ge");
  }
  /** Elementwise logical and (non-zero is true); a bool tensor. */
  logicalAnd(other: Tensor<DType, V>): Tensor<"bool", V> {
    return this.#binary(BINARY.logicalAnd, other, "logicalAnd");
  }
  /** Elementwise logical or (non-zero is true); a bool tensor. */
  logicalOr(other: Tensor<DType, V>): Tensor<"bool", V> {
    return this.#binary(BINARY.logicalOr, other, "logicalOr");
  }
  /** Elementwise logical not (zero becomes true); a bool tensor. */
  logicalNot(): Tensor<"bool", V> {
    return this.#unary(UNARY.logicalNot, "logicalNot") as unknown as Tensor<"bool", V>;
  }
  /** True where an element is NaN. */
  isnan(): Tensor<"bool", V> {
    return this.#unary(UNARY.isnan, "isnan") as unknown as Tensor<"bool", V>;
  }

  /** Elementwise `-this`. */
  neg(): Tensor<D, V> {
    return this.#unary(UNARY.neg, "neg");
  }
  /** Elementwise eˣ. */
  exp(): Tensor<D, V> {
    return this.#unary(UNARY.exp, "exp");
  }
  /** Elementwise eˣ − 1, accurate near 0. */
  expm1(): Tensor<D, V> {
    return this.#unary(UNARY.expm1, "expm1");
  }
  /** Elementwise natural logarithm (NaN below 0, -Infinity at 0). */
  log(): Tensor<D, V> {
    return this.#unary(UNARY.log, "log");
  }
  /** Elementwise ln(1 + x), accurate near 0. */
  log1p(): Tensor<D, V> {
    return this.#unary(UNARY.log1p, "log1p");
  }
  /** Elementwise square root (NaN below 0). */
  sqrt(): Tensor<D, V> {
    return this.#unary(UNARY.sqrt, "sqrt");
  }
  /** Elementwise 1 / √x. */
  rsqrt(): Tensor<D, V> {
    return this.#unary(UNARY.rsqrt, "rsqrt");
  }
  /** Elementwise absolute value. */
  abs(): Tensor<D, V> {
    return this.#unary(UNARY.abs, "abs");
  }
  /** Elementwise sine (radians). */
  sin(): Tensor<D, V> {
    return this.#unary(UNARY.sin, "sin");
  }
  /** Elementwise cosine (radians). */
  cos(): Tensor<D, V> {
    return this.#unary(UNARY.cos, "cos");
  }
  /** Elementwise hyperbolic tangent. */
  tanh(): Tensor<D, V> {
    return this.#unary(UNARY.tanh, "tanh");
  }
  /** Elementwise logistic sigmoid 1 / (1 + e⁻ˣ). */
  sigmoid(): Tensor<D, V> {
    return this.#unary(UNARY.sigmoid, "sigmoid");
  }
  /** Elementwise max(x, 0). */
  relu(): Tensor<D, V> {
    return this.#unary(UNARY.relu, "relu");
  }
  /** Elementwise SiLU (swish): x · sigmoid(x). */
  silu(): Tensor<D, V> {
    return this.#unary(UNARY.silu, "silu");
  }
  /** GELU, exact (erf) by default or with the tanh approximation. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor<D, V> {
    return this.#unary(approximate === "tanh" ? UNARY.geluTanh : UNARY.gelu, "gelu");
  }
  /** Elementwise rounding down. */
  floor(): Tensor<D, V> {
    return this.#unary(UNARY.floor, "floor");
  }
  /** Elementwise rounding up. */
  ceil(): Tensor<D, V> {
    return this.#unary(UNARY.ceil, "ceil");
  }
  /** Elementwise rounding to the nearest integer, halves to even (as PyTorch). */
  round(): Tensor<D, V> {
    return this.#unary(UNARY.round, "round");
  }
  /** Elementwise sign: -1, 0 or 1. */
  sign(): Tensor<D, V> {
    return this.#unary(UNARY.sign, "sign");
  }
  /** Elementwise x². */
  square(): Tensor<D, V> {
    return this.#unary(UNARY.square, "square");
  }
  /** Elementwise 1 / x. */
  reciprocal(): Tensor<D, V> {
    return this.#unary(UNARY.reciprocal, "reciprocal");
  }
  /** Elementwise Gauss error function. */
  erf(): Tensor<D, V> {
    return this.#unary(UNARY.erf, "erf");
  }

  /**
   * Clamps to [min, max]; either bound may be omitted (null or undefined).
   * @throws TypeError when neither bound is given.
   */
  clamp(min?: number | null, max?: number | null): Tensor<D, V> {
    const hasLo = min !== undefined && min !== null;
    const hasHi = max !== undefined && max !== null;
    if (!hasLo && !hasHi) throw new TypeError("clamp: give at least one of min and max");
    return new Tensor(
      sym.mdm_clamp(this.ptr, hasLo ? min : 0, hasHi ? max : 0, hasLo ? 1 : 0, hasHi ? 1 : 0, ST) ??
        fail("clamp", this),
    );
  }

  /** `this` where `cond` holds, `other` elsewhere. */
  where<E extends DType>(cond: Tensor<"bool", V>, other: Tensor<E, V>): Tensor<Promote<D, E>, V> {
    return new Tensor(sym.mdm_where(cond.ptr, this.ptr, other.ptr, ST) ?? fail("where", cond, this, other));
  }

  /** A copy with `value` wherever `mask` (broadcast to this shape) is true. */
  maskedFill(mask: Tensor<"bool", V>, value: number): Tensor<D, V> {
    return new Tensor(sym.mdm_masked_fill(this.ptr, mask.ptr, value, ST) ?? fail("maskedFill", this, mask));
  }

  // ---- in place (for parameter updates, EMA and buffers; not recorded by autograd on leaves)

  #inplace(code: number, other: Tensor<DType, V> | number, op: string): this {
    if (typeof other === "number") check(sym.mdm_inplace_scalar(code, this.ptr, other, ST), op, this);
    else check(sym.mdm_inplace(code, this.ptr, other.ptr, ST), op, this, other);
    return this;
  }
  /** In place: `this += other` (broadcast to this shape). Returns `this`. */
  add_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.add, other, "add_");
  }
  /** In place: `this -= other`. Returns `this`. */
  sub_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.sub, other, "sub_");
  }
  /** In place: `this *= other`. Returns `this`. */
  mul_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.mul, other, "mul_");
  }
  /** In place: `this /= other`. Returns `this`. */
  div_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.div, other, "div_");
  }
  /** In place: copies `src`'s values (broadcast, converted to this dtype and device). Returns `this`. */
  copy_(src: Tensor<DType, Device>): this {
    check(sym.mdm_inplace(INPLACE.copy, this.ptr, src.ptr, ST), "copy_", this, src);
    return this;
  }
  /** In place: sets every element to `value`. Returns `this`. */
  fill_(value: number): this {
    return this.#inplace(INPLACE.fill, value, "fill_");
  }
  /** In place: sets every element to 0. Returns `this`. */
  zero_(): this {
    return this.#inplace(5, 0, "zero_");
  }
  /**
   * Replaces this tensor's data (dtype, device and storage may all change) while the handle, and
   * every reference to it such as an optimizer's, stays valid: PyTorch's `param.data = ...`.
   */
  setData_(src: Tensor<DType, Device>): this {
    check(sym.mdm_set_data(this.ptr, src.ptr, ST), "setData_", this, src);
    this.#shape = null;
    this.#dtype = null;
    return this;
  }
  /** this += weight · (end − this), the EMA update. */
  lerp_(end: Tensor<DType, V>, weight: number): this {
    check(sym.mdm_lerp_(this.ptr, end.ptr, weight, ST), "lerp_", this, end);
    return this;
  }

  // ---- reductions

  #reduce<R extends DType>(code: number, dim: number | readonly number[] | undefined, keepdim: boolean, op: string) {
    const d = dims(dim, `${op}: dim`);
    return new Tensor<R, V>(
      sym.mdm_reduce(code, this.ptr, ints(d), d.length, keepdim ? 1 : 0, ST) ?? fail(op, this),
    );
  }
  /** Sum over `dim` (all dimensions when omitted). */
  sum(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.sum, dim, keepdim, "sum");
  }
  /** Mean over `dim` (all dimensions when omitted); floating-point tensors only. */
  mean(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.mean, dim, keepdim, "mean");
  }
  /** Maximum over `dim` (all dimensions when omitted), values only. */
  amax(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.amax, dim, keepdim, "amax");
  }
  /** Minimum over `dim` (all dimensions when omitted), values only. */
  amin(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.amin, dim, keepdim, "amin");
  }
  /** log(Σ exp(x)) over `dim`, computed stably. */
  logsumexp(dim: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.logsumexp, dim, keepdim, "logsumexp");
  }
  /** Whether every element over `dim` (all dimensions when omitted) is non-zero; a bool tensor. */
  all(dim?: number | readonly number[], keepdim = false): Tensor<"bool", V> {
    return this.#reduce(REDUCE.all, dim, keepdim, "all");
  }
  /** Whether any element over `dim` (all dimensions when omitted) is non-zero; a bool tensor. */
  any(dim?: number | readonly number[], keepdim = false): Tensor<"bool", V> {
    return this.#reduce(REDUCE.any, dim, keepdim, "any");
  }
  /** Variance; unbiased (Bessel-corrected) unless told otherwise, as in PyTorch. */
  var(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor<D, V> {
    return this.#moment(dim, opts, false, "var");
  }
  /** Standard deviation; unbiased (Bessel-corrected) unless told otherwise, as in PyTorch. */
  std(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor<D, V> {
    return this.#moment(dim, opts, true, "std");
  }
  #moment(
    dim: number | readonly number[] | undefined,
    variance: { unbiased?: boolean; keepdim?: boolean },
    root: boolean,
    op: string,
  ) {
    const d = dims(dim, `${op}: dim`);
    return new Tensor<D, V>(
      sym.mdm_var(
        this.ptr,
        ints(d),
        d.length,
        variance.unbiased === false ? 0 : 1,
        variance.keepdim ? 1 : 0,
        root ? 1 : 0,
        ST,
      ) ??
        fail(op, this),
    );
  }
  /** Maximum along `dim`: values and their indices. */
  max(dim: number, keepdim = false): [Tensor<D, V>, Tensor<"int64", V>] {
    const n = sym.mdm_minmax_dim(
      EXTREME.max,
      this.ptr,
      int(dim, "max: dim"),
      keepdim ? 1 : 0,
      OUT.buffer,
      OUT.capacity,
      ST,
    );
    return many(n, "max", this) as [Tensor<D, V>, Tensor<"int64", V>];
  }
  /** Minimum along `dim`: values and their indices. */
  min(dim: number, keepdim = false): [Tensor<D, V>, Tensor<"int64", V>] {
    const n = sym.mdm_minmax_dim(
      EXTREME.min,
      this.ptr,
      int(dim, "min: dim"),
      keepdim ? 1 : 0,
      OUT.buffer,
      OUT.capacity,
      ST,
    );
    return many(n, "min", this) as [Tensor<D, V>, Tensor<"int64", V>];
  }
  /** Index of the maximum along `dim`, or into the flattened tensor when `dim` is omitted. */
  argmax(dim?: number, keepdim = false): Tensor<"int64", V> {
    return this.#argminmax(EXTREME.max, dim, keepdim, "argmax");
  }
  /** Index of the minimum along `dim`, or into the flattened tensor when `dim` is omitted. */
  argmin(dim?: number, keepdim = false): Tensor<"int64", V> {
    return this.#argminmax(EXTREME.min, dim, keepdim, "argmin");
  }
  #argminmax(code: number, dim: number | undefined, keepdim: boolean, op: string): Tensor<"int64", V> {
    const has = dim !== undefined;
    return new Tensor(
      sym.mdm_argminmax(code, this.ptr, has ? int(dim, `${op}: dim`) : 0, has ? 1 : 0, keepdim ? 1 : 0, ST) ??
        fail(op, this),
    );
  }
  /** The indices that sort the tensor along `dim` (ascending unless `descending`). */
  argsort(dim = -1, descending = false): Tensor<"int64", V> {
    return new Tensor(
      sym.mdm_argsort(this.ptr, int(dim, "argsort: dim"), descending ? 1 : 0, ST) ?? fail("argsort", this),
    );
  }
  /** The values sorted along `dim` and their original indices. */
  sort(dim = -1, descending = false): [Tensor<D, V>, Tensor<"int64", V>] {
    const n = sym.mdm_sort(this.ptr, int(dim, "sort: dim"), descending ? 1 : 0, OUT.buffer, OUT.capacity, ST);
    return many(n, "sort", this) as [Tensor<D, V>, Tensor<"int64", V>];
  }
  /** The `k` largest (or smallest) values along `dim` and their indices, largest first. */
  topk(k: number, dim = -1, largest = true): [Tensor<D, V>, Tensor<"int64", V>] {
    const n = sym.mdm_topk(
      this.ptr,
      int(k, "topk: k"),
      int(dim, "topk: dim"),
      largest ? 1 : 0,
      OUT.buffer,
      OUT.capacity,
      ST,
    );
    return many(n, "topk", this) as [Tensor<D, V>, Tensor<"int64", V>];
  }
  /** Cumulative sum along `dim`. */
  cumsum(dim: number): Tensor<D, V> {
    return new Tensor(sym.mdm_cumsum(this.ptr, int(dim, "cumsum: dim"), ST) ?? fail("cumsum", this));
  }

  // ---- linear algebra

  /**
   * Matrix product with PyTorch's broadcasting rules (vectors, matrices and batches of them).
   * @throws TorchError naming the shapes when the inner dimensions differ.
   */
  matmul<E extends DType>(other: Tensor<E, V>): Tensor<Promote<D, E>, V> {
    return new Tensor(sym.mdm_matmul(this.ptr, other.ptr, ST) ?? fail("matmul", this, other));
  }
  /** Batched matrix product: [B, n, m] × [B, m, p] -> [B, n, p]. */
  bmm(other: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(sym.mdm_bmm(this.ptr, other.ptr, ST) ?? fail("bmm", this, other));
  }

  // ---- shape

  /**
   * The same elements in `shape` (one entry may be -1); a view when the layout allows, else a copy.
   * @throws TorchError when the element counts differ; TypeError for a shape that is not integers.
   */
  reshape(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "reshape: shape");
    return new Tensor(sym.mdm_reshape(this.ptr, ints(s), s.length, ST) ?? fail("reshape", this));
  }
  /**
   * The same storage seen in `shape` (one entry may be -1).
   * @throws TorchError when the layout does not allow a view (use `reshape`).
   */
  view(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "view: shape");
    return new Tensor(sym.mdm_view(this.ptr, ints(s), s.length, ST) ?? fail("view", this));
  }
  /** A view with the dimensions reordered: dimension i of the result is `order[i]` of this tensor. */
  permute(...order: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(order, "permute: dims");
    return new Tensor(sym.mdm_permute(this.ptr, ints(s), s.length, ST) ?? fail("permute", this));
  }
  /** A view with dimensions `dim0` and `dim1` swapped. */
  transpose(dim0: number, dim1: number): Tensor<D, V> {
    return new Tensor(
      sym.mdm_transpose(this.ptr, int(dim0, "transpose: dim0"), int(dim1, "transpose: dim1"), ST) ??
        fail("transpose", this),
    );
  }
  /** This tensor in row-major layout: itself (a new handle) when already so, else a copy. */
  contiguous(): Tensor<D, V> {
    return new Tensor(sym.mdm_contiguous(this.ptr, ST) ?? fail("contiguous", this));
  }
  /** Broadcasts size-1 dimensions to `shape` (-1 keeps a size) without copying. */
  expand(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "expand: shape");
    return new Tensor(sym.mdm_expand(this.ptr, ints(s), s.length, ST) ?? fail("expand", this));
  }
  /** A copy tiled `times[i]` times along each dimension (as PyTorch's `repeat`). */
  repeat(...times: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(times, "repeat: sizes");
    return new Tensor(sym.mdm_repeat(this.ptr, ints(s), s.length, ST) ?? fail("repeat", this));
  }
  /** Removes `dim` if it has size 1, or every size-1 dimension when `dim` is omitted. */
  squeeze(dim?: number): Tensor<D, V> {
    const has = dim !== undefined;
    return new Tensor(
      sym.mdm_squeeze(this.ptr, has ? int(dim, "squeeze: dim") : 0, has ? 1 : 0, ST) ?? fail("squeeze", this),
    );
  }
  /** A view with a size-1 dimension inserted at `dim`. */
  unsqueeze(dim: number): Tensor<D, V> {
    return new Tensor(sym.mdm_unsqueeze(this.ptr, int(dim, "unsqueeze: dim"), ST) ?? fail("unsqueeze", this));
  }
  /** A tensor with dimensions `start`..`end` (inclusive) merged into one. */
  flatten(start = 0, end = -1): Tensor<D, V> {
    return new Tensor(
      sym.mdm_flatten(this.ptr, int(start, "flatten: start"), int(end, "flatten: end"), ST) ?? fail("flatten", this),
    );
  }
  /** A copy with the order of elements reversed along the given dimensions. */
  flip(...dimsToFlip: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(dimsToFlip, "flip: dims");
    return new Tensor(sym.mdm_flip(this.ptr, ints(s), s.length, ST) ?? fail("flip", this));
  }
  /**
   * A view of `length` elements of `dim` from `start`.
   * @throws TorchError when the range leaves the dimension.
   */
  narrow(dim: number, start: number, length: number): Tensor<D, V> {
    return new Tensor(
      sym.mdm_narrow(
        this.ptr,
        int(dim, "narrow: dim"),
        BigInt(int(start, "narrow: start")),
        BigInt(int(length, "narrow: length")),
        ST,
      ) ??
        fail("narrow", this),
    );
  }
  /** Elements start, start+step, ... below end along `dim` (a view). */
  slice(dim: number, start: number, end: number, step = 1): Tensor<D, V> {
    return new Tensor(
      sym.mdm_slice(
        this.ptr,
        int(dim, "slice: dim"),
        BigInt(int(start, "slice: start")),
        BigInt(int(end, "slice: end")),
        BigInt(int(step, "slice: step")),
        ST,
      ) ??
        fail("slice", this),
    );
  }
  /** The sub-tensor at `index` along `dim`, which is removed. */
  select(dim: number, index: number): Tensor<D, V> {
    return new Tensor(
      sym.mdm_select(this.ptr, int(dim, "select: dim"), BigInt(int(index, "select: index")), ST) ??
        fail("select", this),
    );
  }
  /** The entries at `index` (a 1-D integer tensor) along `dim`, copied. */
  indexSelect(dim: number, index: Tensor<"int64" | "int32", V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_index_select(this.ptr, int(dim, "indexSelect: dim"), index.ptr, ST) ?? fail("indexSelect", this, index),
    );
  }
  /** Values picked along `dim` by `index` (the same number of dimensions as this tensor). */
  gather(dim: number, index: Tensor<"int64", V>): Tensor<D, V> {
    return new Tensor(sym.mdm_gather(this.ptr, int(dim, "gather: dim"), index.ptr, ST) ?? fail("gather", this, index));
  }
  /** A copy of `this` with `src` written at `index` along `dim`. */
  scatter(dim: number, index: Tensor<"int64", V>, src: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_scatter(this.ptr, int(dim, "scatter: dim"), index.ptr, src.ptr, ST) ?? fail("scatter", this, index, src),
    );
  }
  /** A copy of `this` with `src` added at `index` along `dim` (repeated indices accumulate). */
  scatterAdd(dim: number, index: Tensor<"int64", V>, src: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_scatter_add(this.ptr, int(dim, "scatterAdd: dim"), index.ptr, src.ptr, ST) ??
        fail("scatterAdd", this, index, src),
    );
  }
  /** The elements where `mask` (broadcast) is true, as a 1-D tensor. */
  maskedSelect(mask: Tensor<"bool", V>): Tensor<D, V> {
    return new Tensor(sym.mdm_masked_select(this.ptr, mask.ptr, ST) ?? fail("maskedSelect", this, mask));
  }
  /** Indices of the non-zero elements, one row per element. */
  nonzero(): Tensor<"int64", V> {
    return new Tensor(sym.mdm_nonzero(this.ptr, ST) ?? fail("nonzero", this));
  }
  /** One-hot encoding of an int64 tensor of class indices: shape [..., classes]. */
  oneHot(classes: number): Tensor<"int64", V> {
    return new Tensor(sym.mdm_one_hot(this.ptr, int(classes, "oneHot: classes"), ST) ?? fail("oneHot", this));
  }
  /** Splits along `dim` into pieces of `size` (the last may be smaller) or of the given sizes. */
  split(size: number | readonly number[], dim = 0): Tensor<D, V>[] {
    let sizes: readonly number[];
    if (typeof size === "number") {
      int(size, "split: size");
      if (size <= 0) throw new RangeError(`split: size must be positive, got ${size}`);
      const total = this.size(dim);
      const s: number[] = [];
      for (let at = 0; at < total; at += size) s.push(Math.min(size, total - at));
      sizes = s;
    } else {
      sizes = intList(size, "split: sizes");
    }
    const n = sym.mdm_split(this.ptr, ints(sizes), sizes.length, int(dim, "split: dim"), OUT.buffer, OUT.capacity, ST);
    return many(n, "split", this);
  }
  /** Splits along `dim` into `chunks` pieces of equal size (the last may be smaller), as views. */
  chunk(chunks: number, dim = 0): Tensor<D, V>[] {
    const n = sym.mdm_chunk(
      this.ptr,
      int(chunks, "chunk: chunks"),
      int(dim, "chunk: dim"),
      OUT.buffer,
      OUT.capacity,
      ST,
    );
    return many(n, "chunk", this);
  }

  // ---- conversion

  /** Converts dtype and/or device; returns a new handle (sharing storage when nothing changes). */
  to<E extends DType>(dtype: E): Tensor<E, V>;
  /** Moves to `device` (a new handle sharing storage when it is already there). */
  to<W extends Device>(device: W): Tensor<D, W>;
  /** Converts dtype and moves to another device at once. */
  to<E extends DType, W extends Device>(target: { dtype: E; device: W; nonBlocking?: boolean }): Tensor<E, W>;
  /** Converts to another dtype. */
  to<E extends DType>(target: { dtype: E; nonBlocking?: boolean }): Tensor<E, V>;
  /** Moves to another device. */
  to<W extends Device>(target: { device: W; nonBlocking?: boolean }): Tensor<D, W>;
  to(target: DType | Device | ToOptions<DType, Device>): Tensor<DType, Device> {
    const conversion: ToOptions<DType, Device> = typeof target === "string"
      ? (target === "cpu" || target.startsWith("cuda") ? { device: target as Device } : { dtype: target as DType })
      : target;
    const dt = dtypeCode(conversion.dtype ?? this.dtype);
    const dev = conversion.device === undefined ? sym.mdm_device(this.ptr) : deviceCode(conversion.device);
    return new Tensor(sym.mdm_to(this.ptr, dt, dev, conversion.nonBlocking ? 1 : 0, ST) ?? fail("to", this));
  }
  /** A float32 copy (this tensor's storage when it already is float32). */
  float(): Tensor<"float32", V> {
    return this.to({ dtype: "float32" });
  }
  /** An int64 copy (truncating floats towards zero). */
  long(): Tensor<"int64", V> {
    return this.to({ dtype: "int64" });
  }
  /** A copy on the CPU (this tensor's storage when it already is there). */
  cpu(): Tensor<D, "cpu"> {
    return this.to({ device: "cpu" });
  }
  /**
   * A copy laid out in `format` (the same tensor when it already is): "channelsLast" stores 4-D
   * tensors as NHWC, which oneDNN's CPU convolutions run fastest on; shapes stay NCHW.
   */
  toMemoryFormat(format: MemoryFormat): Tensor<D, V> {
    return new Tensor(sym.mdm_to_memory_format(this.ptr, MEMORY_FORMAT[format], ST) ?? fail("toMemoryFormat", this));
  }
  /** Whether the tensor is laid out in `format` (see `toMemoryFormat`). */
  isMemoryFormat(format: MemoryFormat): boolean {
    const r = sym.mdm_is_memory_format(this.ptr, MEMORY_FORMAT[format], ST);
    if (r < 0) fail("isMemoryFormat", this);
    return r === 1;
  }
  /** A copy with storage of its own (recorded by autograd like any op). */
  clone(): Tensor<D, V> {
    return new Tensor(sym.mdm_clone(this.ptr, ST) ?? fail("clone", this));
  }

  // ---- autograd

  /** Whether autograd records operations on this tensor (setting it calls `requiresGrad_`). */
  get requiresGrad(): boolean {
    return sym.mdm_requires_grad(this.ptr) === 1;
  }
  set requiresGrad(flag: boolean) {
    this.requiresGrad_(flag);
  }
  /** Marks a leaf tensor as a parameter whose gradient is wanted. */
  requiresGrad_(flag = true): this {
    if (flag && !isFloat(this.dtype)) {
      throw new TypeError(`requiresGrad: only floating-point tensors can require gradients, this one is ${this.dtype}`);
    }
    check(sym.mdm_set_requires_grad(this.ptr, flag ? 1 : 0, ST), "requiresGrad_", this);
    return this;
  }
  /** Whether this tensor was made by the user rather than by a recorded op (only leaves keep `grad`). */
  get isLeaf(): boolean {
    return sym.mdm_is_leaf(this.ptr) === 1;
  }
  /** The accumulated gradient, or null before any backward pass reached this tensor. */
  get grad(): Tensor<D, V> | null {
    const h = sym.mdm_grad(this.ptr, ST);
    if (h === null) {
      const err = takeError();
      if (err !== null) throw new TorchError(err, "grad", [this.shape]);
      return null;
    }
    return new Tensor(h);
  }
  /** Backpropagates from this tensor; non-scalar outputs need `grad`, the upstream gradient. */
  backward(grad?: Tensor<D, V>, opts: { retainGraph?: boolean } = {}): void {
    check(
      sym.mdm_backward(this.ptr, grad ? grad.ptr : null, opts.retainGraph ? 1 : 0, ST),
      "backward",
      this,
      ...(grad ? [grad] : []),
    );
  }
  /** Zeroes the gradient in place, or drops it with `setToNone`. */
  zeroGrad(setToNone = false): void {
    check(sym.mdm_zero_grad(this.ptr, setToNone ? 1 : 0, ST), "zeroGrad", this);
  }
  /** A tensor sharing storage with this one, cut from the autograd graph. */
  detach(): Tensor<D, V> {
    return new Tensor(sym.mdm_detach(this.ptr, ST) ?? fail("detach", this));
  }

  // ---- softmax family (methods for convenience; the nn functions live in functional.ts)

  /** Softmax along `dim`, optionally computed in another dtype (float32 for a half tensor). */
  softmax<E extends DType = D>(dim: number, dtype?: E): Tensor<E, V> {
    return new Tensor(
      sym.mdm_softmax(SOFTMAX.softmax, this.ptr, int(dim, "softmax: dim"), dtype ? dtypeCode(dtype) : -1, ST) ??
        fail("softmax", this),
    );
  }
  /** Log-softmax along `dim`, optionally computed in another dtype (float32 for a half tensor). */
  logSoftmax<E extends DType = D>(dim: number, dtype?: E): Tensor<E, V> {
    return new Tensor(
      sym.mdm_softmax(SOFTMAX.logSoftmax, this.ptr, int(dim, "logSoftmax: dim"), dtype ? dtypeCode(dtype) : -1, ST) ??
        fail("logSoftmax", this),
    );
  }
}

/** Passes handles of tensors to the native side (cat, stack, optimizers). */
export function tensorArray(ts: readonly Tensor<DType, Device>[]): BigUint64Array {
  return handleArray(ts.map((t) => t.ptr));
}

/** Number of native tensor handles alive in the process. */
export function liveTensors(): number {
  return Number(sym.mdm_live_tensors());
}
