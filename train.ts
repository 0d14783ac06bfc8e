// Self-supervised pre-training of a guided-diffusion UNet: MDM (timestep-controlled patch masking,
// SSIM loss) or the DDPM baseline. With no arguments it runs a short, real pre-training on the
// embedded synthetic nuclei dataset.
//
//   deno run -A train.ts [--help] [flags]
import { createHash } from "node:crypto";
import { readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { mkdir, open, writeFile } from "node:fs/promises";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import { errorCode } from "./src/io/fs.ts";
import { type Device, getNumThreads, setNumThreads, tidy, torchVersion } from "./mod.ts";
import { helpText, limitsArg, parseArgs, runCli, RunError, UsageError } from "./src/cli/args.ts";
import {
  distributedFrom,
  intervals,
  PRETRAIN_SPEC,
  type PretrainArgs,
  pretrainOptionsFrom,
  runShapingFlagsGiven,
} from "./src/cli/pretrain_flags.ts";
import { probeTorsoDtype } from "./src/cli/probe.ts";
import { describeListing, findImages, type NamedImage, RandomCropLoader } from "./src/data/folder.ts";
import { readImage, writePng } from "./src/data/image.ts";
import { ensureSyntheticDataset } from "./src/data/synthetic.ts";
import { DataParallelGroup } from "./src/dist/data_parallel.ts";
import { describeExit, launchLocal, scriptCommand } from "./src/dist/launch.ts";
import { type Backend, backendAvailable, DistributedError, ProcessGroup } from "./src/dist/process_group.ts";
import { CheckpointError } from "./src/io/common.ts";
import type { Limits } from "./src/io/limits.ts";
import { FolderLock } from "./src/io/lock.ts";
import { saveSafetensors } from "./src/io/safetensors.ts";
import {
  cleanTemporaries,
  listCheckpoints,
  newestIntactCheckpoint,
  restoreProgress,
  restoreTrainer,
  saveCheckpoint,
  setAsideCheckpoint,
  type TrainState,
  verifyCheckpoint,
} from "./src/mdm/train_state.ts";
import { reconstruct, reconstructionPicture } from "./src/mdm/pictures.ts";
import { Pretrainer, type PretrainOptions } from "./src/mdm/pretrain.ts";
import { tensorToImages } from "./src/report/grid.ts";
import { linePlotSvg } from "./src/report/plot.ts";
import { Progress } from "./src/report/progress.ts";

const USAGE = `Pre-trains a UNet with masked diffusion (MDM) or DDPM.

usage: deno run -A train.ts [flags]

Without --data it trains on the embedded synthetic nuclei dataset (generated once into --cache).
With --data it takes every .png/.jpg/.jpeg/.tif/.tiff image under the folder, following links,
except in folders named masks, labels or annotations (or mask, label, annotation): a dataset root
such as MoNuSeg's gives its train/images and test/images, not its masks. It prints how many images
it found and where.

Outputs in --out: log.jsonl (per-step metrics), pictures/ (captioned: input | masked or noised input
| output at each timestep shown), checkpoints/ (resumable with --resume; each with SHA256SUMS,
checked before use), model.safetensors and ema.safetensors (final weights, guided-diffusion's
keys), loss.svg, config.json and summary.json. The folder is locked while a run writes to it.

Several processes train one model together (data parallel, on libtorch's c10d: Gloo on CPUs, NCCL
on GPUs): --nproc N starts N on this machine; on several machines start one process per rank (or
per GPU) with --world-size, --rank, --master-addr and --master-port (or torchrun's WORLD_SIZE, RANK,
LOCAL_RANK, MASTER_ADDR, MASTER_PORT), every rank with the same flags and the same --data. --batch
is the global batch: each step, every process draws the same crops, timesteps, masks and noise a
single process draws and trains on its own micro-batches of them, and the gradients are summed
across processes. Without dropout, N processes train what one process with the same --batch and
--micro-batch trains, up to the order in which gradients are summed; dropout masks differ with the
number of processes. Rank 0 alone writes --out (and takes its lock); on --resume it reads the
checkpoint and sends it to the others, which need no copy of --out, and the number of processes
must be the checkpoint's. On GPUs each process takes the GPU of its local rank. A process that
fails or stops answering makes the others fail within --dist-timeout.`;

/** "1 image", "2 images"; "2 processes" with `many`. */
function plural(n: number, noun: string, many = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : many}`;
}

interface LogEntry {
  step: number;
  loss: number;
  imagesPerSecond: number;
  seconds: number;
}

async function loadImages(
  dir: string | null,
  cache: string,
  limits: Limits,
  note: (line: string) => void = console.error,
): Promise<{ images: NamedImage[]; source: string }> {
  let paths: string[];
  let source: string;
  if (dir) {
    let listing;
    try {
      listing = await findImages(dir);
    } catch (e) {
      if (errorCode(e) === "ENOENT") throw new UsageError(`--data ${dir}: no such folder`);
      if (errorCode(e) === "ENOTDIR") throw new UsageError(`--data ${dir}: not a folder`);
      throw e;
    }
    paths = listing.paths;
    const skipped = listing.skippedFolders.length ? `; skipped label folders ${listing.skippedFolders.join(", ")}` : "";
    const links = listing.skippedLinks;
    if (links.length) {
      const shown = links.slice(0, 3).join(", ") + (links.length > 3 ? ", ..." : "");
      note(
        `warning: --data ${dir}: skipped ${
          plural(links.length, "link")
        } to nothing or to a folder already read: ${shown}`,
      );
    }
    if (paths.length === 0) {
      throw new UsageError(`--data ${dir}: no .png/.jpg/.jpeg/.tif/.tiff images found${skipped}`);
    }
    note(`${plural(paths.length, "image")} in ${dir}: ${describeListing(dir, paths)}${skipped}`);
    source = dir;
  } else {
    // The paper pre-trains on the train and test images of the medical sets, labels unused.
    const set = await ensureSyntheticDataset(cache, {});
    paths = [...set.train.images, ...set.test.images];
    source = `synthetic (${cache})`;
  }
  const images: NamedImage[] = [];
  for (const p of paths) images.push({ name: p, image: await readImage(p, limits) });
  return { images, source };
}

function readLog(path: string, upTo: number): LogEntry[] {
  try {
    // A process killed mid-write can leave a torn last line: it belongs to a step being redone.
    const parse = (l: string) => {
      try {
        const e = JSON.parse(l);
        return Number.isInteger(e?.step) && typeof e.loss === "number" ? [e as LogEntry] : [];
      } catch {
        return [];
      }
    };
    return readFileSync(path, "utf8").split("\n").filter((l) => l.trim()).flatMap(parse)
      .filter((e) => e.step <= upTo);
  } catch (e) {
    if (errorCode(e) === "ENOENT") return [];
    throw e;
  }
}

async function writePicture(
  path: string,
  trainer: Pretrainer,
  batch: Parameters<typeof reconstruct>[1],
  ts: number[],
) {
  const picture = tidy(() => {
    const recs = reconstruct(trainer, batch, ts);
    const columns = recs.map((r) => ({ t: r.t, inputs: tensorToImages(r.input), outputs: tensorToImages(r.output) }));
    return reconstructionPicture(tensorToImages(batch), columns, {
      method: trainer.options.method,
      step: trainer.step,
    });
  });
  await writePng(path, picture);
}

/**
 * A run that starts over must not mix its checkpoints with another run's (a later --resume would pick
 * whichever is newest): with checkpoints in the folder it is refused, or with --fresh they are moved to
 * checkpoints.previous/ (replacing an older one).
 */
function setAsidePreviousRun(ckptDir: string, fresh: boolean): void {
  const old = listCheckpoints(ckptDir);
  if (old.length === 0) return;
  const newest = old[old.length - 1];
  if (!fresh) {
    throw new UsageError(
      `--out holds another run's checkpoints (newest: ${newest.path}): continue it with --resume, ` +
        `or start over with --fresh (which moves them to ${ckptDir}.previous)`,
    );
  }
  rmSync(`${ckptDir}.previous`, { recursive: true, force: true });
  renameSync(ckptDir, `${ckptDir}.previous`);
  console.error(`moved the previous run's checkpoints (up to ${newest.path}) to ${ckptDir}.previous`);
}

