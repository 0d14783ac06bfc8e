// The MDM corruption: hide a timestep-controlled fraction of non-overlapping patches (the paper's
// Section 4.1; the ratio r = t/T is the authors' release's).
import { rand, tensor } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import type { Generator } from "../random.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { type Corrupted, type Corruption, type CorruptionStreams, uniformTimesteps } from "./corruption.ts";

/** Options of `maskPatches`. */
export interface MaskOptions {
  /** Patch side in pixels (8 in the paper). */
  patchSize?: number;
  /** Number of diffusion steps T (1000). */
  steps?: number;
  /**
   * How t sets the mask ratio r: "release" is t / T, what the authors' code does (the default);
   * "paper" is t / (T + 1), the formula in the paper's text.
   */
  ratio?: "release" | "paper";
  /** Draws the patch order; the global generator when omitted. */
  generator?: Generator;
}

/** The result of `maskPatches`. */
export interface Masked<V extends Device> {
  /** The images with the masked patches set to 0 (mid-grey in [-1, 1]). */
  images: Tensor<FloatDType, V>;
  /** [B, L] bool, true where a patch is masked, patches in row-major order. */
  mask: Tensor<"bool", V>;
}

/**
 * Masks L − floor(L·(1 − r)) random patches of each image, r set by its timestep; a fresh random
 * patch order per sample, all samples at once.
 * Images x [B, C, H, W] and timesteps t [B] (a tensor or numbers in [0, T]) give the masked images
 * [B, C, H, W] and the mask [B, L], L = (H/p)·(W/p).
 * @throws TypeError when x is not 4-D or t does not hold one timestep per image; RangeError when the patch size does not tile the images.
 */
// x [B, C, H, W], t [B] -> images [B, C, H, W], mask [B, L] with L = (H/p)·(W/p)
export function maskPatches<V extends Device>(
  x: Tensor<FloatDType, V>,
  t: Tensor<"int64" | "int32", V> | readonly number[],
  opts: MaskOptions = {},
): Masked<V> {
  const p = opts.patchSize ?? 8, T = opts.steps ?? 1000;
  if (x.ndim !== 4) throw new TypeError(`maskPatches: x must be [B, C, H, W], got [${x.shape.join(", ")}]`);
  const [b, c, h, w] = x.shape;
  if (!Number.isInteger(p) || p <= 0 || h % p !== 0 || w % p !== 0) {
    throw new RangeError(`maskPatches: patch size ${p} does not tile images of ${h}×${w}`);
  }
  const gh = h / p, gw = w / p, L = gh * gw;
  return tidy(() => {
    const steps = Array.isArray(t)
      ? tensor(BigInt64Array.from(t as number[], BigInt), { device: x.device })
      : t as Tensor<"int64" | "int32", V>;
    if (steps.ndim !== 1 || steps.size(0) !== b) {
      throw new TypeError(
        `maskPatches: t must hold one timestep per image (${b}), got shape [${steps.shape.join(", ")}]`,
      );
    }
    // In float64, as the authors' Python does: floor(L·(1 − t/T)) lands on exact integers often.
    const denom = opts.ratio === "paper" ? T + 1 : T;
    const keep = steps.to("float64").div(denom).rsub(1).mul(L).floor(); // [B]
    const order = rand([b, L], { device: x.device, generator: opts.generator }).argsort(1); // patch ids, shuffled
    const rank = order.argsort(1); // each patch's position in the shuffled order
    const mask = rank.ge(keep.unsqueeze(1)); // [B, L]: masked unless among the first `keep`
    // [B, L] -> [B, 1, H, W]: each patch's flag repeated over its p×p pixels
    const pixels = mask.reshape(b, 1, gh, 1, gw, 1).expand(b, 1, gh, p, gw, p).reshape(b, 1, h, w);
    const images = x.maskedFill(pixels.expand(b, c, h, w), 0);
    return { images, mask };
  });
}

/** MDM's corruption: patches masked at a timestep-set ratio; the target is the clean image. */
export class PatchMasking implements Corruption {
  /** Patch masking with the given patch size, steps T, ratio rule and timestep choice, on `opts.device`. */
  constructor(
    readonly opts: {
      patchSize: number;
      /** Diffusion steps T. */
      steps: number;
      ratio: "release" | "paper";
      /** Train at this timestep only, or null for uniform timesteps. */
      fixedT: number | null;
      device: Device;
    },
  ) {}

  /** Timesteps [n] drawn uniformly from [0, T) with `generator`, or all `fixedT`. */
  timesteps(n: number, generator: Generator): Tensor<"int64", Device> {
    return uniformTimesteps(n, this.opts.steps, this.opts.fixedT, this.opts.device, generator);
  }

  /** Masks x0 [B, C, H, W] at timesteps t [B] with patch orders from `streams.mask`; the target is x0. */
  apply(x0: Tensor<FloatDType, Device>, t: Tensor<"int64", Device>, streams: CorruptionStreams): Corrupted {
    const { images } = maskPatches(x0, t, {
      patchSize: this.opts.patchSize,
      steps: this.opts.steps,
      ratio: this.opts.ratio,
      generator: streams.mask,
    });
    return { input: images, target: x0 };
  }
}
