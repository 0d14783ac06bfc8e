// The exponential moving average of a model's weights, which guided-diffusion samples from and saves
// beside the raw weights.
import { noGrad } from "../autograd.ts";
import type { FloatDType } from "../dtype.ts";
import type { Module } from "../nn/module.ts";
import { keep } from "../scope.ts";
import type { Tensor } from "../tensor.ts";

export class Ema {
  /** The averaged weights, keyed like the model's state dict (what ema.safetensors holds). */
  readonly weights: Map<string, Tensor<FloatDType>>;

  /** Starts the average at the model's current parameters; `rate` is the decay per update. */
  constructor(readonly model: Module, readonly rate: number) {
    this.weights = noGrad(() => new Map(model.namedParameters().map(([k, p]) => [k, keep(p.clone())])));
  }

  /** ema ← ema + (1 − rate)·(param − ema), for every parameter; call after each optimizer step. */
  update(): void {
    noGrad(() => {
      for (const [k, p] of this.model.namedParameters()) this.weights.get(k)!.lerp_(p, 1 - this.rate);
    });
  }

  /**
   * Copies saved averages in (converting dtype and device). Every parameter must be there.
   * @throws Error naming `source` and the first missing key.
   */
  load(saved: ReadonlyMap<string, Tensor>, source: string): void {
    noGrad(() => {
      for (const [k, t] of this.weights) {
        const value = saved.get(k);
        if (!value) throw new Error(`${source}: missing ${k}`);
        t.copy_(value);
      }
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
