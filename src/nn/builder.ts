// Name-scoped parameter creation, as candle's VarBuilder does: every parameter's key is the path of
// the module that made it, so state dicts match PyTorch's (guided-diffusion's) keys exactly.
import type { Device } from "../device.ts";
import type { DType, FloatDType } from "../dtype.ts";
import { keep, tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { noGrad } from "../autograd.ts";

/** Makes the initial value of a parameter or buffer of the given shape. */
export type Init = (shape: readonly number[], o: { dtype: FloatDType; device: Device }) => Tensor;

/** The tensors of one model, keyed by their full state-dict names. */
export class ParamStore {
  readonly params = new Map<string, Tensor<FloatDType>>();
  readonly buffers = new Map<string, Tensor>();
  /** Dropout and batch norm read this; `Module.train()` and `eval()` set it. */
  training = true;
  /** Lay out 2-D convolution weights channels-last (NHWC strides), see `Tensor.toMemoryFormat`. */
  channelsLast = false;

  constructor(readonly dtype: FloatDType = "float32", readonly device: Device = "cpu") {}
}

export class VarBuilder {
  constructor(readonly store: ParamStore, readonly prefix = "") {}

  /** A builder for a child module: its names are prefixed with `name.`. */
  pp(name: string | number): VarBuilder {
    return new VarBuilder(this.store, this.key(String(name)));
  }

  key(name: string): string {
    return this.prefix ? `${this.prefix}.${name}` : name;
  }

  /** Creates a trainable parameter under this builder's prefix. */
  param(name: string, shape: readonly number[], init: Init): Tensor<FloatDType> {
    const key = this.key(name);
    if (this.store.params.has(key) || this.store.buffers.has(key)) throw new Error(`parameter ${key} defined twice`);
    const { dtype, device } = this.store;
    // The initialisers' temporaries (rand, then its scaled copy) would otherwise wait for the GC,
    // which does not see their size: for a UNet that is twice the parameters' memory, held for
    // the whole training run.
    const t = tidy(() => noGrad(() => init(shape, { dtype, device }))) as Tensor<FloatDType>;
    keep(t).requiresGrad_(true);
    this.store.params.set(key, t);
    return t;
  }

  /** Creates a buffer (state that is saved but not trained, such as running statistics). */
  buffer<D extends DType>(name: string, value: Tensor<D>): Tensor<D> {
    const key = this.key(name);
    if (this.store.params.has(key) || this.store.buffers.has(key)) throw new Error(`buffer ${key} defined twice`);
    keep(value);
    this.store.buffers.set(key, value);
    return value;
  }
}
