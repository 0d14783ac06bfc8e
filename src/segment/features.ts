// Pixel features from a frozen pre-trained UNet (the paper's Section 4.2): corrupt the input as in
// pre-training, run the UNet, take chosen decoder blocks, upsample them bilinearly to the input size
// and concatenate along channels.
import { noGrad } from "../autograd.ts";
import { full, randn } from "../create.ts";
import { cat, interpolate } from "../functional.ts";
import type { Generator } from "../random.ts";
import { tidy } from "../scope.ts";
import type { FloatTensor } from "../tensor.ts";
import type { UNet } from "../models/unet/unet.ts";
import { Diffusion } from "../mdm/ddpm.ts";
import { maskPatches } from "../mdm/mask.ts";

/** How `decoderFeatures` corrupts the images and which decoder outputs it keeps. */
export interface FeatureOptions {
  /**
   * The pre-training corruption applied before the UNet: "mdm" masks patches (`maskPatches`) at
   * a ratio set by t, "ddpm" adds Gaussian noise at timestep t (q_sample).
   */
  method: "mdm" | "ddpm";
  /** Decoder blocks (indices into output_blocks), e.g. [8, 9, 10, 11, 12] for the medical model. */
  blocks: readonly number[];
  /** MDM: [50]; DDPM: [50, 150, 250]. */
  timesteps: readonly number[];
  /** Divide each image's whole C×H×W feature tensor by its L2 norm (the medical protocol). */
  l2Normalize?: boolean;
  /** MDM: draws the patch masks (a fresh mask per call). */
  generator?: Generator;
  /** DDPM: the one noise image shared by every input, [1, C, H, W] (ddpm-segmentation seeds it once). */
  noise?: FloatTensor;
  /** MDM: side of the masked patches in pixels (default 8). */
  patchSize?: number;
  /** Number of diffusion steps T the timesteps refer to (default 1000): MDM's mask ratio t/T, DDPM's schedule length. */
  diffusionSteps?: number;
  /** MDM: how t sets the mask ratio, "release" t / T (default) or "paper" t / (T + 1); see `maskPatches`. */
  maskRatio?: "release" | "paper";
  /** DDPM: the noise schedule (default "linear"). */
  schedule?: "linear" | "cosine";
}

/** Number of feature channels `decoderFeatures` produces for a model and options. */
export function featureChannels(model: UNet, opts: Pick<FeatureOptions, "blocks" | "timesteps">): number {
  return opts.timesteps.length * opts.blocks.reduce((n, b) => n + model.decoderChannels(b), 0);
}

/**
 * Features of a batch of images, computed without gradients: images [B, 3, H, W] in [-1, 1] →
 * features [B, D, H, W] float32 with D = `featureChannels(model, opts)`, each decoder block's output
 * upsampled bilinearly to H×W. The order of the channels is ddpm-segmentation's: timestep-major,
 * then the blocks in the order given.
 * @throws RangeError for a block index that is not one of the model's decoder blocks.
 */
export function decoderFeatures(model: UNet, images: FloatTensor, opts: FeatureOptions): FloatTensor {
  const [b, , h, w] = images.shape;
  const diffusion = opts.method === "ddpm"
    ? new Diffusion(opts.schedule ?? "linear", opts.diffusionSteps ?? 1000)
    : null;
  return noGrad(() =>
    tidy(() => {
      const parts: FloatTensor[] = [];
      // DDPM: one noise image for every timestep (and image), as ddpm-segmentation's q_sample calls share it.
      const noise = diffusion
        ? opts.noise ?? randn([1, ...images.shape.slice(1)], { device: images.device, generator: opts.generator })
        : null;
      for (const t of opts.timesteps) {
        const steps = full([b], t, { dtype: "int64", device: images.device });
        let input: FloatTensor;
        if (noise) {
          input = diffusion!.qSample(images, steps, noise.expand(b, -1, -1, -1));
        } else {
          input = maskPatches(images, steps, {
            patchSize: opts.patchSize,
            steps: opts.diffusionSteps,
            ratio: opts.maskRatio,
            generator: opts.generator,
          }).images;
        }
        const { features } = model.forward(input, steps, { capture: opts.blocks, stopAfterCapture: true });
        for (const f of features) {
          const wide = f.float();
          parts.push(
            wide.size(2) === h && wide.size(3) === w
              ? wide
              : interpolate(wide, { size: [h, w], mode: "bilinear", alignCorners: false }),
          );
        }
      }
      const all = parts.length === 1 ? parts[0] : cat(parts, 1);
      if (!opts.l2Normalize) return all;
      // One norm over each image's whole C×H×W tensor, as the medical protocol divides by.
      const norm = all.square().sum([1, 2, 3], true).sqrt().clamp(1e-12);
      return all.div(norm);
    })
  );
}

/**
 * Where a pixel head's inputs come from: crops [B, 3, S, S] in [-1, 1] → per-pixel features
 * [B, D, S, S] float32 with D = `channels`. A source holds its own options; the generator draws what
 * the extraction needs at random (MDM's patch masks, DDPM noise when none is fixed).
 */
export interface PixelFeatures {
  /** Feature channels D. */
  readonly channels: number;
  /** What the features are, for reports (e.g. "decoder blocks 3,4,5 at t=50"). */
  readonly description: string;
  /** Features [B, D, S, S] float32 of crops [B, 3, S, S] in [-1, 1]; `generator` draws the random parts. */
  extract(images: FloatTensor, generator?: Generator): FloatTensor;
}

/** A frozen UNet's decoder features (`decoderFeatures`) as a `PixelFeatures` source. */
export function decoderPixelFeatures(model: UNet, opts: Omit<FeatureOptions, "generator">): PixelFeatures {
  return {
    channels: featureChannels(model, opts),
    description: `decoder blocks ${opts.blocks.join(",")} at t=${opts.timesteps.join(",")}${
      opts.l2Normalize ? ", L2-normalised per crop" : ""
    }`,
    extract: (images, generator) => decoderFeatures(model, images, { ...opts, generator }),
  };
}

/**
 * The pixels' own RGB values in [-1, 1] (3 channels): a head on them is a colour classifier, the
 * floor any learned features must clear on H&E, where nuclei are the hematoxylin-dark pixels.
 */
export function rgbPixelFeatures(): PixelFeatures {
  return { channels: 3, description: "RGB values of the pixel", extract: (images) => images.float().clone() };
}
