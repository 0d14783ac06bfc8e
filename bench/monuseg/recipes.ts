// The experiment's scales: one recipe each, every number the run uses, and why.
import type { Device } from "../../src/device.ts";
import { MEDICAL_256, type UNetConfig } from "../../src/models/unet/config.ts";
import type { BaselineEarlyStopping } from "../../src/segment/baseline.ts";

export interface Recipe {
  scale: string;
  /** Why these settings, in a sentence or two for the report. */
  rationale: string;
  device: Device;
  /** Images are shrunk by this factor for every network (2: 40× → 20× magnification); ground truth stays full size. */
  downscale: number;
  /** Crop side for pre-training, heads, supervised training and sliding windows, pixels (after downscaling). */
  crop: number;
  unet: Partial<UNetConfig> & { imageSize: number };
  pretrain: {
    /** Optimizer steps of each method (MDM and DDPM get the same). */
    steps: number;
    batch: number;
    microBatch: number;
    lr: number;
    /** Stop MDM early after this long; DDPM then gets MDM's step count (a guard for time-boxed calls). */
    timeLimitSeconds?: number;
  };
  features: {
    /** Decoder blocks read for MDM and the random-weights control. */
    blocks: number[];
    /** Decoder blocks read for DDPM (default: `blocks`); each method gets the set it scored best with on validation. */
    ddpmBlocks?: number[];
    mdmTimesteps: number[];
    ddpmTimesteps: number[];
  };
  heads: {
    count: number;
    /** Train a feature type's heads together on shared crops (one feature pass a step), or one by one as the paper. */
    together: boolean;
    batch: number;
    lr: number;
    minEpochs: number;
    maxEpochs: number;
    patience: number;
    pixelFraction: number;
    timeLimitSeconds?: number;
  };
  supervised: {
    seeds: number;
    batch: number;
    lr: number;
    maxSteps: number;
    loss: "ce" | "dice+ce";
    augment: boolean;
    earlyStopping: BaselineEarlyStopping;
    timeLimitSeconds?: number;
  };
  labelSets: number[];
  overlap: number;
  /** Windows per UNet pass at test time. */
  windowBatch: number;
}

/**
 * The CPU model: 4 levels (64 → 8 px at a 64² crop), 32 base channels, one ResBlock per level,
 * attention at 16² and in the middle; 3.7M parameters, 8 decoder blocks (2-3 at 16², 4-5 at
 * 32², 6-7 at 64² after their upsampling).
 */
const CPU_UNET = {
  imageSize: 64,
  modelChannels: 32,
  channelMult: [1, 2, 2, 4],
  numResBlocks: 1,
  attentionResolutions: [16],
  numHeadChannels: 32,
  resblockUpdown: true,
};

const DDPM_T = [50, 150, 250];

/**
 * Feature settings chosen on the validation split (`--validate`: heads on 3 of the first 24 training
 * images, scored on the last 6), the 3-label Dice of each setting run (docs/monuseg/README.md):
 * MDM at t = 0 (no mask) 71.6 against 65.9 at the paper's t = 50 (a 5% mask of 8 px patches, about
 * 3 of a 64² crop's 64, blanks what the heads must label); DDPM at the reference t = 50, 150, 250
 * with blocks 2-7 71.4 against 70.5 with blocks 3-5 (68.4 at t = 0); MDM with blocks 2-7 71.5.
 */
const CPU_FEATURES = { blocks: [3, 4, 5], ddpmBlocks: [2, 3, 4, 5, 6, 7], mdmTimesteps: [0], ddpmTimesteps: DDPM_T };

const PAPER_HEADS = { batch: 16, lr: 1e-3, minEpochs: 30, patience: 20, together: true };