/**
 * The checkpoint to resume from: --resume-from's (checked, no fallback), or with --resume the
 * newest intact one in `ckptDir`, setting aside (with a warning) newer ones that are damaged.
 */
function findResume(
  args: { resume: boolean; resumeFrom?: string },
  ckptDir: string,
): { path: string; state: TrainState } | null {
  if (args.resumeFrom) {
    const info = (() => {
      try {
        return statSync(args.resumeFrom!);
      } catch {
        return null;
      }
    })();
    if (!info?.isDirectory) throw new UsageError(`--resume-from ${args.resumeFrom}: no such checkpoint folder`);
    const { state, verified } = verifyCheckpoint(args.resumeFrom);
    if (!verified) {
      console.error(`warning: ${args.resumeFrom} is a version 1 checkpoint without checksums; not verified`);
    }
    return { path: args.resumeFrom, state };
  }
  if (!args.resume) return null;
  const found = newestIntactCheckpoint(ckptDir);
  for (const s of found.skipped) {
    const aside = setAsideCheckpoint(s.path);
    console.error(`warning: skipping the damaged checkpoint ${s.path} (${s.reason}); moved it to ${aside}`);
  }
  if (!found.path) {
    if (found.skipped.length) {
      throw new RunError(`--resume: no intact checkpoint in ${ckptDir} (${found.skipped.length} damaged, set aside)`);
    }
    throw new UsageError(`--resume: no checkpoint in ${ckptDir}`);
  }
  if (!found.verified) {
    console.error(`warning: ${found.path} is a version 1 checkpoint without checksums; not verified`);
  }
  return { path: found.path, state: found.state! };
}

