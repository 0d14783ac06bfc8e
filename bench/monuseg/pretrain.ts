// Pre-training for the experiment: MDM and DDPM on the same unlabelled crops with the same budget,
// through the library's Pretrainer and crop loader; the weights are saved so that a later run (or
// segment.ts) can reuse them.
import type { Device } from "../../src/device.ts";
import { type NamedImage, RandomCropLoader } from "../../src/data/folder.ts";
import { saveSafetensors } from "../../src/io/safetensors.ts";
import { loadModel } from "../../src/io/weights.ts";
import { PRETRAIN_DEFAULTS, Pretrainer, type PretrainOptions } from "../../src/mdm/pretrain.ts";
import { UNet } from "../../src/models/unet/unet.ts";
import { Progress } from "../../src/report/progress.ts";
import { tidy } from "../../src/scope.ts";
import type { Recipe } from "./recipes.ts";

/** What a pre-training did. */
export interface PretrainSummary {
  method: "mdm" | "ddpm";
  steps: number;
  batch: number;
  crop: number;
  seconds: number;
  imagesPerSecond: number;
  /** Mean loss over the first and the last tenth of the steps. */
  lossFirstTenth: number;
  lossLastTenth: number;
  /** Loss per step, for the curve. */
  losses: number[];
  /** Where the weights were saved. */
  weights: string;
  /** True when the weights were read from an earlier run instead of trained. */
  reused: boolean;
}

/** The Pretrainer options of a method under a recipe. */
export function pretrainOptions(
  recipe: Recipe,
  method: "mdm" | "ddpm",
  device: Device,
  steps: number,
): PretrainOptions {
  return {
    ...PRETRAIN_DEFAULTS,
    method,
    loss: method === "mdm" ? "ssim" : "mse",
    unet: recipe.unet,
    lr: recipe.pretrain.lr,
    // The paper used MoNuSeg's raw (non-EMA) weights; the EMA is kept only because the trainer has one.
    emaRate: 0.999,
    batch: recipe.pretrain.batch,
    microBatch: recipe.pretrain.microBatch,
    seed: 0,
    device,
    steps,
  };
}

/**
 * Pre-trains `method` for `steps` steps (or until `timeLimitSeconds`), on random flipped crops of
 * `images`, and saves the raw weights to `weightsPath`.
 */
export function pretrain(
  images: readonly NamedImage[],
  options: PretrainOptions,
  weightsPath: string,
  timeLimitSeconds?: number,
): { model: UNet; summary: PretrainSummary } {
  const trainer = new Pretrainer(options);
  const loader = new RandomCropLoader(images, { cropSize: options.unet.imageSize, seed: 0, device: options.device });
  const progress = new Progress({ total: options.steps, label: `${options.method} pre-training`, every: 25 });
  const losses: number[] = [];
  const t0 = performance.now();
  while (trainer.step < options.steps) {
    const { step, loss } = tidy(() => trainer.trainStep(loader.nextBatch(options.batch)));
    if (!Number.isFinite(loss)) throw new Error(`${options.method} pre-training: the loss is ${loss} at step ${step}`);
    losses.push(loss);
    const seconds = (performance.now() - t0) / 1000;
    progress.update(step, { loss, "img/s": (step * options.batch) / seconds });
    if (timeLimitSeconds !== undefined && seconds > timeLimitSeconds) {
      console.error(`${options.method} pre-training: time limit of ${timeLimitSeconds} s reached at step ${step}`);
      break;
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  saveSafetensors(weightsPath, trainer.model.stateDict(), { format: "pt", method: options.method });
  trainer.optimizer[Symbol.dispose]();
  const tenth = Math.max(1, Math.ceil(losses.length / 10));
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
  return {
    model: trainer.model.eval(),
    summary: {
      method: options.method,
      steps: trainer.step,
      batch: options.batch,
      crop: options.unet.imageSize,
      seconds,
      imagesPerSecond: (trainer.step * options.batch) / Math.max(seconds, 1e-9),
      lossFirstTenth: mean(losses.slice(0, tenth)),
      lossLastTenth: mean(losses.slice(-tenth)),
      losses,
      weights: weightsPath,
      reused: false,
    },
  };
}

/** A model with the weights an earlier run saved (for --pretrained). */
export function loadPretrained(
  options: PretrainOptions,
  weightsPath: string,
  previous: PretrainSummary,
): { model: UNet; summary: PretrainSummary } {
  const { model } = loadModel(weightsPath, (vb) => new UNet(options.unet, vb), { device: options.device });
  return { model: model.eval(), summary: { ...previous, weights: weightsPath, reused: true } };
}

/**
 * The random-weights control: the UNet exactly as pre-training starts it (guided-diffusion's
 * initialisation with the same seed, its zero-initialised output convolutions included).
 */
export function initialModel(options: PretrainOptions): UNet {
  const trainer = new Pretrainer(options);
  trainer.optimizer[Symbol.dispose]();
  return trainer.model.eval();
}
