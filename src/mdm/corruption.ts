// What a pre-training method does to clean images before the model sees them, and what the model
// must give back. Each method is one implementation: MDM's patch masking (mask.ts), DDPM's Gaussian
// noise (ddpm.ts); another (e.g. MAE-style masking at a fixed ratio, without timesteps) is one more
// file implementing this interface.
import { full, randint } from "../create.ts";
import type { Device } from "../device.ts";
import type { Generator } from "../random.ts";
import type { FloatTensor as Images, Tensor } from "../tensor.ts";

/** Diffusion timesteps [B], one per image of a batch, each in [0, T). */
export type Timesteps = Tensor<"int64", Device>;

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
  /** What the model sees: the corrupted images [B, C, H, W]. */
  input: Images;
  /** What the model must predict [B, C, H, W]: the clean images, or the noise. */
  target: Images;
}

/**
 * A pre-training method's corruption: which timesteps to train at, and what it does to clean images
 * at them. MDM's `PatchMasking` and DDPM's `GaussianNoise` implement it.
 */
export interface Corruption {
  /** Timesteps [n] for a batch of n images: the model's time input and the corruption's strength. */
  timesteps(n: number, generator: Generator): Timesteps;
  /** Corrupts clean images `x0` [B, C, H, W] in [-1, 1] at timesteps `t` [B]. */
  apply(x0: Images, t: Timesteps, streams: CorruptionStreams): Corrupted;
}

/**
 * Timesteps drawn uniformly from [0, steps), or all `fixedT` (the paper's "no diffusion"
 * ablation) without drawing.
 * @throws TorchError when `steps` is not positive.
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
