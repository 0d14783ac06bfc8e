// Name-scoped parameter creation, as candle's VarBuilder does: every parameter's key is the path of
// the module that made it, so state dicts match PyTorch's (guided-diffusion's) keys exactly. Like
// candle's VarBuilder backends, a store may hold loaded weights: a parameter found there is taken
// as it is, and only the missing ones are initialised, so loading a checkpoint costs neither a
// random initialisation nor a second copy of the weights.
import type { Device } from "../device.ts";
import { type DType, type FloatDType, isFloat } from "../dtype.ts";
import { keep, tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { noGrad } from "../autograd.ts";

/** Makes the initial value of a parameter or buffer of the given shape. */
export type Init = (shape: readonly number[], opts: { dtype: FloatDType; device: Device }) => Tensor;

/** What loading weights into a model found besides the keys it loaded. */
export interface LoadReport {
  /** Keys whose values were loaded. */
  loaded: string[];
  /** Keys the model has and the weights lack (left initialised). */
  missing: string[];
  /** Keys the weights hold that no parameter or buffer asked for. */
  unexpected: string[];
  /** Keys present in both with different shapes: the model's (`expected`) and the file's (`got`). */
  mismatched: { key: string; expected: readonly number[]; got: readonly number[] }[];
}

/** The tensors of one model, keyed by their full state-dict names. */
export class ParamStore {
  /** Trainable parameters by full state-dict key. */
  readonly params: Map<string, Tensor<FloatDType>> = new Map();
  /** Buffers (saved, not trained: running statistics) by full state-dict key. */
  readonly buffers: Map<string, Tensor> = new Map();
  /** Dropout and batch norm read this; `Module.train()` and `eval()` set it. */
  training = true;
  /** Lay out 2-D convolution weights channels-last (NHWC strides), see `Tensor.toMemoryFormat`. */
  channelsLast = false;
  readonly #weights: Map<string, Tensor> | null;
  readonly #loaded: string[] = [];
  readonly #missing: string[] = [];
  readonly #mismatched: LoadReport["mismatched"] = [];

  /**
   * `weights`: loaded tensors by state-dict key, taken in place of initialisers as the model is
   * built. The store owns each tensor it takes and deletes it from the map; what remains there
   * (unexpected or mis-shaped keys) stays the caller's to dispose.
   */
  constructor(
    readonly dtype: FloatDType = "float32",
    readonly device: Device = "cpu",
    weights?: Map<string, Tensor>,
  ) {
    this.#weights = weights ?? null;
  }

  /**
   * The loaded value for `key` in the given dtype and on the store's device, or null when the store
   * has no weights, lacks the key or holds another shape there (the caller then initialises it).
   * @throws TypeError naming the key when a parameter's value is not floating point.
   */
  take(key: string, shape: readonly number[], dtype: DType, what: "parameter" | "buffer"): Tensor | null {
    if (!this.#weights) return null;
    const value = this.#weights.get(key);
    if (!value) {
      this.#missing.push(key);
      return null;
    }
    if (value.shape.join() !== shape.join()) {
      this.#mismatched.push({ key, expected: [...shape], got: value.shape });
      return null;
    }
    if (what === "parameter" && !isFloat(value.dtype)) {
      throw new TypeError(`weights: ${key} is ${value.dtype}; a parameter needs a floating-point tensor`);
    }
    this.#weights.delete(key);
    this.#loaded.push(key);
    if (value.dtype === dtype && value.device === this.device) return value;
    // Another dtype (a float16 file into float32 weights) or device: one conversion, as copy_ would.
    try {
      return noGrad(() => value.to({ dtype, device: this.device }));
    } finally {
      value.dispose();
    }
  }

  /**
   * What building took from the weights: the keys loaded, those initialised because the weights
   * lack them or hold another shape, and the keys no parameter or buffer asked for. Empty lists
   * for a store built without weights.
   */
  loadReport(): LoadReport {
    const mismatched = new Set(this.#mismatched.map((m) => m.key));
    return {
      loaded: [...this.#loaded],
      missing: [...this.#missing],
      unexpected: [...(this.#weights?.keys() ?? [])].filter((k) => !mismatched.has(k)),
      mismatched: [...this.#mismatched],
    };
  }
}

/**
 * Creates parameters and buffers under a name prefix in a `ParamStore`, so that each tensor's key
 * is the path of the module that made it (`input_blocks.1.0.in_layers.2.weight`), as in PyTorch.
 * Get a root builder from `rootBuilder()`; each module hands `vb.pp(name)` to its children.
 */
export class VarBuilder {
  /** A builder adding `prefix.` to the names it creates in `store` (no prefix at the root). */
  constructor(readonly store: ParamStore, readonly prefix = "") {}

  /** A builder for a child module: its names are prefixed with `name.`. */
  pp(name: string | number): VarBuilder {
    return new VarBuilder(this.store, this.key(String(name)));
  }

  /** The full state-dict key of `name` under this builder's prefix. */
  key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /**
   * Creates a trainable parameter under this builder's prefix: the store's loaded value for the
   * key when it has one of this shape, otherwise `init`'s.
   * @throws Error naming the key when it is defined twice; TypeError when a loaded value is not floating point.
   */
  param(name: string, shape: readonly number[], init: Init): Tensor<FloatDType> {
    const key = this.key(name);
    if (this.store.params.has(key) || this.store.buffers.has(key)) throw new Error(`parameter ${key} defined twice`);
    const { dtype, device } = this.store;
    // The initialisers' temporaries (rand, then its scaled copy) would otherwise wait for the GC,
    // which does not see their size: for a UNet that is twice the parameters' memory, held for
    // the whole training run.
    const t = (this.store.take(key, shape, dtype, "parameter") ??
      tidy(() => noGrad(() => init(shape, { dtype, device })))) as Tensor<FloatDType>;
    keep(t).requiresGrad_(true);
    this.store.params.set(key, t);
    return t;
  }

  /**
   * Creates a buffer (state that is saved but not trained, such as running statistics): the
   * store's loaded value for the key when it has one of this shape (converted to `value`'s dtype,
   * and `value` disposed), otherwise `value`.
   * @throws Error naming the key when it is defined twice.
   */
  buffer<D extends DType>(name: string, value: Tensor<D>): Tensor<D> {
    const key = this.key(name);
    if (this.store.params.has(key) || this.store.buffers.has(key)) throw new Error(`buffer ${key} defined twice`);
    const loaded = this.store.take(key, value.shape, value.dtype, "buffer") as Tensor<D> | null;
    if (loaded) value.dispose();
    const t = loaded ?? value;
    keep(t);
    this.store.buffers.set(key, t);
    return t;
  }
}