/** What rank 0 decides before training and sends to the other ranks of a data-parallel run. */
interface Plan {
  /** Set when rank 0 failed to prepare: the others stop with its message. */
  error?: { message: string; usage: boolean };
  options: PretrainOptions;
  resume: { path: string; state: TrainState } | null;
  /** Rank 0's interval: the ranks meet after each checkpoint it saves. */
  checkpointEvery: number;
}

/** A data-parallel process's group and its rank on this machine. */
interface Ranks {
  parallel: DataParallelGroup;
  localRank: number;
}

/** The device a rank trains on: with CUDA, the GPU of its local rank (torchrun's convention). */
function rankDevice(device: Device, ranks: Ranks | null): Device {
  return ranks && device.startsWith("cuda") ? `cuda:${ranks.localRank}` as Device : device;
}

/** `argv` without `--name value` and `--name=value`. */
function withoutFlag(argv: readonly string[], name: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) i++;
    else if (!argv[i].startsWith(`--${name}=`)) out.push(argv[i]);
  }
  return out;
}

/** --nproc: starts the ranks on this machine and waits for them; returns the exit code. */
async function launchRanks(args: PretrainArgs, argv: string[], nproc: number): Promise<number> {
  // The options must hold for this many processes: say so once, before any starts.
  pretrainOptionsFrom(args, nproc);
  const threadsGiven = argv.some((a) => a === "--threads" || a.startsWith("--threads="));
  const threads = threadsGiven ? args.threads : Math.max(1, Math.floor(availableParallelism() / nproc));
  const { command, args: run } = scriptCommand(fileURLToPath(import.meta.url));
  console.error(
    `starting ${plural(nproc, "process", "processes")} of ${
      plural(threads, "thread")
    } each (rank 0 writes ${args.out})`,
  );
  const { failure } = await launchLocal({
    nproc,
    command,
    args: [...run, ...withoutFlag(argv, "nproc")],
    rankArgs: () => ["--threads", String(threads)],
    masterPort: args.masterPort,
    onFailure: (f) => console.error(`train.ts: rank ${f.rank} ${describeExit(f)}; stopping the other processes`),
  });
  return failure === null ? 0 : failure.code || 1;
}

/** A digest of the images and how they are cropped: every rank must train on the same. */
function dataFingerprint(images: readonly NamedImage[], padSmall: boolean): string {
  const hash = createHash("sha256");
  hash.update(`${images.length} ${padSmall}`);
  for (const { image } of images) {
    hash.update(`${image.width}x${image.height}x${image.channels}`);
    hash.update(image.data);
  }
  return hash.digest("hex");
}

/**
 * Rank 0's preparation (and a single process's): the output folder and its lock, leftovers of
 * interrupted saves, the checkpoint to resume from and the options it fixes.
 */
