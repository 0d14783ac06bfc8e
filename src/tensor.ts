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
  type HostArray,
  hostArray,
  isFloat,
  type Promote,
} from "./dtype.ts";
import { type Device, deviceCode, deviceFromCode } from "./device.ts";
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

function shapeOf(x: unknown): readonly number[] | null {
  return x instanceof Tensor && !x.disposed ? x.shape : null;
}

/** Throws the failure recorded for `op`, naming the shapes of its tensor inputs. */
export function fail(op: string, ...inputs: unknown[]): never {
  const message = takeError() ?? "the native call returned no result";
  throw new TorchError(message, op, inputs.filter((x) => x instanceof Tensor).map(shapeOf));
}

/** Throws if a status-returning call failed. */
export function check(rc: number, op: string, ...inputs: unknown[]): void {
  if (rc !== 0) fail(op, ...inputs);
}

/** Validates an integer argument, naming it in the error. */
export function int(v: number, what: string): number {
  if (!Number.isInteger(v)) throw new TypeError(`${what} must be an integer, got ${v}`);
  return v;
}

/** Validates a list of integers (a shape, a list of dims), naming it in the error. */
export function intList(v: readonly number[], what: string): readonly number[] {
  if (!Array.isArray(v)) throw new TypeError(`${what} must be an array of integers, got ${String(v)}`);
  for (const x of v) {
    if (!Number.isInteger(x) || Math.abs(x) >= 2 ** 31) {
      throw new TypeError(`${what} must hold integers below 2^31, got [${v.join(", ")}]`);
    }
  }
  return v;
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

export type MemoryFormat = "contiguous" | "channelsLast";

/** Options of `Tensor.to`. */
export interface ToOptions<D extends DType, V extends Device> {
  dtype?: D;
  device?: V;
  nonBlocking?: boolean;
}

/**
 * A handle to a libtorch tensor. `D` is its dtype and `V` its device. Free it with `dispose()`,
 * `using`, or an enclosing `tidy`.
 */
export class Tensor<D extends DType = DType, V extends Device = Device> implements Scoped {
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

  /** Part of the scope protocol: no scope will free this tensor, so GC must be able to. */
  unscoped(): void {
    if (!this.#registered) registerLater(this);
  }

  /** Hands the handle to the GC backstop, unless the tensor was freed or scoped since. */
  registerBackstop(): void {
    if (this.#h === null || this.#registered || this[SCOPE] !== null) return;
    this.#registered = true;
    registry.register(this, this.#h, this);
  }

  /** The native handle; throws once the tensor is disposed. */
  get ptr(): Ptr {
    const h = this.#h;
    if (h === null) throw new DisposedError("tensor used after dispose()");
    return h;
  }

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

  [Symbol.dispose](): void {
    this.dispose();
  }

  // Reading `ptr` first makes a disposed tensor throw even when the shape or dtype is cached.
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

  get ndim(): number {
    return this.shape.length;
  }

  get numel(): number {
    return Number(sym.mdm_numel(this.ptr));
  }

  get dtype(): D {
    const h = this.ptr;
    if (this.#dtype === null) this.#dtype = dtypeFromCode(sym.mdm_dtype(h)) as D;
    return this.#dtype;
  }

  get device(): V {
    return deviceFromCode(sym.mdm_device(this.ptr)) as V;
  }

  /** Size of one dimension (negative counts from the end). */
  size(dim: number): number {
    const s = this.shape;
    const d = dim < 0 ? dim + s.length : dim;
    if (d < 0 || d >= s.length) {
      throw new RangeError(`size(${dim}): tensor of shape [${s.join(", ")}] has no such dimension`);
    }
    return s[d];
  }

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

  /** The single value of a one-element tensor. */
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

  add<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.add, other, "add");
  }
  sub<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.sub, other, "sub");
  }
  mul<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.mul, other, "mul");
  }
  /** True division: integer inputs give a float result, as in PyTorch. */
  div<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.div, other, "div");
  }
  pow<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.pow, other, "pow");
  }
  maximum<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.maximum, other, "maximum");
  }
  minimum<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.minimum, other, "minimum");
  }
  remainder<E extends DType = D>(other: Tensor<E, V> | number): Tensor<Promote<D, E>, V> {
    return this.#binary(BINARY.remainder, other, "remainder");
  }
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

  eq(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.eq, other, "eq");
  }
  ne(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.ne, other, "ne");
  }
  lt(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.lt, other, "lt");
  }
  le(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.le, other, "le");
  }
  gt(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.gt, other, "gt");
  }
  ge(other: Tensor<DType, V> | number): Tensor<"bool", V> {
    return this.#binary(BINARY.ge, other, "ge");
  }
  logicalAnd(other: Tensor<DType, V>): Tensor<"bool", V> {
    return this.#binary(BINARY.logicalAnd, other, "logicalAnd");
  }
  logicalOr(other: Tensor<DType, V>): Tensor<"bool", V> {
    return this.#binary(BINARY.logicalOr, other, "logicalOr");
  }
  logicalNot(): Tensor<"bool", V> {
    return this.#unary(UNARY.logicalNot, "logicalNot") as unknown as Tensor<"bool", V>;
  }
  isnan(): Tensor<"bool", V> {
    return this.#unary(UNARY.isnan, "isnan") as unknown as Tensor<"bool", V>;
  }

  neg(): Tensor<D, V> {
    return this.#unary(UNARY.neg, "neg");
  }
  exp(): Tensor<D, V> {
    return this.#unary(UNARY.exp, "exp");
  }
  expm1(): Tensor<D, V> {
    return this.#unary(UNARY.expm1, "expm1");
  }
  log(): Tensor<D, V> {
    return this.#unary(UNARY.log, "log");
  }
  log1p(): Tensor<D, V> {
    return this.#unary(UNARY.log1p, "log1p");
  }
  sqrt(): Tensor<D, V> {
    return this.#unary(UNARY.sqrt, "sqrt");
  }
  rsqrt(): Tensor<D, V> {
    return this.#unary(UNARY.rsqrt, "rsqrt");
  }
  abs(): Tensor<D, V> {
    return this.#unary(UNARY.abs, "abs");
  }
  sin(): Tensor<D, V> {
    return this.#unary(UNARY.sin, "sin");
  }
  cos(): Tensor<D, V> {
    return this.#unary(UNARY.cos, "cos");
  }
  tanh(): Tensor<D, V> {
    return this.#unary(UNARY.tanh, "tanh");
  }
  sigmoid(): Tensor<D, V> {
    return this.#unary(UNARY.sigmoid, "sigmoid");
  }
  relu(): Tensor<D, V> {
    return this.#unary(UNARY.relu, "relu");
  }
  silu(): Tensor<D, V> {
    return this.#unary(UNARY.silu, "silu");
  }
  /** GELU, exact (erf) by default or with the tanh approximation. */
  gelu(approximate: "none" | "tanh" = "none"): Tensor<D, V> {
    return this.#unary(approximate === "tanh" ? UNARY.geluTanh : UNARY.gelu, "gelu");
  }
  floor(): Tensor<D, V> {
    return this.#unary(UNARY.floor, "floor");
  }
  ceil(): Tensor<D, V> {
    return this.#unary(UNARY.ceil, "ceil");
  }
  round(): Tensor<D, V> {
    return this.#unary(UNARY.round, "round");
  }
  sign(): Tensor<D, V> {
    return this.#unary(UNARY.sign, "sign");
  }
  square(): Tensor<D, V> {
    return this.#unary(UNARY.square, "square");
  }
  reciprocal(): Tensor<D, V> {
    return this.#unary(UNARY.reciprocal, "reciprocal");
  }
  erf(): Tensor<D, V> {
    return this.#unary(UNARY.erf, "erf");
  }

  /** Clamps to [min, max]; either bound may be omitted (null or undefined). */
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

  maskedFill(mask: Tensor<"bool", V>, value: number): Tensor<D, V> {
    return new Tensor(sym.mdm_masked_fill(this.ptr, mask.ptr, value, ST) ?? fail("maskedFill", this, mask));
  }

  // ---- in place (for parameter updates, EMA and buffers; not recorded by autograd on leaves)

  #inplace(code: number, other: Tensor<DType, V> | number, op: string): this {
    if (typeof other === "number") check(sym.mdm_inplace_scalar(code, this.ptr, other, ST), op, this);
    else check(sym.mdm_inplace(code, this.ptr, other.ptr, ST), op, this, other);
    return this;
  }
  add_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.add, other, "add_");
  }
  sub_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.sub, other, "sub_");
  }
  mul_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.mul, other, "mul_");
  }
  div_(other: Tensor<DType, V> | number): this {
    return this.#inplace(INPLACE.div, other, "div_");
  }
  copy_(src: Tensor<DType, Device>): this {
    check(sym.mdm_inplace(INPLACE.copy, this.ptr, src.ptr, ST), "copy_", this, src);
    return this;
  }
  fill_(value: number): this {
    return this.#inplace(INPLACE.fill, value, "fill_");
  }
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
  mean(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.mean, dim, keepdim, "mean");
  }
  amax(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.amax, dim, keepdim, "amax");
  }
  amin(dim?: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.amin, dim, keepdim, "amin");
  }
  logsumexp(dim: number | readonly number[], keepdim = false): Tensor<D, V> {
    return this.#reduce(REDUCE.logsumexp, dim, keepdim, "logsumexp");
  }
  all(dim?: number | readonly number[], keepdim = false): Tensor<"bool", V> {
    return this.#reduce(REDUCE.all, dim, keepdim, "all");
  }
  any(dim?: number | readonly number[], keepdim = false): Tensor<"bool", V> {
    return this.#reduce(REDUCE.any, dim, keepdim, "any");
  }
  /** Variance; unbiased (Bessel-corrected) unless told otherwise, as in PyTorch. */
  var(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor<D, V> {
    return this.#moment(dim, opts, false, "var");
  }
  std(dim?: number | readonly number[], opts: { unbiased?: boolean; keepdim?: boolean } = {}): Tensor<D, V> {
    return this.#moment(dim, opts, true, "std");
  }
  #moment(
    dim: number | readonly number[] | undefined,
    o: { unbiased?: boolean; keepdim?: boolean },
    root: boolean,
    op: string,
  ) {
    const d = dims(dim, `${op}: dim`);
    return new Tensor<D, V>(
      sym.mdm_var(this.ptr, ints(d), d.length, o.unbiased === false ? 0 : 1, o.keepdim ? 1 : 0, root ? 1 : 0, ST) ??
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
  argsort(dim = -1, descending = false): Tensor<"int64", V> {
    return new Tensor(
      sym.mdm_argsort(this.ptr, int(dim, "argsort: dim"), descending ? 1 : 0, ST) ?? fail("argsort", this),
    );
  }
  sort(dim = -1, descending = false): [Tensor<D, V>, Tensor<"int64", V>] {
    const n = sym.mdm_sort(this.ptr, int(dim, "sort: dim"), descending ? 1 : 0, OUT.buffer, OUT.capacity, ST);
    return many(n, "sort", this) as [Tensor<D, V>, Tensor<"int64", V>];
  }
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
  cumsum(dim: number): Tensor<D, V> {
    return new Tensor(sym.mdm_cumsum(this.ptr, int(dim, "cumsum: dim"), ST) ?? fail("cumsum", this));
  }

  // ---- linear algebra

  matmul<E extends DType>(other: Tensor<E, V>): Tensor<Promote<D, E>, V> {
    return new Tensor(sym.mdm_matmul(this.ptr, other.ptr, ST) ?? fail("matmul", this, other));
  }
  bmm(other: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(sym.mdm_bmm(this.ptr, other.ptr, ST) ?? fail("bmm", this, other));
  }

  // ---- shape

  reshape(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "reshape: shape");
    return new Tensor(sym.mdm_reshape(this.ptr, ints(s), s.length, ST) ?? fail("reshape", this));
  }
  view(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "view: shape");
    return new Tensor(sym.mdm_view(this.ptr, ints(s), s.length, ST) ?? fail("view", this));
  }
  permute(...order: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(order, "permute: dims");
    return new Tensor(sym.mdm_permute(this.ptr, ints(s), s.length, ST) ?? fail("permute", this));
  }
  transpose(dim0: number, dim1: number): Tensor<D, V> {
    return new Tensor(
      sym.mdm_transpose(this.ptr, int(dim0, "transpose: dim0"), int(dim1, "transpose: dim1"), ST) ??
        fail("transpose", this),
    );
  }
  contiguous(): Tensor<D, V> {
    return new Tensor(sym.mdm_contiguous(this.ptr, ST) ?? fail("contiguous", this));
  }
  /** Broadcasts size-1 dimensions to `shape` (-1 keeps a size) without copying. */
  expand(...shape: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(shape, "expand: shape");
    return new Tensor(sym.mdm_expand(this.ptr, ints(s), s.length, ST) ?? fail("expand", this));
  }
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
  unsqueeze(dim: number): Tensor<D, V> {
    return new Tensor(sym.mdm_unsqueeze(this.ptr, int(dim, "unsqueeze: dim"), ST) ?? fail("unsqueeze", this));
  }
  flatten(start = 0, end = -1): Tensor<D, V> {
    return new Tensor(
      sym.mdm_flatten(this.ptr, int(start, "flatten: start"), int(end, "flatten: end"), ST) ?? fail("flatten", this),
    );
  }
  flip(...dimsToFlip: number[] | [readonly number[]]): Tensor<D, V> {
    const s = sizesArg(dimsToFlip, "flip: dims");
    return new Tensor(sym.mdm_flip(this.ptr, ints(s), s.length, ST) ?? fail("flip", this));
  }
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
  indexSelect(dim: number, index: Tensor<"int64" | "int32", V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_index_select(this.ptr, int(dim, "indexSelect: dim"), index.ptr, ST) ?? fail("indexSelect", this, index),
    );
  }
  gather(dim: number, index: Tensor<"int64", V>): Tensor<D, V> {
    return new Tensor(sym.mdm_gather(this.ptr, int(dim, "gather: dim"), index.ptr, ST) ?? fail("gather", this, index));
  }
  /** A copy of `this` with `src` written at `index` along `dim`. */
  scatter(dim: number, index: Tensor<"int64", V>, src: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_scatter(this.ptr, int(dim, "scatter: dim"), index.ptr, src.ptr, ST) ?? fail("scatter", this, index, src),
    );
  }
  scatterAdd(dim: number, index: Tensor<"int64", V>, src: Tensor<D, V>): Tensor<D, V> {
    return new Tensor(
      sym.mdm_scatter_add(this.ptr, int(dim, "scatterAdd: dim"), index.ptr, src.ptr, ST) ??
        fail("scatterAdd", this, index, src),
    );
  }
  maskedSelect(mask: Tensor<"bool", V>): Tensor<D, V> {
    return new Tensor(sym.mdm_masked_select(this.ptr, mask.ptr, ST) ?? fail("maskedSelect", this, mask));
  }
  /** Indices of the non-zero elements, one row per element. */
  nonzero(): Tensor<"int64", V> {
    return new Tensor(sym.mdm_nonzero(this.ptr, ST) ?? fail("nonzero", this));
  }
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
  chunk(chunks: number, dim = 0): Tensor<D, V>[] {
    const n = sym.mdm_chunk(this.ptr, int(chunks, "chunk: chunks"), int(dim, "chunk: dim"), OUT.buffer, OUT.capacity, ST);
    return many(n, "chunk", this);
  }

  // ---- conversion

  /** Converts dtype and/or device; returns a new handle (sharing storage when nothing changes). */
  to<E extends DType>(dtype: E): Tensor<E, V>;
  to<W extends Device>(device: W): Tensor<D, W>;
  to<E extends DType, W extends Device>(o: { dtype: E; device: W; nonBlocking?: boolean }): Tensor<E, W>;
  to<E extends DType>(o: { dtype: E; nonBlocking?: boolean }): Tensor<E, V>;
  to<W extends Device>(o: { device: W; nonBlocking?: boolean }): Tensor<D, W>;
  to(target: DType | Device | ToOptions<DType, Device>): Tensor<DType, Device> {
    const o: ToOptions<DType, Device> = typeof target === "string"
      ? (target === "cpu" || target.startsWith("cuda") ? { device: target as Device } : { dtype: target as DType })
      : target;
    const dt = dtypeCode(o.dtype ?? this.dtype);
    const dev = o.device === undefined ? sym.mdm_device(this.ptr) : deviceCode(o.device);
    return new Tensor(sym.mdm_to(this.ptr, dt, dev, o.nonBlocking ? 1 : 0, ST) ?? fail("to", this));
  }
  float(): Tensor<"float32", V> {
    return this.to({ dtype: "float32" });
  }
  long(): Tensor<"int64", V> {
    return this.to({ dtype: "int64" });
  }
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
  isMemoryFormat(format: MemoryFormat): boolean {
    const r = sym.mdm_is_memory_format(this.ptr, MEMORY_FORMAT[format], ST);
    if (r < 0) fail("isMemoryFormat", this);
    return r === 1;
  }
  clone(): Tensor<D, V> {
    return new Tensor(sym.mdm_clone(this.ptr, ST) ?? fail("clone", this));
  }

  // ---- autograd

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
