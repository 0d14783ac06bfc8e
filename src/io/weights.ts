// Model weights from either format (safetensors, torch.save), and loading them into a model:
// building it on the loaded tensors (nothing initialised twice, no second copy), or copying them
// into a built one. Whole training states (optimizer, random streams, data order) are
// src/mdm/train_state.ts.
import { defaultDevice, type Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import type { VarBuilder } from "../nn/builder.ts";
import { type LoadReport, type Module, rootBuilder, StateDictError } from "../nn/module.ts";
import { CheckpointError, type LoadedTensors } from "./common.ts";
import { isZip, loadPt } from "./pt.ts";
import { loadSafetensors } from "./safetensors.ts";
import { ReadableFile } from "./fs.ts";

function head(path: string): Uint8Array {
  try {
    using f = new ReadableFile(path);
    const buf = new Uint8Array(4);
    return buf.subarray(0, f.readAt(buf, 0));
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

/**
 * Builds a model on a checkpoint's weights (either format): `build` gets a root builder that hands
 * each parameter and buffer the file holds to the model as it is, read straight onto `device`, and
 * initialises only the keys the file lacks or holds in another shape. Unlike `loadModelWeights` on a
 * built model, nothing is randomly initialised first and no second copy of the weights is made.
 * Strict (the default) throws a StateDictError naming missing, unexpected and mis-shaped keys;
 * `strict: false` returns them in the report.
 * @throws CheckpointError for an unreadable file; TypeError naming the key for a parameter that
 * is not floating point.
 */
export function loadModel<M extends Module>(
  path: string,
  build: (vb: VarBuilder) => M,
  opts: { device?: Device; dtype?: FloatDType; strict?: boolean } = {},
): { model: M; report: LoadReport } {
  const device = opts.device ?? defaultDevice();
  using weights = loadCheckpoint(path, { device }); // left holding only what the model did not take
  const vb = rootBuilder({ device, dtype: opts.dtype, weights });
  const dropModel = () => {
    for (const t of [...vb.store.params.values(), ...vb.store.buffers.values()]) t.dispose();
  };
  let model: M;
  try {
    model = build(vb);
  } catch (e) {
    dropModel();
    throw e;
  }
  const report = vb.store.loadReport();
  if ((opts.strict ?? true) && (report.missing.length || report.unexpected.length || report.mismatched.length)) {
    dropModel();
    throw new StateDictError(report);
  }
  return { model, report };
}
