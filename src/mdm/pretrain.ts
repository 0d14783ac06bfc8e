// One pre-training run's state and step: MDM (patch masking, x0 prediction, SSIM loss by default)
// or the DDPM baseline (Gaussian noise, epsilon prediction, MSE), with gradient accumulation,
// AdamW, EMA, and everything exact resume needs.
import { noGrad } from "../autograd.ts";
import { full, randint, randn } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { l1Loss, mseLoss } from "../functional.ts";
import { AdamW } from "../optim.ts";
import { Generator, manualSeed } from "../random.ts";
import { keep, tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { rootBuilder } from "../nn/module.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import { UNet } from "../models/unet/unet.ts";
import { type BetaSchedule, Diffusion } from "./ddpm.ts";
import { maskPatches } from "./mask.ts";
import { ssimLoss } from "./ssim.ts";

type T = Tensor<FloatDType, Device>;

export interface PretrainOptions {
  method: "mdm" | "ddpm";
  loss: "ssim" | "mse" | "l1";
  unet: Partial<UNetConfig> & { imageSize: number };
  lr: number;
  weightDecay: number;
  emaRate: number;
  /** Images per optimizer step, and per forward pass (gradient accumulation when smaller). */
  batch: number;
  microBatch: number;
  seed: number;
  device: Device;
  steps: number;
  /** Diffusion steps T. */
  diffusionSteps: number;
  /** Train at one timestep only (the paper's "no diffusion" ablation). */
  fixedT: number | null;
  patchSize: number;
  maskRatio: "release" | "paper";
  schedule: BetaSchedule;
  ddpmTarget: "noise" | "x0";
}

export const PRETRAIN_DEFAULTS: Omit<PretrainOptions, "unet"> = {
  method: "mdm",
  loss: "ssim",
  lr: 1e-4,
  weightDecay: 0,
  emaRate: 0.9999,
  batch: 8,
  microBatch: 8,
  seed: 0,
  device: "cpu",
  steps: 1000,
  diffusionSteps: 1000,
  fixedT: null,
  patchSize: 8,
  maskRatio: "release",
  schedule: "linear",
  ddpmTarget: "noise",
};

/** What a step reports. */
export interface StepResult {
  step: number;
  loss: number;
}

export class Pretrainer {
  readonly model: UNet;
  /** EMA copies of the parameters, keyed like the model's state dict. */
  readonly ema: Map<string, T>;
  readonly optimizer: AdamW;
  readonly diffusion: Diffusion;
  /** Independent streams, so that e.g. changing the mask code does not shift the timesteps. */
  readonly rng: { timesteps: Generator; mask: Generator; noise: Generator };
  step = 0;

  constructor(readonly o: PretrainOptions) {
    if (o.batch % o.microBatch !== 0) {
      throw new RangeError(`batch ${o.batch} is not a multiple of microBatch ${o.microBatch}`);
    }
    if (o.fixedT !== null && !(Number.isInteger(o.fixedT) && o.fixedT >= 0 && o.fixedT < o.diffusionSteps)) {
      throw new RangeError(`fixedT must be an integer in [0, ${o.diffusionSteps}), got ${o.fixedT}`);
    }
    // The initial weights come from the global generator: seed it, so that `seed` decides them too
    // (and the dropout stream that continues from it).
    manualSeed(o.seed);
    this.model = new UNet(o.unet, rootBuilder({ device: o.device }));
    this.ema = noGrad(() => new Map(this.model.namedParameters().map(([k, p]) => [k, keep(p.clone())])));
    this.optimizer = new AdamW(this.model.parameters(), { lr: o.lr, weightDecay: o.weightDecay });
    this.diffusion = new Diffusion(o.schedule, o.diffusionSteps);
    this.rng = {
      timesteps: new Generator(o.seed * 3 + 1, o.device),
      mask: new Generator(o.seed * 3 + 2, o.device),
      noise: new Generator(o.seed * 3 + 3, o.device),
    };
  }

  /** The corrupted input and the regression target of the method, for a batch of clean images. */
  corrupt(
    x0: T,
    t: Tensor<"int64", Device>,
    rng: { mask: Generator; noise: Generator } = this.rng,
  ): { input: T; target: T } {
    const o = this.o;
    if (o.method === "mdm") {
      const { images } = maskPatches(x0, t, {
        patchSize: o.patchSize,
        steps: o.diffusionSteps,
        ratio: o.maskRatio,
        generator: rng.mask,
      });
      return { input: images, target: x0 };
    }
    const noise = randn(x0.shape, { device: x0.device, generator: rng.noise });
    return { input: this.diffusion.qSample(x0, t, noise), target: o.ddpmTarget === "noise" ? noise : x0 };
  }

  /** Reconstruction loss between the model output and the target. */
  lossOf(output: T, target: T): T {
    switch (this.o.loss) {
      case "ssim":
        return ssimLoss(output, target);
      case "mse":
        return mseLoss(output, target);
      case "l1":
        return l1Loss(output, target);
    }
  }

  timesteps(n: number): Tensor<"int64", Device> {
    const o = this.o;
    if (o.fixedT !== null) return full([n], o.fixedT, { dtype: "int64", device: o.device });
    return randint(0, o.diffusionSteps, [n], { device: o.device, generator: this.rng.timesteps });
  }

  /** One optimizer step on a batch [B, 3, S, S] in [-1, 1]. */
  trainStep(batch: T): StepResult {
    const o = this.o;
    if (batch.ndim !== 4 || batch.size(0) !== o.batch) {
      throw new TypeError(`trainStep: batch must be [${o.batch}, C, H, W], got [${batch.shape.join(", ")}]`);
    }
    let total = 0;
    tidy(() => {
      this.optimizer.zeroGrad();
      for (const micro of batch.split(o.microBatch, 0)) {
        tidy(() => {
          const t = this.timesteps(micro.size(0));
          const { input, target } = this.corrupt(micro, t);
          const { output } = this.model.forward(input, t);
          const loss = this.lossOf(output!, target).mul(micro.size(0) / o.batch);
          loss.backward();
          total += loss.item();
        });
      }
      this.optimizer.step();
      noGrad(() => {
        for (const [k, p] of this.model.namedParameters()) this.ema.get(k)!.lerp_(p, 1 - o.emaRate);
      });
    });
    this.step++;
    return { step: this.step, loss: total };
  }

  /**
   * Reconstructions at given timesteps, for the progress pictures. The corruption comes from a
   * fixed seed: pictures from different steps show the same masks, and training's streams are
   * left untouched.
   */
  reconstruct(x0: T, ts: number[], weights: "model" | "ema" = "model"): { t: number; input: T; output: T }[] {
    return noGrad(() =>
      tidy(() => {
        const swap = weights === "ema" ? this.#swapEma() : null;
        using mask = new Generator(this.o.seed + 7919, this.o.device);
        using noise = new Generator(this.o.seed + 7920, this.o.device);
        try {
          this.model.eval();
          return ts.map((t) => {
            const steps = full([x0.size(0)], t, { dtype: "int64", device: x0.device });
            const { input } = this.corrupt(x0, steps, { mask, noise });
            return { t, input, output: this.model.forward(input, steps).output! };
          });
        } finally {
          this.model.train();
          swap?.();
        }
      })
    );
  }

  /** Puts the EMA weights into the model; returns the function that puts the originals back. */
  #swapEma(): () => void {
    const saved = new Map(this.model.namedParameters().map(([k, p]) => [k, keep(p.clone())]));
    for (const [k, p] of this.model.namedParameters()) p.copy_(this.ema.get(k)!);
    return () => {
      noGrad(() => {
        for (const [k, p] of this.model.namedParameters()) p.copy_(saved.get(k)!);
      });
      for (const t of saved.values()) t.dispose();
    };
  }
}