async function prepareOutput(
  args: PretrainArgs,
  argv: string[],
  flagOptions: PretrainOptions,
  worldSize: number,
): Promise<{ plan: Plan; lock: FolderLock }> {
  const out = args.out;
  const ckptDir = `${out}/checkpoints`;
  let options = flagOptions;
  try {
    await mkdir(`${out}/pictures`, { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${out}: cannot create the folder (${(e as Error).message})`);
  }
  // One run per folder: a second would interleave the log and mix checkpoints.
  const lock = FolderLock.acquire(out, "train.ts");
  try {
    const stale = cleanTemporaries(ckptDir);
    if (stale.length) {
      const what = plural(stale.length, "unfinished checkpoint folder");
      console.error(`removed ${what} left by an interrupted run: ${stale.join(", ")}`);
    }
    const resume = findResume(args, ckptDir);
    if (!resume) setAsidePreviousRun(ckptDir, args.fresh);
    if (resume) {
      const saved = resume.state.worldSize;
      if (saved !== worldSize) {
        const flag = args.resumeFrom ? "--resume-from" : "--resume";
        const how = saved === 1 ? "a single process" : `--nproc ${saved} (or --world-size ${saved})`;
        throw new UsageError(
          `${flag}: the checkpoint ${resume.path} was trained by ${
            plural(saved, "process", "processes")
          } and this run has ` +
            `${worldSize}: resume it with ${how}, since each process's share of the batch is part of the run`,
        );
      }
      // The checkpoint decides everything that shapes the model and its training; --steps may extend it.
      const ignored = runShapingFlagsGiven(argv);
      if (ignored.length) {
        console.error(
          `warning: resuming continues the checkpoint's run as it was set up; ignoring ${ignored.join(", ")}`,
        );
      }
      options = { ...resume.state.options, steps: args.steps ?? resume.state.options.steps };
      if (options.steps < resume.state.step) {
        throw new UsageError(
          `--steps ${options.steps}: the checkpoint ${resume.path} is already at step ${resume.state.step}`,
        );
      }
      const late = args.pictureTimesteps.find((t) => t >= options.diffusionSteps);
      if (late !== undefined) {
        throw new UsageError(
          `--picture-timesteps: ${late} is not below the checkpoint's ${options.diffusionSteps} diffusion steps`,
        );
      }
    }
    return { plan: { options, resume, checkpointEvery: intervals(args).checkpointEvery }, lock };
  } catch (e) {
    lock.release();
    throw e;
  }
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(PRETRAIN_SPEC, argv);
  if (args.help) {
    console.log(helpText(USAGE, PRETRAIN_SPEC));
    return 0;
  }
  const dist = distributedFrom(args);
  if (dist.launch !== null) return await launchRanks(args, argv, dist.launch);
  setNumThreads(args.threads);
  const place = dist.worker;
  const flagOptions = pretrainOptionsFrom(args, place?.worldSize ?? 1);
  if (!place) return await train(args, argv, flagOptions, null);

  const backend: Backend = flagOptions.device.startsWith("cuda") && backendAvailable("nccl") ? "nccl" : "gloo";
  using group = ProcessGroup.fromEnv(place, { backend, timeoutMs: dist.timeoutMs });
  const parallel = new DataParallelGroup(group, backend === "nccl" ? `cuda:${place.localRank}` as Device : "cpu");
  const code = await train(args, argv, flagOptions, { parallel, localRank: place.localRank });
  // Rank 0 writes the final outputs meanwhile; its dispose closes the rendezvous: leave together.
  parallel.barrier();
  return code;
}

/**
 * The run itself, as a single process (`ranks` null) or as one rank of a data-parallel run: rank 0
 * prepares --out and decides the options, every rank loads the data and builds the trainer, rank
 * 0's weights (and on a resume its optimizer state) go to the others, and every rank trains; rank 0
 * alone writes. The collectives come in the same order on every rank, failures included: a rank
 * that fails before training says so through them, and the others stop too.
 */
