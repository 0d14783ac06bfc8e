// Pre-training checkpoints, the whole training state: one folder per saved step (model, EMA,
// optimizer, random streams, data order), made complete under a temporary name and renamed into
// place, so that a process killed mid-save leaves the previous checkpoints readable. The newest few
// are kept. Every file's SHA-256 is written last (SHA256SUMS) and checked before a checkpoint is
// used, and every field of state.json is validated, so that a damaged or edited checkpoint is
// refused by name rather than trained on; `newestIntactCheckpoint` finds the one to resume from.
// Loading model weights alone is src/io/weights.ts.
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import process from "node:process";
import { errorCode } from "../io/fs.ts";
import { loadSafetensors, saveSafetensors } from "../io/safetensors.ts";
import { writeFileAtomic } from "../io/atomic.ts";
import { checkSums, SUMS_FILE, writeSums } from "../io/checksum.ts";
import { CheckpointError } from "../io/common.ts";
import type { Limits } from "../io/limits.ts";
import { getRngState, setRngState } from "../random.ts";
import { decodeBase64, encodeBase64 } from "../util/base64.ts";
import { FieldError, integer, number, object, onlyKeys, string } from "../util/fields.ts";
import { StateDictError } from "../nn/module.ts";
import { Pretrainer, type PretrainOptions } from "./pretrain.ts";
import { checkPretrainOptions, PRETRAIN_BOUNDS } from "./validate.ts";

/** 2: the folder holds SHA256SUMS. Version 1 folders (without) are still read, unverified. */
export const CHECKPOINT_VERSION = 2;

/** The files of a checkpoint, SHA256SUMS aside. */
export const CHECKPOINT_FILES = ["model.safetensors", "ema.safetensors", "optimizer.bin", "state.json"] as const;

/** The JSON part of a checkpoint. */
export interface TrainState {
  /** The checkpoint format's version (CHECKPOINT_VERSION when written by this mdm). */
  version: number;
  /** Optimizer steps taken when the checkpoint was saved. */
  step: number;
  /** The run's options, as validated when it started. */
  options: PretrainOptions;
  /** Base64 generator states: the trainer's three streams and the global one (dropout). */
  rng: { timesteps: string; mask: string; noise: string; global: string };
  /** The data loader's own state (opaque JSON). */
  data: unknown;
  /** Seconds of training so far, for throughput and ETA after a resume. */
  seconds: number;
  /**
   * How many processes trained together (data parallel); 1 for a single process and for
   * checkpoints written before the field existed. A resume must use as many.
   */
  worldSize: number;
}

const NAME = /^step-(\d{7,})$/;
// Temporaries: `step-N.tmp-<pid>-<id>` while a checkpoint is written or deleted (see cleanTemporaries).
const TEMPORARY = /^step-\d{7,}\.tmp-(?:(\d+)-)?/;

function stepDir(root: string, step: number): string {
  return `${root}/step-${String(step).padStart(7, "0")}`;
}

function temporaryName(path: string): string {
  return `${path}.tmp-${process.pid}-${crypto.randomUUID().slice(0, 8)}`;
}

