// The pre-training loop: a step corrupts each micro-batch (MDM's patch masking or DDPM's Gaussian
// noise, see corruption.ts), regresses the target with the chosen loss, accumulates gradients, then
// steps AdamW and the EMA. The trainer owns everything exact resume needs (train_state.ts saves it).
import { l1Loss, mseLoss } from "../functional.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { AdamW } from "../optim.ts";
import { Generator, manualSeed } from "../random.ts";
import { tidy } from "../scope.ts";
import type { FloatTensor, Tensor } from "../tensor.ts";
import { rootBuilder, StateDictError } from "../nn/module.ts";
import type { UNetConfig } from "../models/unet/config.ts";
import { UNet } from "../models/unet/unet.ts";
import type { Corruption, CorruptionStreams } from "./corruption.ts";
import { type BetaSchedule, GaussianNoise } from "./ddpm.ts";
import { Ema } from "./ema.ts";
import { PatchMasking } from "./mask.ts";
import { ssimLoss } from "./ssim.ts";
import { checkPretrainOptions } from "./validate.ts";

/** Everything a pre-training run is: method, loss, model, optimisation, corruption and schedule. */
export interface PretrainOptions {
  /** "mdm": timestep-controlled patch masking (the paper's method); "ddpm": the Gaussian-noise baseline. */
  method: "mdm" | "ddpm";
  /** The reconstruction loss: SSIM (the paper's, see ssimLoss), or mean squared or absolute error. */
  loss: "ssim" | "mse" | "l1";
  /** The UNet (guided-diffusion's options; imageSize is the training crop's side, pixels). */
  unet: Partial<UNetConfig> & { imageSize: number };
  /** AdamW's learning rate (constant). */
  lr: number;
  /** AdamW's decoupled weight decay. */
  weightDecay: number;
  /** The EMA's decay per step (0.9999 in the paper). */
  emaRate: number;
  /** Images per optimizer step, and per forward pass (gradient accumulation when smaller). */
  batch: number;
  /** Images per forward/backward pass; batch must be a multiple of it. */
  microBatch: number;
  /** Seed of the initial weights and of the timestep, mask and noise streams. */
  seed: number;
  /** Where the model and the batches live. */
  device: Device;
  /** Optimizer steps of the whole run. */
  steps: number;
  /** Diffusion steps T. */
  diffusionSteps: number;
  /** Train at one timestep only (the paper's "no diffusion" ablation). */
  fixedT: number | null;
  /** MDM's patch side, pixels (8 in the paper). */
  patchSize: number;
  /** MDM's masked fraction at timestep t: t/T as the authors' release, or t/(T+1) as the paper's text. */
  maskRatio: "release" | "paper";
  /** DDPM's noise schedule. */
  schedule: BetaSchedule;
  /** What the DDPM baseline predicts: the noise (the usual), or the clean image. */
  ddpmTarget: "noise" | "x0";
}

/** The authors' settings for everything but the UNet (their batch of 128 aside: 8 here, for a CPU). */
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

/**
 * How a trainer takes part in data-parallel training across processes (src/dist's
 * DataParallelGroup implements it on a process group). Every rank draws the same global batch and
 * the same corruption for all of it, runs forward and backward on its own micro-batches only, and
 * the gradients are summed across ranks before the (identical) optimizer step.
 */
export interface DataParallel {
  /** This process's rank, 0..worldSize-1: it owns micro-batches rank·k .. (rank+1)·k − 1 of each step. */
  readonly rank: number;
  /** The number of processes sharing each step. */
  readonly worldSize: number;
  /** Replaces each parameter's gradient, in place, by the sum over the ranks. */
  syncGradients(params: readonly Tensor<FloatDType>[]): unknown;
  /** The sum of `x` over the ranks. */
  sumLoss(x: number): number;
}

/** What a step reports. */
export interface StepResult {
  /** The step just completed (1 for the first). */
  step: number;
  /** Its loss, averaged over the whole batch (over every process's share). */
  loss: number;
}

/** The corruption of `options.method`. */
export function corruptionOf(options: PretrainOptions): Corruption {
  const { diffusionSteps: steps, fixedT, device } = options;
  switch (options.method) {
    case "mdm":
      return new PatchMasking({ patchSize: options.patchSize, steps, ratio: options.maskRatio, fixedT, device });
    case "ddpm":
      return new GaussianNoise({ schedule: options.schedule, steps, target: options.ddpmTarget, fixedT, device });
  }
}

const LOSSES: Record<PretrainOptions["loss"], (output: FloatTensor, target: FloatTensor) => FloatTensor> = {
  ssim: ssimLoss,
  mse: mseLoss,
  l1: l1Loss,
};

/**
 * MDM (or DDPM) pre-training: each step corrupts a batch of clean images, has the UNet reconstruct
 * it, and takes an AdamW step on the loss, with an EMA of the weights alongside. The random streams
 * are its own, so that a checkpoint of the trainer resumes exactly.
 */