async function train(
  args: PretrainArgs,
  argv: string[],
  flagOptions: PretrainOptions,
  ranks: Ranks | null,
): Promise<number> {
  const dp = ranks?.parallel ?? null;
  const rank = dp?.rank ?? 0, worldSize = dp?.worldSize ?? 1;
  const lead = rank === 0;
  const note = lead ? (line: string) => console.error(line) : () => {};
  const limits = limitsArg(args);
  const out = args.out;
  const ckptDir = `${out}/checkpoints`;
  const { pictureEvery } = intervals(args);

  let plan: Plan;
  let lock: FolderLock | null = null;
  if (lead) {
    try {
      ({ plan, lock } = await prepareOutput(args, argv, flagOptions, worldSize));
      // The synthetic set is written once, here, before the other ranks of this machine read it.
      if (dp && !args.data) await ensureSyntheticDataset(args.cache, {});
    } catch (e) {
      lock?.release();
      const error = { message: (e as Error).message, usage: e instanceof UsageError };
      dp?.broadcastJson<Plan>({ error, options: flagOptions, resume: null, checkpointEvery: 0 });
      throw e;
    }
  } else {
    plan = dp!.broadcastJson<Plan>(null);
    if (plan.error) {
      const message = `rank 0 stopped before training: ${plan.error.message}`;
      throw plan.error.usage ? new UsageError(message) : new RunError(message);
    }
  }
  try {
    if (lead) dp?.broadcastJson(plan);
    return await trainPlanned(args, plan, flagOptions, ranks, { lead, note, limits, out, ckptDir, pictureEvery });
  } finally {
    lock?.release();
  }
}

