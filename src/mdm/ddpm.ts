// The DDPM baseline (the paper's Section 3.1, as guided-diffusion implements it): beta schedules,
// closed-form q_sample, and the training loss.
import { randn, tensor } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { mseLoss } from "../functional.ts";
import type { Generator } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { type Corrupted, type Corruption, type CorruptionStreams, uniformTimesteps } from "./corruption.ts";

/** guided-diffusion's named noise schedules: "linear" (Ho et al.) or "cosine" (Nichol and Dhariwal). */
export type BetaSchedule = "linear" | "cosine";

/**
 * guided-diffusion's get_named_beta_schedule, in float64.
 * @throws RangeError when `steps` is not a positive integer; TypeError for an unknown schedule.
 */
export function betaSchedule(kind: BetaSchedule, steps = 1000): Float64Array {
  if (!Number.isInteger(steps) || steps <= 0) {
    throw new RangeError(`betaSchedule: steps must be a positive integer, got ${steps}`);
  }
  const betas = new Float64Array(steps);
  if (kind === "linear") {
    // Scaled so that other step counts keep the 1000-step schedule's endpoints' meaning.
    const scale = 1000 / steps, start = scale * 1e-4, end = scale * 0.02;
    for (let i = 0; i < steps; i++) betas[i] = steps === 1 ? start : start + (end - start) * i / (steps - 1);
  } else if (kind === "cosine") {
    const alphaBar = (t: number) => Math.cos((t + 0.008) / 1.008 * Math.PI / 2) ** 2;
    for (let i = 0; i < steps; i++) betas[i] = Math.min(1 - alphaBar((i + 1) / steps) / alphaBar(i / steps), 0.999);
  } else {
    throw new TypeError(`betaSchedule: unknown schedule ${JSON.stringify(kind)}; use "linear" or "cosine"`);
  }
  return betas;
}

/** Noise schedule tables, computed once in float64 like guided-diffusion's GaussianDiffusion. */
export class Diffusion {
  /** β_t for t = 0 .. steps-1. */
  readonly betas: Float64Array;
  /** ᾱ_t = Π_{s≤t} (1 − β_s) for t = 0 .. steps-1. */
  readonly alphasCumprod: Float64Array;
  readonly #sqrtAcp: Float32Array;
  readonly #sqrtOneMinusAcp: Float32Array;

  /**
   * The tables of `schedule` over `steps` diffusion steps.
   * @throws RangeError when `steps` is not a positive integer; TypeError for an unknown schedule.
   */
  constructor(readonly schedule: BetaSchedule = "linear", readonly steps = 1000) {
    this.betas = betaSchedule(schedule, steps);
    this.alphasCumprod = new Float64Array(steps);
    let acc = 1;
    this.betas.forEach((b, i) => this.alphasCumprod[i] = acc *= 1 - b);
    this.#sqrtAcp = Float32Array.from(this.alphasCumprod, Math.sqrt);
    this.#sqrtOneMinusAcp = Float32Array.from(this.alphasCumprod, (a) => Math.sqrt(1 - a));
  }

  /**
   * x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, per sample.
   * @throws TypeError naming the shapes when x0 and noise differ.
   */
  // x0, noise [B, ...], t [B] -> [B, ...]
  qSample<V extends Device>(
    x0: Tensor<FloatDType, V>,
    t: Tensor<"int64", V>,
    noise: Tensor<FloatDType, V>,
  ): Tensor<FloatDType, V> {
    if (x0.shape.join() !== noise.shape.join()) {
      throw new TypeError(`qSample: x0 [${x0.shape.join(", ")}] and noise [${noise.shape.join(", ")}] differ in shape`);
    }
    return tidy(() => {
      const expand = (table: Float32Array) => {
        const col = tensor(table, { device: x0.device }).indexSelect(0, t);
        return col.reshape([t.size(0), ...x0.shape.slice(1).map(() => 1)]).to(x0.dtype);
      };
      return x0.mul(expand(this.#sqrtAcp)).add(noise.mul(expand(this.#sqrtOneMinusAcp)));
    });
  }

  /**
   * The DDPM training loss for a model output: MSE against the noise (guided-diffusion's epsilon
   * objective) or against x0.
   */
  loss<V extends Device>(
    output: Tensor<FloatDType, V>,
    x0: Tensor<FloatDType, V>,
    noise: Tensor<FloatDType, V>,
    target: "noise" | "x0" = "noise",
  ): Tensor<FloatDType, V> {
    return mseLoss(output, target === "noise" ? noise : x0);
  }
}

/**
 * DDPM's corruption: q_sample with fresh Gaussian noise; the target is that noise (guided-diffusion's
 * epsilon objective) or the clean image.
 */
export class GaussianNoise implements Corruption {
  /** The schedule tables q_sample uses. */
  readonly diffusion: Diffusion;

  /** Gaussian noising with the given schedule, steps T, target and timestep choice, on `opts.device`. */
  constructor(
    readonly opts: {
      schedule: BetaSchedule;
      /** Diffusion steps T. */
      steps: number;
      target: "noise" | "x0";
      /** Train at this timestep only, or null for uniform timesteps. */
      fixedT: number | null;
      device: Device;
    },
  ) {
    this.diffusion = new Diffusion(opts.schedule, opts.steps);
  }

  /** Timesteps [n] drawn uniformly from [0, T) with `generator`, or all `fixedT`. */
  timesteps(n: number, generator: Generator): Tensor<"int64", Device> {
    return uniformTimesteps(n, this.opts.steps, this.opts.fixedT, this.opts.device, generator);
  }

  /** Noises x0 [B, C, H, W] at timesteps t [B] with noise from `streams.noise`; the target is that noise or x0. */
  apply(x0: Tensor<FloatDType, Device>, t: Tensor<"int64", Device>, streams: CorruptionStreams): Corrupted {
    const noise = randn(x0.shape, { device: x0.device, generator: streams.noise });
    return { input: this.diffusion.qSample(x0, t, noise), target: this.opts.target === "noise" ? noise : x0 };
  }
}
