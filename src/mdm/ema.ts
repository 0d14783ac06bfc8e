// The exponential moving average of a model's weights, which guided-diffusion samples from and saves
// beside the raw weights.
import { noGrad } from "../autograd.ts";
import type { FloatDType } from "../dtype.ts";
import type { Module } from "../nn/module.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

/**
 * The exponential moving average of a model's parameters (guided-diffusion's EMA, which it samples
 * from and saves as ema_RATE.pt): `update()` after each optimizer step, `swapIntoModel()` to
 * evaluate with the averages.
 */
export class Ema {
  /** The averaged weights, keyed like the model's state dict (what ema.safetensors holds). */
  readonly weights: Map<string, Tensor<FloatDType>>;

  /**
   * Starts the average at the model's current parameters, or takes it from `saved` (e.g. a
   * checkpoint's ema.safetensors, named `source` in errors): each tensor used is removed from the
   * map and owned by the EMA, converted to its parameter's dtype and device where they differ.
   * `rate` is the decay per update.
   * @throws Error naming `source` and the key when `saved` lacks a parameter or holds another shape.
   */
  constructor(readonly model: Module, readonly rate: number, saved?: Map<string, Tensor>, source = "EMA weights") {
    const params = model.namedParameters();
    // Checked before anything is taken, so a refused file leaves `saved` whole.
    for (const [k, p] of saved ? params : []) {
      const value = saved!.get(k);
      if (!value) throw new Error(`${source}: missing ${k}`);
      if (value.shape.join() !== p.shape.join()) {
        throw new Error(`${source}: ${k} is [${value.shape.join(", ")}], the model's is [${p.shape.join(", ")}]`);
      }
    }
    const adopt = (k: string, p: Tensor<FloatDType>): Tensor<FloatDType> => {
      const value = saved!.get(k)!;
      saved!.delete(k);
      if (value.dtype === p.dtype && value.device === p.device) return value as Tensor<FloatDType>;
      using _ = value;
      return value.to({ dtype: p.dtype, device: p.device });
    };
    this.weights = noGrad(() => new Map(params.map(([k, p]) => [k, keep(saved ? adopt(k, p) : p.clone())])));
  }

  /** ema ← ema + (1 − rate)·(param − ema), for every parameter; call after each optimizer step. */
  update(): void {
    noGrad(() => {
      for (const [k, p] of this.model.namedParameters()) this.weights.get(k)!.lerp_(p, 1 - this.rate);
    });
  }

  /** Puts the averages into the model; returns the function that puts the raw weights back. */
  swapIntoModel(): () => void {
    const saved = noGrad(() => {
      const raw = new Map(this.model.namedParameters().map(([k, p]) => [k, keep(p.clone())]));
      for (const [k, p] of this.model.namedParameters()) p.copy_(this.weights.get(k)!);
      return raw;
    });
    return () => {
      noGrad(() => {
        for (const [k, p] of this.model.namedParameters()) p.copy_(saved.get(k)!);
      });
      for (const t of saved.values()) t.dispose();
    };
  }
}
