// Self-supervised pre-training of a guided-diffusion UNet: MDM (timestep-controlled patch masking,
// SSIM loss) or the DDPM baseline. With no arguments it runs a short, real pre-training on the
// embedded synthetic nuclei dataset.
//
//   deno run -A train.ts [--help] [flags]
import { readFileSync, statSync } from "node:fs";
import { mkdir, open, writeFile } from "node:fs/promises";
import { errorCode } from "./src/io/fs.ts";
import { getNumThreads, setNumThreads, tidy, torchVersion } from "./mod.ts";
import { helpText, limitsArg, parseArgs, runCli, RunError, UsageError } from "./src/cli/args.ts";
import { intervals, PRETRAIN_SPEC, pretrainOptionsFrom, runShapingFlagsGiven } from "./src/cli/pretrain_flags.ts";
import { probeTorsoDtype } from "./src/cli/probe.ts";
import { describeListing, findImages, type NamedImage, RandomCropLoader } from "./src/data/folder.ts";
import { readImage, writePng } from "./src/data/image.ts";
import { ensureSyntheticDataset } from "./src/data/synthetic.ts";
import { CheckpointError } from "./src/io/common.ts";
import type { Limits } from "./src/io/limits.ts";
import { FolderLock } from "./src/io/lock.ts";
import { saveSafetensors } from "./src/io/safetensors.ts";
import {
  cleanTemporaries,
  newestIntactCheckpoint,
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
keys), loss.svg, config.json and summary.json. The folder is locked while a run writes to it.`;

/** "1 image", "2 images". */
function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? "" : "s"}`;
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
      console.error(
        `warning: --data ${dir}: skipped ${
          plural(links.length, "link")
        } to nothing or to a folder already read: ${shown}`,
      );
    }
    if (paths.length === 0) {
      throw new UsageError(`--data ${dir}: no .png/.jpg/.jpeg/.tif/.tiff images found${skipped}`);
    }
    console.error(`${plural(paths.length, "image")} in ${dir}: ${describeListing(dir, paths)}${skipped}`);
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

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(PRETRAIN_SPEC, argv);
  if (args.help) {
    console.log(helpText(USAGE, PRETRAIN_SPEC));
    return 0;
  }
  setNumThreads(args.threads);
  const limits = limitsArg(args);
  const out = args.out;
  const ckptDir = `${out}/checkpoints`;
  let options: PretrainOptions = pretrainOptionsFrom(args);
  const { checkpointEvery, pictureEvery } = intervals(args);
  try {
    await mkdir(`${out}/pictures`, { recursive: true });
  } catch (e) {
    throw new UsageError(`--out ${out}: cannot create the folder (${(e as Error).message})`);
  }
  // One run per folder: a second would interleave the log and mix checkpoints.
  using _lock = FolderLock.acquire(out, "train.ts");
  const stale = cleanTemporaries(ckptDir);
  if (stale.length) {
    const what = plural(stale.length, "unfinished checkpoint folder");
    console.error(`removed ${what} left by an interrupted run: ${stale.join(", ")}`);
  }

  const resume = findResume(args, ckptDir);
  if (resume) {
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
  probeTorsoDtype(options.unet.torsoDtype ?? "float32", options.device, { backward: true });

  const { images, source } = await loadImages(args.data || null, args.cache, limits);
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
  // A fixed batch for the pictures, from its own stream so that training's data order is untouched.
  const pictureBatch = new RandomCropLoader(images, {
    cropSize: crop,
    seed: options.seed + 1,
    flip: false,
    padSmall: args.padSmall,
    device: options.device,
  })
    .nextBatch(Math.min(4, images.length));

  let trainer: Pretrainer;
  let seconds = 0;
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
    trainer = restoreTrainer(path, state, options, { verified: true, limits });
    seconds = state.seconds;
    console.error(`resumed from ${path} at step ${state.step}`);
  } else {
    trainer = new Pretrainer(options);
  }
  const config = {
    options,
    data: { source, images: images.length },
    threads: getNumThreads(),
    libtorch: torchVersion(),
    parameters: trainer.model.numParameters(),
  };
  await writeFile(`${out}/config.json`, JSON.stringify(config, null, 2) + "\n");
  console.error(
    `${options.method} pre-training: ${
      (config.parameters / 1e6).toFixed(2)
    }M parameters, ${images.length} images from ${source}, ` +
      `${options.steps} steps of batch ${options.batch} at ${crop}², loss ${options.loss}, ${config.threads} threads`,
  );

  // A log line past the checkpoint belongs to steps that are about to be redone.
  const logPath = `${out}/log.jsonl`;
  const log = readLog(logPath, trainer.step);
  await writeFile(logPath, log.map((e) => JSON.stringify(e) + "\n").join(""));
  const logFile = await open(logPath, "a");

  const progress = new Progress({ total: options.steps, label: options.method }, trainer.step);
  let lastSaved = trainer.step;
  try {
    while (trainer.step < options.steps) {
      const t0 = performance.now();
      const { step, loss } = tidy(() => trainer.trainStep(loader.nextBatch(options.batch)));
      const dt = (performance.now() - t0) / 1000;
      seconds += dt;
      if (!Number.isFinite(loss)) {
        throw new RunError(`step ${step}: the loss is ${loss}; lower --lr (${options.lr}) or check the data`);
      }
      const entry: LogEntry = { step, loss, imagesPerSecond: options.batch / dt, seconds };
      log.push(entry);
      await logFile.write(JSON.stringify(entry) + "\n");
      progress.update(step, { loss, "img/s": entry.imagesPerSecond });
      if (pictureEvery > 0 && (step % pictureEvery === 0 || step === options.steps)) {
        await writePicture(
          `${out}/pictures/step-${String(step).padStart(7, "0")}.png`,
          trainer,
          pictureBatch,
          args.pictureTimesteps,
        );
      }
      if (checkpointEvery > 0 && step % checkpointEvery === 0) {
        saveCheckpoint(ckptDir, trainer, { data: loader.getState(), seconds }, args.keepCheckpoints);
        lastSaved = step;
      }
    }
  } finally {
    await logFile.close();
  }
  if (lastSaved !== trainer.step) {
    saveCheckpoint(ckptDir, trainer, { data: loader.getState(), seconds }, args.keepCheckpoints);
  }

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
    steps: trainer.step,
    seconds,
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
  return 0;
}

export { main };

if (import.meta.main) await runCli("train.ts", main);