async function trainPlanned(
  args: PretrainArgs,
  plan: Plan,
  flagOptions: PretrainOptions,
  ranks: Ranks | null,
  ctx: {
    lead: boolean;
    note: (line: string) => void;
    limits: Limits;
    out: string;
    ckptDir: string;
    pictureEvery: number;
  },
): Promise<number> {
  const { lead, note, limits, out, ckptDir, pictureEvery } = ctx;
  const dp = ranks?.parallel ?? null;
  const rank = dp?.rank ?? 0, worldSize = dp?.worldSize ?? 1;
  const resume = plan.resume;
  const options: PretrainOptions = { ...plan.options, device: rankDevice(plan.options.device, ranks) };
  const { checkpointEvery } = plan;

  // Each rank prepares on its own; the first failure is kept, and the collectives still run, so
  // that every rank learns of it below instead of waiting for a rank that has stopped.
  let failure: unknown = null;
  const attempt = async <T>(f: () => T | Promise<T>): Promise<T | undefined> => {
    if (failure !== null) return undefined;
    try {
      return await f();
    } catch (e) {
      failure = e;
      return undefined;
    }
  };
  if (!lead && !resume) {
    await attempt(() => {
      const theirs = plan.options as unknown as Record<string, unknown>;
      const mine = flagOptions as unknown as Record<string, unknown>;
      const differ = Object.keys(theirs).filter((k) => JSON.stringify(theirs[k]) !== JSON.stringify(mine[k]));
      if (differ.length) {
        throw new UsageError(
          `rank ${rank}'s flags set ${differ.join(", ")} otherwise than rank 0's: start every rank with the same flags`,
        );
      }
    });
  }
  // Ranks on other machines write their own copy of the synthetic set, one per machine, first.
  if (dp && !lead && !args.data && ranks!.localRank === 0) await attempt(() => ensureSyntheticDataset(args.cache, {}));
  dp?.barrier();

  const setup = await attempt(async () => {
    probeTorsoDtype(options.unet.torsoDtype ?? "float32", options.device, { backward: true });
    const { images, source } = await loadImages(args.data || null, args.cache, limits, note);
    const crop = options.unet.imageSize;
    const small = images.find(({ image }) => image.width < crop || image.height < crop);
    if (small && !args.padSmall) {
      throw new UsageError(
        `${small.name}: image is ${small.image.width}x${small.image.height}, smaller than the --crop ${crop}; ` +
          `pass --pad-small to pad small images`,
      );
    }
    const loader = new RandomCropLoader(images, {
      cropSize: crop,
      seed: options.seed,
      padSmall: args.padSmall,
      device: options.device,
    });
    let trainer: Pretrainer;
    if (resume) {
      const { path, state } = resume;
      try {
        loader.setState(state.data as ReturnType<RandomCropLoader["getState"]>);
      } catch {
        throw new CheckpointError(
          `${path}/state.json`,
          `its data order does not fit the ${images.length} images of ${source}; resume with the run's own --data`,
        );
      }
      if (lead) {
        trainer = restoreTrainer(path, state, options, { verified: true, limits });
      } else {
        // The weights and the optimizer state come from rank 0 below.
        trainer = new Pretrainer(options);
        restoreProgress(trainer, state, `${path}/state.json (rank 0's)`);
      }
    } else {
      trainer = new Pretrainer(options);
    }
    const fingerprint = dp ? dataFingerprint(images, args.padSmall) : "";
    return { images, source, loader, trainer, fingerprint };
  });
  if (dp) {
    const theirs = dp.broadcastJson<string | null>(lead ? setup?.fingerprint ?? null : null);
    if (!lead && setup && theirs !== null && theirs !== setup.fingerprint) {
      failure ??= new UsageError(
        `rank ${rank}'s images (--data ${args.data || args.cache}, ${setup.images.length}) differ from rank 0's: ` +
          "every rank must train on the same images",
      );
    }
    const failed = dp.countFailures(failure !== null);
    if (failure === null && failed > 0) {
      throw new RunError(
        `${plural(failed, "other process", "other processes")} of the run failed before training (see its output)`,
      );
    }
  }
  if (failure !== null) throw failure;
  const { images, source, loader, trainer } = setup!;
  let seconds = resume?.state.seconds ?? 0;
  if (dp) {
    // Every rank starts from rank 0's weights, buffers and averages (and on a resume its optimizer).
    dp.broadcastTensors([...trainer.model.stateDict().values(), ...trainer.ema.weights.values()]);
    if (resume) {
      const bytes = dp.broadcastBytes(lead ? trainer.optimizer.stateBytes() : null);
      if (!lead) trainer.optimizer.loadStateBytes(bytes);
    }
    trainer.parallel = dp;
  }
  if (resume && lead) console.error(`resumed from ${resume.path} at step ${resume.state.step}`);

  const crop = options.unet.imageSize;
  const config = {
    options,
    data: { source, images: images.length },
    threads: getNumThreads(),
    worldSize,
    libtorch: torchVersion(),
    parameters: trainer.model.numParameters(),
  };
  const split = worldSize > 1
    ? ` (${plural(worldSize, "process", "processes")} × ${
      options.batch / worldSize
    }, micro-batches of ${options.microBatch})`
    : "";
  note(
    `${options.method} pre-training: ${
      (config.parameters / 1e6).toFixed(2)
    }M parameters, ${images.length} images from ${source}, ` +
      `${options.steps} steps of batch ${options.batch}${split} at ${crop}², loss ${options.loss}, ` +
      `${plural(config.threads, "thread")}${worldSize > 1 ? " each" : ""}`,
  );

  const log = lead ? await startLog(out, trainer.step, config) : [];
  const logFile = lead ? await open(`${out}/log.jsonl`, "a") : null;
  // A fixed batch for the pictures, from its own stream so that training's data order is untouched.
  const pictureBatch = lead
    ? new RandomCropLoader(images, {
      cropSize: crop,
      seed: options.seed + 1,
      flip: false,
      padSmall: args.padSmall,
      device: options.device,
    }).nextBatch(Math.min(4, images.length))
    : null;
  const progress = lead ? new Progress({ total: options.steps, label: options.method }, trainer.step) : null;
  let lastSaved = trainer.step;
  // Each rank copies only its own share of the crops: the others' are drawn but left blank, since
  // the trainer uses them only for their count (the corruption's draws).
  const share = options.batch / worldSize;
  const only = dp ? [rank * share, (rank + 1) * share] as const : undefined;
  try {
    while (trainer.step < options.steps) {
      const t0 = performance.now();
      const { step, loss } = tidy(() => trainer.trainStep(loader.nextBatch(options.batch, { only })));
      const dt = (performance.now() - t0) / 1000;
      seconds += dt;
      if (!Number.isFinite(loss)) {
        throw new RunError(`step ${step}: the loss is ${loss}; lower --lr (${options.lr}) or check the data`);
      }
      if (!lead) {
        if (checkpointEvery > 0 && step % checkpointEvery === 0) dp!.barrier();
        continue;
      }
      const entry: LogEntry = { step, loss, imagesPerSecond: options.batch / dt, seconds };
      log.push(entry);
      await logFile!.write(JSON.stringify(entry) + "\n");
      progress!.update(step, { loss, "img/s": entry.imagesPerSecond });
      if (pictureEvery > 0 && (step % pictureEvery === 0 || step === options.steps)) {
        await writePicture(
          `${out}/pictures/step-${String(step).padStart(7, "0")}.png`,
          trainer,
          pictureBatch!,
          args.pictureTimesteps,
        );
      }
      if (checkpointEvery > 0 && step % checkpointEvery === 0) {
        saveCheckpoint(ckptDir, trainer, { data: loader.getState(), seconds, worldSize }, args.keepCheckpoints);
        lastSaved = step;
        dp?.barrier();
      }
    }
  } catch (e) {
    if (e instanceof DistributedError) {
      throw new RunError(
        `step ${trainer.step + 1}: ${e.message} (another process of the run failed or stopped answering: ` +
          "see its output)",
        { cause: e },
      );
    }
    throw e;
  } finally {
    await logFile?.close();
  }
  if (!lead) return 0;
  if (lastSaved !== trainer.step) {
    saveCheckpoint(ckptDir, trainer, { data: loader.getState(), seconds, worldSize }, args.keepCheckpoints);
  }
  await finish(out, trainer, log, { ...config, steps: trainer.step, seconds });
  return 0;
}

