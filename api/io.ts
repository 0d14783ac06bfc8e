/**
 * Checkpoints and weights: safetensors files (read and written), PyTorch `.pt` files (read through a
 * restricted unpickler that never runs code), loading weights into a model or building a model on
 * them, and the resource limits every reader of untrusted files enforces.
 *
 * ```ts
 * import { loadModel } from "./io.ts";
 * import { UNet } from "./unet.ts";
 *
 * const { model } = loadModel("model.safetensors", (vb) => new UNet({ imageSize: 256 }, vb));
 * ```
 * @module
 */
export { CheckpointError, LoadedTensors, type SkippedEntry } from "../src/io/common.ts";
export { loadSafetensors, saveSafetensors } from "../src/io/safetensors.ts";
export { loadPt } from "../src/io/pt.ts";
export { loadCheckpoint, loadModel, loadModelWeights } from "../src/io/weights.ts";
export { DEFAULT_LIMITS, LimitError, type Limits, MAX_DIMS, resolveLimits } from "../src/io/limits.ts";
