// Reconstructions for the progress pictures: what the model makes of corrupted images at a few
// timesteps, with the corruption drawn from fixed seeds.
import { noGrad } from "../autograd.ts";
import { full } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { Generator } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import type { Pretrainer } from "./pretrain.ts";

type Images = Tensor<FloatDType, Device>;

/**
 * The corrupted input and the model's output for clean images `x0` [B, 3, S, S] at each timestep
 * of `ts`, with the raw or the EMA weights. The corruption comes from a fixed seed: pictures from
 * different steps show the same masks, and training's streams are left untouched.
 */
export function reconstruct(
  trainer: Pretrainer,
  x0: Images,
  ts: readonly number[],
  weights: "model" | "ema" = "model",
): { t: number; input: Images; output: Images }[] {
  const { model, corruption, options } = trainer;
  return noGrad(() =>
    tidy(() => {
      const swapBack = weights === "ema" ? trainer.ema.swapIntoModel() : null;
      using mask = new Generator(options.seed + 7919, options.device);
      using noise = new Generator(options.seed + 7920, options.device);
      try {
        model.eval();
        return ts.map((t) => {
          const steps = full([x0.size(0)], t, { dtype: "int64", device: x0.device });
          const { input } = corruption.apply(x0, steps, { mask, noise });
          return { t, input, output: model.forward(input, steps).output! };
        });
      } finally {
        model.train();
        swapBack?.();
      }
    })
  );
}
