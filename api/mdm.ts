/**
 * Masked diffusion pre-training: MDM's timestep-controlled patch masking, the SSIM loss, the DDPM
 * baseline's noise schedules, the weights' moving average, the pre-training loop (`Pretrainer`) and
 * its checkpoints (whole training states that resume exactly).
 *
 * ```ts
 * import { maskPatches, ssimLoss } from "./mdm.ts";
 * import { rand, tidy } from "./tensor.ts";
 *
 * const loss = tidy(() => {
 *   const x = rand([2, 3, 32, 32]).mul(2).sub(1); // images in [-1, 1]
 *   const { images } = maskPatches(x, [500, 900], { patchSize: 8 }); // half and 90% of the patches hidden
 *   return ssimLoss(images, x).item();
 * });
 * ```
 * @module
 */
export { type Masked, type MaskOptions, maskPatches, PatchMasking } from "../src/mdm/mask.ts";
export { gaussian, ssim, ssimLoss, type SsimOptions } from "../src/mdm/ssim.ts";
export { type BetaSchedule, betaSchedule, Diffusion, GaussianNoise } from "../src/mdm/ddpm.ts";
export {
  type Corrupted,
  type Corruption,
  type CorruptionStreams,
  type Timesteps,
  uniformTimesteps,
} from "../src/mdm/corruption.ts";
export { Ema } from "../src/mdm/ema.ts";
export {
  corruptionOf,
  type DataParallel,
  PRETRAIN_DEFAULTS,
  Pretrainer,
  type PretrainOptions,
  type StepResult,
} from "../src/mdm/pretrain.ts";
export { checkPretrainOptions, checkUNetOptions, PRETRAIN_BOUNDS } from "../src/mdm/validate.ts";
export {
  CHECKPOINT_FILES,
  CHECKPOINT_VERSION,
  checkTrainState,
  cleanTemporaries,
  listCheckpoints,
  newestIntactCheckpoint,
  readTrainState,
  restoreTrainer,
  saveCheckpoint,
  setAsideCheckpoint,
  type SkippedCheckpoint,
  type TrainState,
  verifyCheckpoint,
} from "../src/mdm/train_state.ts";