/** Writes config.json and the log up to `step` (a line past it belongs to a step about to be redone). */
async function startLog(out: string, step: number, config: object): Promise<LogEntry[]> {
  await writeFile(`${out}/config.json`, JSON.stringify(config, null, 2) + "\n");
  const logPath = `${out}/log.jsonl`;
  const log = readLog(logPath, step);
  await writeFile(logPath, log.map((e) => JSON.stringify(e) + "\n").join(""));
  return log;
}

/** Rank 0's (or a single process's) last outputs: final weights, loss curve, summary. */
async function finish(
  out: string,
  trainer: Pretrainer,
  log: LogEntry[],
  config: { options: PretrainOptions; steps: number; seconds: number },
): Promise<void> {
  const { options, seconds } = config;
  saveSafetensors(`${out}/model.safetensors`, trainer.model.stateDict(), { format: "pt", method: options.method });
  saveSafetensors(`${out}/ema.safetensors`, trainer.ema.weights, { format: "pt", method: options.method });
  const smooth: [number, number][] = [];
  let avg = log[0]?.loss ?? 0;
  for (const e of log) smooth.push([e.step, avg = 0.9 * avg + 0.1 * e.loss]);
  if (log.length) {
    await writeFile(
      `${out}/loss.svg`,
      linePlotSvg(
        [{ name: `${options.loss} loss`, points: log.map((e) => [e.step, e.loss]), color: "#9ecae1" }, {
          name: "smoothed",
          points: smooth,
        }],
        { title: `${options.method} pre-training`, xLabel: "step", yLabel: `${options.loss} loss` },
      ),
    );
  }
  const head = log.slice(0, Math.max(1, Math.ceil(log.length / 10))),
    tail = log.slice(-Math.max(1, Math.ceil(log.length / 10)));
  const mean = (xs: LogEntry[]) => xs.reduce((a, e) => a + e.loss, 0) / Math.max(1, xs.length);
  const summary = {
    ...config,
    imagesPerSecond: (trainer.step * options.batch) / Math.max(seconds, 1e-9),
    lossFirstTenth: mean(head),
    lossLastTenth: mean(tail),
    outputs: {
      weights: `${out}/model.safetensors`,
      ema: `${out}/ema.safetensors`,
      pictures: `${out}/pictures`,
      lossCurve: `${out}/loss.svg`,
    },
  };
  await writeFile(`${out}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  console.error(
    `done: ${trainer.step} steps in ${seconds.toFixed(0)} s (${summary.imagesPerSecond.toFixed(1)} images/s); ` +
      `loss ${summary.lossFirstTenth.toFixed(4)} → ${
        summary.lossLastTenth.toFixed(4)
      }; weights in ${out}/model.safetensors`,
  );
}

export { main };

if (import.meta.main) await runCli("train.ts", main);
