// What a pre-training method does to clean images before the model sees them, and what the model
// must give back. Each method is one implementation: MDM's patch masking (mask.ts), DDPM's Gaussian
// noise (ddpm.ts); another (e.g. MAE-style masking at a fixed ratio, without timesteps) is one more
// file implementing this interface.
import { full, randint } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import type { Generator } from "../random.ts";
import type { Tensor } from "../tensor.ts";

type Images = Tensor<FloatDType, Device>;
type Timesteps = Tensor<"int64", Device>;

/**
 * The generators a corruption draws from, one per kind of draw, so that e.g. changing the mask code
 * does not shift the noise (a checkpoint saves each).
 */
export interface CorruptionStreams {
  /** Patch orders. */
  mask: Generator;
  /** Gaussian noise. */
  noise: Generator;
}

/** A corrupted batch: the model's input and its regression target, both [B, C, H, W]. */
export interface Corrupted {
  input: Images;
  target: Images;
}

export interface Corruption {
  /** Timesteps [n] for a batch of n images: the model's time input and the corruption's strength. */
  timesteps(n: number, generator: Generator): Timesteps;
  /** Corrupts clean images `x0` [B, C, H, W] in [-1, 1] at timesteps `t` [B]. */
  apply(x0: Images, t: Timesteps, streams: CorruptionStreams): Corrupted;
}

/**
 * Timesteps drawn uniformly from [0, steps), or all `fixedT` (the paper's "no diffusion"
 * ablation) without drawing.
 */
export function uniformTimesteps(
  n: number,
  steps: number,
  fixedT: number | null,
  device: Device,
  generator: Generator,
): Timesteps {
  if (fixedT !== null) return full([n], fixedT, { dtype: "int64", device });
  return randint(0, steps, [n], { device, generator });
}
