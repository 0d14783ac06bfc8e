// One entry point for weights from either format, and loading them into a model.
import type { Device } from "../device.ts";
import type { LoadReport, Module } from "../nn/module.ts";
import { CheckpointError, type LoadedTensors } from "./common.ts";
import { isZip, loadPt } from "./pt.ts";
import { loadSafetensors } from "./safetensors.ts";

function head(path: string): Uint8Array {
  try {
    using f = Deno.openSync(path, { read: true });
    const buf = new Uint8Array(4);
    const n = f.readSync(buf) ?? 0;
    return buf.subarray(0, n);
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${(e as Error).message}`, { cause: e });
  }
}

/**
 * Loads a checkpoint, telling the format by content rather than by name: torch.save files are zip
 * archives ("PK"), anything else is read as safetensors (and rejected if it is not valid).
 */
export function loadCheckpoint(path: string, opts: { device?: Device } = {}): LoadedTensors {
  return isZip(head(path)) ? loadPt(path, opts) : loadSafetensors(path, opts);
}

/**
 * Loads a checkpoint (either format) into `model` with `loadStateDict` and frees the loaded copies.
 * Strict (the default) rejects missing, unexpected and mis-shaped keys with a StateDictError;
 * `strict: false` loads the keys that match and reports the rest, as when a checkpoint trained
 * with learned variances (6 output channels) seeds a model without (3).
 */
export function loadModelWeights(model: Module, path: string, opts: { strict?: boolean } = {}): LoadReport {
  // Read onto the CPU: loadStateDict copies into the model's own tensors on whatever device they
  // are, so no second device copy of the checkpoint is needed.
  using weights = loadCheckpoint(path, { device: "cpu" });
  return model.loadStateDict(weights, { strict: opts.strict ?? true });
}