function fsyncDir(path: string): void {
  try {
    const fd = openSync(path, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch { /* some file systems refuse to open folders: the rename is still atomic there */ }
}

/**
 * Deletes a checkpoint folder without ever showing a half-deleted one: it is first renamed out of
 * the `step-N` namespace (atomic), so a kill during the deletion leaves only a stray temporary.
 */
function removeCheckpoint(path: string): void {
  const trash = temporaryName(path);
  renameSync(path, trash);
  rmSync(trash, { recursive: true, force: true });
}

/** Writes a checkpoint of `trainer` under `root` and removes all but the newest `keep`. */
export function saveCheckpoint(
  root: string,
  trainer: Pretrainer,
  extra: { data: unknown; seconds: number; worldSize?: number },
  keep = 3,
): string {
  mkdirSync(root, { recursive: true });
  const final = stepDir(root, trainer.step);
  const tmp = temporaryName(final);
  mkdirSync(tmp);
  try {
    saveSafetensors(`${tmp}/model.safetensors`, trainer.model.stateDict());
    saveSafetensors(`${tmp}/ema.safetensors`, trainer.ema.weights);
    const opt = trainer.optimizer.stateBytes();
    writeFileAtomic(`${tmp}/optimizer.bin`, (f) => f.write(opt));
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
      worldSize: extra.worldSize ?? 1,
    };
    writeFileAtomic(`${tmp}/state.json`, (f) => f.write(new TextEncoder().encode(JSON.stringify(state, null, 1))));
    // The checksums go last, over the files as they are on disk.
    writeSums(tmp, CHECKPOINT_FILES);
    fsyncDir(tmp);
    try {
      removeCheckpoint(final); // a stale one from an earlier run at this step
    } catch (e) {
      if (errorCode(e) !== "ENOENT") throw e;
    }
    renameSync(tmp, final);
    fsyncDir(root);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  for (const old of listCheckpoints(root).slice(0, -keep)) removeCheckpoint(old.path);
  return final;
}

/** Complete checkpoints under `root` (folders `step-N` with a state.json), oldest first. */
export function listCheckpoints(root: string): { step: number; path: string }[] {
  const found: { step: number; path: string }[] = [];
  try {
    for (const e of readdirSync(root, { withFileTypes: true })) {
      const m = NAME.exec(e.name);
      if (!e.isDirectory() || !m) continue;
      try {
        statSync(`${root}/${e.name}/state.json`);
        found.push({ step: Number(m[1]), path: `${root}/${e.name}` });
      } catch { /* incomplete */ }
    }
  } catch (e) {
    if (errorCode(e) !== "ENOENT") throw e;
  }
  return found.sort((a, b) => a.step - b.step);
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    statSync(`/proc/${pid}`);
    return true;
  } catch (e) {
    if (errorCode(e) === "ENOENT") {
      // Without /proc (not Linux) nothing is known: keep the folder.
      try {
        statSync("/proc/self");
        return false;
      } catch {
        return true;
      }
    }
    return true;
  }
}

/**
 * Removes the temporary folders (`step-N.tmp-*`) that an interrupted save or deletion left under
 * `root`, except those of a process still running on this machine (whose save may be under way).
 * Returns the paths removed.
 */
export function cleanTemporaries(root: string): string[] {
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(root);
  } catch (e) {
    if (errorCode(e) === "ENOENT") return removed;
    throw e;
  }
  for (const name of entries) {
    const m = TEMPORARY.exec(name);
    if (!m || (m[1] !== undefined && alive(Number(m[1])))) continue;
    const path = `${root}/${name}`;
    try {
      rmSync(path, { recursive: true });
      removed.push(path);
    } catch (err) {
      if (errorCode(err) !== "ENOENT") throw err;
    }
  }
  return removed;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function rngState(v: unknown, field: string): string {
  const s = string(v, field);
  if (s.length === 0 || s.length % 4 !== 0 || !BASE64.test(s)) throw new FieldError(field, "is not base64");
  return s;
}

/**
 * Checks every field of a parsed state.json. `folderStep` (from a `step-N` folder name) must
 * equal its step.
 * @throws FieldError naming the field.
 */
export function checkTrainState(v: unknown, folderStep?: number): TrainState {
  const o = object(v, "state");
  onlyKeys(o, ["version", "step", "options", "rng", "data", "seconds", "worldSize"], "state");
  const version = integer(o.version, "version", 1, CHECKPOINT_VERSION);
  const options = checkPretrainOptions(o.options, "options");
  const step = integer(o.step, "step", 0, PRETRAIN_BOUNDS.steps);
  if (folderStep !== undefined && step !== folderStep) {
    throw new FieldError("step", `is ${step} but the folder is named for step ${folderStep}`);
  }
  const r = object(o.rng, "rng");
  onlyKeys(r, ["timesteps", "mask", "noise", "global"], "rng");
  const rng = {
    timesteps: rngState(r.timesteps, "rng.timesteps"),
    mask: rngState(r.mask, "rng.mask"),
    noise: rngState(r.noise, "rng.noise"),
    global: rngState(r.global, "rng.global"),
  };
  // The data loader's state is its own to check (RandomCropLoader.setState); here it must be there.
  if (o.data === undefined) throw new FieldError("data", "is missing");
  const worldSize = o.worldSize === undefined ? 1 : integer(o.worldSize, "worldSize", 1, PRETRAIN_BOUNDS.worldSize);
  if (options.batch % (worldSize * options.microBatch) !== 0) {
    throw new FieldError(
      "worldSize",
      `is ${worldSize}: so many processes do not split the batch ${options.batch} into micro-batches of ${options.microBatch}`,
    );
  }
  return { version, step, options, rng, data: o.data, seconds: number(o.seconds, "seconds", 0), worldSize };
}

/**
 * Reads a checkpoint folder's state.json and validates every field (not the other files: see
 * verifyCheckpoint).
 * @throws CheckpointError naming the folder or state.json and, for a bad value, the field.
 */
export function readTrainState(path: string): TrainState {
  const file = `${path}/state.json`;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, "utf8"));
  } catch (e) {
    if (errorCode(e) === "ENOENT") {
      throw new CheckpointError(path, "not a checkpoint folder (no state.json)", { cause: e });
    }
    throw new CheckpointError(file, `not readable as JSON (${(e as Error).message})`, { cause: e });
  }
  const m = NAME.exec(path.replace(/\/+$/, "").split("/").pop()!);
  try {
    return checkTrainState(raw, m ? Number(m[1]) : undefined);
  } catch (e) {
    if (e instanceof FieldError) throw new CheckpointError(file, e.message, { cause: e });
    throw e;
  }
}