export class Pretrainer {
  /** The UNet being trained. */
  readonly model: UNet;
  /** The exponential moving average of its weights. */
  readonly ema: Ema;
  /** AdamW over the model's parameters. */
  readonly optimizer: AdamW;
  /** What options.method does to the images (PatchMasking or GaussianNoise). */
  readonly corruption: Corruption;
  /** Independent streams, so that e.g. changing the mask code does not shift the timesteps. */
  readonly rng: { timesteps: Generator } & CorruptionStreams;
  /** Optimizer steps taken so far. */
  step = 0;
  /**
   * Data-parallel training across processes, or null (the default) for a single process. With it,
   * the batch size must be a multiple of worldSize × microBatch. Dropout (when the UNet has it)
   * draws from each process's global generator, all seeded alike, so that runs with dropout are not
   * the same across process counts; without dropout, N processes compute what one does, up to the
   * order in which gradients are summed.
   */
  parallel: DataParallel | null = null;

  /**
   * A trainer at step 0: seeded initial weights, or with `saved`, the weights and EMA taken from
   * there (no initialisation; the tensors used leave the maps, see `rootBuilder`), as resuming does.
   * @throws FieldError (a RangeError) naming the first field of `options` that is missing, of the
   * wrong type or out of range, or that disagrees with another (see checkPretrainOptions): e.g. a
   * batch that is not a multiple of the micro-batch, a fixedT outside [0, T).
   * @throws StateDictError when `saved.model` does not fit the model (missing, unexpected or mis-shaped keys).
   */
  constructor(
    readonly options: PretrainOptions,
    saved?: { model: Map<string, Tensor>; ema: Map<string, Tensor>; emaSource?: string },
  ) {
    checkPretrainOptions(options);
    // The initial weights come from the global generator: seed it, so that `seed` decides them too
    // (and the dropout stream that continues from it).
    manualSeed(options.seed);
    const vb = rootBuilder({ device: options.device, weights: saved?.model });
    this.model = new UNet(options.unet, vb);
    if (saved) {
      const report = vb.store.loadReport();
      if (report.missing.length || report.unexpected.length || report.mismatched.length) {
        for (const t of this.model.stateDict().values()) t.dispose();
        throw new StateDictError(report);
      }
    }
    this.ema = new Ema(this.model, options.emaRate, saved?.ema, saved?.emaSource);
    this.optimizer = new AdamW(this.model.parameters(), { lr: options.lr, weightDecay: options.weightDecay });
    this.corruption = corruptionOf(options);
    const { seed, device } = options;
    this.rng = {
      timesteps: new Generator(seed * 3 + 1, device),
      mask: new Generator(seed * 3 + 2, device),
      noise: new Generator(seed * 3 + 3, device),
    };
  }

  /**
   * One optimizer step on a batch [B, 3, S, S] in [-1, 1]. With `parallel`, the batch is the global
   * one: each micro-batch's timesteps and corruption are drawn on every rank as a single process
   * draws them, but the forward and backward passes run only on the rank that owns the micro-batch;
   * the loss returned is the global one. The other ranks' images are used for their count only (the
   * corruptions draw independently of pixel values), so a rank may pass them blank.
   * @throws TypeError when the batch is not [B, C, H, W] with B the options' batch; RangeError when
   * `parallel`'s world size does not divide the batch into whole micro-batches.
   */
  trainStep(batch: FloatTensor): StepResult {
    const { batch: size, microBatch } = this.options;
    if (batch.ndim !== 4 || batch.size(0) !== size) {
      throw new TypeError(`trainStep: batch must be [${size}, C, H, W], got [${batch.shape.join(", ")}]`);
    }
    const parallel = this.parallel;
    const ranks = parallel?.worldSize ?? 1;
    if (size % (ranks * microBatch) !== 0) {
      throw new RangeError(
        `trainStep: the batch ${size} does not split into ${ranks} processes × micro-batches of ${microBatch}`,
      );
    }
    const own = size / microBatch / ranks, first = (parallel?.rank ?? 0) * own;
    const lossOf = LOSSES[this.options.loss];
    let total = 0;
    tidy(() => {
      this.optimizer.zeroGrad();
      batch.split(microBatch, 0).forEach((micro, i) => {
        tidy(() => {
          const t = this.corruption.timesteps(micro.size(0), this.rng.timesteps);
          const { input, target } = this.corruption.apply(micro, t, this.rng);
          if (i < first || i >= first + own) return; // another rank's: drawn only, to keep the streams
          const { output } = this.model.forward(input, t);
          const loss = lossOf(output!, target).mul(micro.size(0) / size);
          loss.backward();
          total += loss.item();
        });
      });
      if (parallel) {
        parallel.syncGradients(this.model.parameters());
        total = parallel.sumLoss(total);
      }
      this.optimizer.step();
      this.ema.update();
    });
    this.step++;
    return { step: this.step, loss: total };
  }
}