export const RECIPES: Record<string, Recipe> = {
  quick: {
    scale: "quick",
    rationale: "A first look in under 15 minutes on two CPU cores: the cpu recipe's model, images and crops " +
      "with an eighth of its pre-training, 2 heads of at most 15 epochs, one supervised seed of at most 100 steps " +
      "and sliding windows without overlap; too short to rank the methods.",
    device: "cpu",
    downscale: 2,
    crop: 64,
    unet: CPU_UNET,
    pretrain: { steps: 100, batch: 8, microBatch: 8, lr: 5e-4 },
    features: CPU_FEATURES,
    heads: { ...PAPER_HEADS, count: 2, minEpochs: 10, maxEpochs: 15, patience: 5, pixelFraction: 1 },
    supervised: {
      seeds: 1,
      batch: 8,
      lr: 5e-4,
      maxSteps: 100,
      loss: "ce",
      augment: true,
      earlyStopping: { monitor: "train-loss", every: 25, patience: 2, minSteps: 50 },
    },
    labelSets: [3, 30],
    overlap: 0,
    windowBatch: 16,
  },
  cpu: {
    scale: "cpu",
    rationale: "Two CPU cores, within 90 minutes: the images shrunk 2× (20×, nuclei 10-15 px wide), 64² " +
      "crops (the tissue of a 128² crop at 40×, 10-30 nuclei), a 3.7M-parameter UNet (4 levels, 32 " +
      "channels), 800 steps of 8 crops for each method; heads as the paper's (16 crops a step, all " +
      "their pixels, at least 30 epochs, patience 20, at most 50), 3 heads; 3 supervised seeds trained to " +
      "convergence. Chosen on the validation split: MDM's features read from the unmasked image (t = 0), " +
      "DDPM's from decoder blocks 2-7 (each method's best there).",
    device: "cpu",
    downscale: 2,
    crop: 64,
    unet: CPU_UNET,
    pretrain: { steps: 800, batch: 8, microBatch: 8, lr: 5e-4 },
    features: CPU_FEATURES,
    heads: { ...PAPER_HEADS, count: 3, maxEpochs: 50, pixelFraction: 1 },
    supervised: {
      seeds: 3,
      batch: 8,
      lr: 5e-4,
      maxSteps: 600,
      loss: "ce",
      augment: true,
      earlyStopping: { monitor: "train-loss", every: 25, patience: 3, minSteps: 150 },
    },
    labelSets: [3, 30],
    overlap: 0.2,
    windowBatch: 16,
  },
  gpu: {
    scale: "gpu",
    rationale: "One call of at most 8 minutes on one H200: the paper's 40× images and 256² crops, a " +
      "128-channel version of the paper's UNet (about 140M parameters) with a bfloat16 torso, pre-training " +
      "time-boxed to 75 s a method (DDPM gets MDM's step count), 5 heads as the paper trains them (time-boxed " +
      "to 12 s a group), 3 supervised seeds (15 s each).",
    device: "cuda",
    downscale: 1,
    crop: 256,
    unet: { ...MEDICAL_256, modelChannels: 128, torsoDtype: "bfloat16" },
    pretrain: { steps: 5000, batch: 64, microBatch: 32, lr: 2e-4, timeLimitSeconds: 75 },
    features: { blocks: [8, 9, 10, 11, 12], mdmTimesteps: [50], ddpmTimesteps: DDPM_T },
    heads: { ...PAPER_HEADS, count: 5, maxEpochs: 100, pixelFraction: 1, timeLimitSeconds: 12 },
    supervised: {
      seeds: 3,
      batch: 16,
      lr: 2e-4,
      maxSteps: 2000,
      loss: "ce",
      augment: true,
      earlyStopping: { monitor: "train-loss", every: 50, patience: 4, minSteps: 200 },
      timeLimitSeconds: 15,
    },
    labelSets: [3, 30],
    overlap: 0.2,
    windowBatch: 16,
  },
  paper: {
    scale: "paper",
    rationale: "The paper's settings (Appendix A.2, REFERENCE.md): 256² crops at 40×, the 192-channel " +
      "medical UNet, batch 128, 5k steps, 10 heads trained one by one on all pixels. Hours on one GPU.",
    device: "cuda",
    downscale: 1,
    crop: 256,
    unet: { ...MEDICAL_256, torsoDtype: "bfloat16" },
    pretrain: { steps: 5000, batch: 128, microBatch: 64, lr: 1e-4 },
    features: { blocks: [8, 9, 10, 11, 12], mdmTimesteps: [50], ddpmTimesteps: DDPM_T },
    heads: { ...PAPER_HEADS, count: 10, maxEpochs: 200, pixelFraction: 1, together: false },
    supervised: {
      seeds: 3,
      batch: 16,
      lr: 1e-4,
      maxSteps: 20000,
      loss: "ce",
      augment: true,
      earlyStopping: { monitor: "train-loss", every: 200, patience: 5, minSteps: 2000 },
    },
    labelSets: [3, 30],
    overlap: 0.2,
    windowBatch: 16,
  },
};