/**
 * Checks every file of a checkpoint folder against its SHA256SUMS and returns its validated state.
 * A version 1 checkpoint (written before checksums) has none to check: `verified` is then false.
 * @throws CheckpointError naming the damaged, missing or invalid file.
 */
export function verifyCheckpoint(path: string): { state: TrainState; verified: boolean } {
  const hasSums = (() => {
    try {
      statSync(`${path}/${SUMS_FILE}`);
      return true;
    } catch {
      return false;
    }
  })();
  if (hasSums) {
    const problem = checkSums(path, CHECKPOINT_FILES);
    if (problem) throw new CheckpointError(problem[0], problem[1]);
  }
  const state = readTrainState(path);
  if (state.version >= 2 && !hasSums) {
    throw new CheckpointError(`${path}/${SUMS_FILE}`, "missing (a version 2 checkpoint must have it)");
  }
  return { state, verified: hasSums };
}

/** A checkpoint that `newestIntactCheckpoint` passed over, and why. */
export interface SkippedCheckpoint {
  /** The checkpoint folder passed over. */
  path: string;
  /** What was wrong with it (a damaged or missing file, an invalid state). */
  reason: string;
}

/**
 * The newest checkpoint under `root` whose files match their checksums and whose state is valid,
 * with the newer ones that failed (newest first). `path` is null when none is intact.
 */
export function newestIntactCheckpoint(
  root: string,
): { path: string | null; state: TrainState | null; verified: boolean; skipped: SkippedCheckpoint[] } {
  const skipped: SkippedCheckpoint[] = [];
  for (const { path } of listCheckpoints(root).reverse()) {
    try {
      const { state, verified } = verifyCheckpoint(path);
      return { path, state, verified, skipped };
    } catch (e) {
      if (!(e instanceof CheckpointError)) throw e;
      skipped.push({ path, reason: e.message });
    }
  }
  return { path: null, state: null, verified: false, skipped };
}

/**
 * Moves a checkpoint that failed its checks out of the `step-N` names (to `step-N.damaged-<id>`),
 * keeping it for inspection while resuming, saving and pruning no longer see it. Returns the new path.
 */
export function setAsideCheckpoint(path: string): string {
  const to = `${path}.damaged-${crypto.randomUUID().slice(0, 8)}`;
  renameSync(path, to);
  return to;
}

/**
 * Rebuilds the trainer a checkpoint folder saved: its weights and EMA are read straight into the
 * model (nothing is initialised first), then the optimizer, random streams and step are restored.
 * The files are checked against their checksums first unless `verified` (the caller just did).
 * `options` (default: the saved ones) may differ from them only in what does not shape the model or
 * its state, such as `steps`.
 * @throws CheckpointError naming the file: damaged, invalid, or weights that do not fit the model.
 */
export function restoreTrainer(
  path: string,
  state?: TrainState,
  options?: PretrainOptions,
  opts: { verified?: boolean; limits?: Limits } = {},
): Pretrainer {
  if (!opts.verified) state = verifyCheckpoint(path).state;
  state ??= readTrainState(path);
  options ??= state.options;
  const file = (name: string) => `${path}/${name}.safetensors`;
  using model = loadSafetensors(file("model"), { ...opts.limits, device: options.device });
  using ema = loadSafetensors(file("ema"), { ...opts.limits, device: options.device });
  let trainer: Pretrainer;
  try {
    trainer = new Pretrainer(options, { model, ema, emaSource: file("ema") });
  } catch (e) {
    if (e instanceof StateDictError) throw new CheckpointError(file("model"), e.message, { cause: e });
    throw e;
  }
  const restore = (what: string, f: () => void) => {
    try {
      f();
    } catch (e) {
      throw new CheckpointError(what, (e as Error).message, { cause: e });
    }
  };
  restore(
    `${path}/optimizer.bin`,
    () => trainer.optimizer.loadStateBytes(new Uint8Array(readFileSync(`${path}/optimizer.bin`))),
  );
  restoreProgress(trainer, state, `${path}/state.json`);
  return trainer;
}

/**
 * Puts a checkpoint's random streams (the trainer's three and the global one) and step into
 * `trainer`, as `restoreTrainer` does after the weights and the optimizer; data-parallel ranks that
 * receive those from rank 0 take the rest from the state this way. `where` names the state in errors.
 * @throws CheckpointError naming `where` when a stream's state does not fit its generator.
 */
export function restoreProgress(trainer: Pretrainer, state: TrainState, where: string): void {
  try {
    trainer.rng.timesteps.state = decodeBase64(state.rng.timesteps);
    trainer.rng.mask.state = decodeBase64(state.rng.mask);
    trainer.rng.noise.state = decodeBase64(state.rng.noise);
    setRngState(decodeBase64(state.rng.global), trainer.options.device);
  } catch (e) {
    throw new CheckpointError(`${where} (rng)`, (e as Error).message, { cause: e });
  }
  trainer.step = state.step;
}
