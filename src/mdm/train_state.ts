// Pre-training checkpoints, the whole training state: one folder per saved step (model, EMA,
// optimizer, random streams, data order), made complete under a temporary name and renamed into
// place, so that a process killed mid-save leaves the previous checkpoints readable. The newest few
// are kept. Loading model weights alone is src/io/weights.ts.
import { loadSafetensors, saveSafetensors } from "../io/safetensors.ts";
import { writeAll, writeFileAtomic } from "../io/atomic.ts";
import { getRngState, setRngState } from "../random.ts";
import { decodeBase64, encodeBase64 } from "../util/base64.ts";
import { StateDictError } from "../nn/module.ts";
import { Pretrainer, type PretrainOptions } from "./pretrain.ts";

export const CHECKPOINT_VERSION = 1;

/** The JSON part of a checkpoint. */
export interface TrainState {
  version: number;
  step: number;
  options: PretrainOptions;
  /** Base64 generator states: the trainer's three streams and the global one (dropout). */
  rng: { timesteps: string; mask: string; noise: string; global: string };
  /** The data loader's own state (opaque JSON). */
  data: unknown;
  /** Seconds of training so far, for throughput and ETA after a resume. */
  seconds: number;
}

const NAME = /^step-(\d{7,})$/;

function stepDir(root: string, step: number): string {
  return `${root}/step-${String(step).padStart(7, "0")}`;
}

function fsyncDir(path: string): void {
  try {
    const d = Deno.openSync(path, { read: true });
    try {
      d.syncSync();
    } finally {
      d.close();
    }
  } catch { /* some file systems refuse to open folders: the rename is still atomic there */ }
}

/**
 * Deletes a checkpoint folder without ever showing a half-deleted one: it is first renamed out of
 * the `step-N` namespace (atomic), so a kill during the deletion leaves only a stray temporary.
 */
function removeCheckpoint(path: string): void {
  const trash = `${path}.tmp-del-${crypto.randomUUID().slice(0, 8)}`;
  Deno.renameSync(path, trash);
  Deno.removeSync(trash, { recursive: true });
}

/** Writes a checkpoint of `trainer` under `root` and removes all but the newest `keep`. */
export function saveCheckpoint(
  root: string,
  trainer: Pretrainer,
  extra: { data: unknown; seconds: number },
  keep = 3,
): string {
  Deno.mkdirSync(root, { recursive: true });
  const final = stepDir(root, trainer.step);
  const tmp = `${final}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  Deno.mkdirSync(tmp);
  try {
    saveSafetensors(`${tmp}/model.safetensors`, trainer.model.stateDict());
    saveSafetensors(`${tmp}/ema.safetensors`, trainer.ema.weights);
    const opt = trainer.optimizer.stateBytes();
    writeFileAtomic(`${tmp}/optimizer.bin`, (f) => writeAll(f, opt));
    const state: TrainState = {
      version: CHECKPOINT_VERSION,
      step: trainer.step,
      options: trainer.options,
      rng: {
        timesteps: encodeBase64(trainer.rng.timesteps.state),
        mask: encodeBase64(trainer.rng.mask.state),
        noise: encodeBase64(trainer.rng.noise.state),
        global: encodeBase64(getRngState(trainer.options.device)),
      },
      data: extra.data,
      seconds: extra.seconds,
    };
    // state.json goes last: a folder with it is complete.
    writeFileAtomic(`${tmp}/state.json`, (f) => writeAll(f, new TextEncoder().encode(JSON.stringify(state, null, 1))));
    fsyncDir(tmp);
    try {
      removeCheckpoint(final); // a stale one from an earlier run at this step
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    Deno.renameSync(tmp, final);
    fsyncDir(root);
  } catch (e) {
    Deno.removeSync(tmp, { recursive: true });
    throw e;
  }
  for (const old of listCheckpoints(root).slice(0, -keep)) removeCheckpoint(old.path);
  return final;
}

/** Complete checkpoints under `root`, oldest first. */
export function listCheckpoints(root: string): { step: number; path: string }[] {
  const found: { step: number; path: string }[] = [];
  try {
    for (const e of Deno.readDirSync(root)) {
      const m = NAME.exec(e.name);
      if (!e.isDirectory || !m) continue;
      try {
        Deno.statSync(`${root}/${e.name}/state.json`);
        found.push({ step: Number(m[1]), path: `${root}/${e.name}` });
      } catch { /* incomplete */ }
    }
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  return found.sort((a, b) => a.step - b.step);
}

/** Reads a checkpoint folder's JSON state, checking that it is one. */
export function readTrainState(path: string): TrainState {
  let state: TrainState;
  try {
    state = JSON.parse(Deno.readTextFileSync(`${path}/state.json`));
  } catch (e) {
    throw new Error(`${path}: not a readable checkpoint (${(e as Error).message})`);
  }
  if (state.version !== CHECKPOINT_VERSION || !Number.isInteger(state.step)) {
    throw new Error(`${path}/state.json: unsupported checkpoint version ${state.version}`);
  }
  return state;
}

/**
 * Rebuilds the trainer a checkpoint folder saved: its weights and EMA are read straight into the
 * model (nothing is initialised first), then the optimizer, random streams and step are restored.
 * `options` (default: the saved ones) may differ from them only in what does not shape the model or
 * its state, such as `steps`.
 * @throws Error naming the file for weights that do not fit the options' model.
 */
export function restoreTrainer(path: string, state = readTrainState(path), options = state.options): Pretrainer {
  const file = (name: string) => `${path}/${name}.safetensors`;
  using model = loadSafetensors(file("model"), { device: options.device });
  using ema = loadSafetensors(file("ema"), { device: options.device });
  let trainer: Pretrainer;
  try {
    trainer = new Pretrainer(options, { model, ema, emaSource: file("ema") });
  } catch (e) {
    if (e instanceof StateDictError) throw new Error(`${file("model")}: ${e.message}`, { cause: e });
    throw e;
  }
  trainer.optimizer.loadStateBytes(Deno.readFileSync(`${path}/optimizer.bin`));
  trainer.rng.timesteps.state = decodeBase64(state.rng.timesteps);
  trainer.rng.mask.state = decodeBase64(state.rng.mask);
  trainer.rng.noise.state = decodeBase64(state.rng.noise);
  setRngState(decodeBase64(state.rng.global), options.device);
  trainer.step = state.step;
  return trainer;
}
