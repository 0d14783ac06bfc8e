// Self-supervised pre-training of a guided-diffusion UNet: MDM (timestep-controlled patch masking,
// SSIM loss) or the DDPM baseline. With no arguments it runs a short, real pre-training on the
// embedded synthetic nuclei dataset.
//
//   deno run -A train.ts [--help] [flags]
import { getNumThreads, setNumThreads, tidy, torchVersion } from "./mod.ts";
import { helpText, parseArgs, runCli, UsageError } from "./src/cli/args.ts";
import { intervals, PRETRAIN_SPEC, pretrainOptionsFrom } from "./src/cli/pretrain_flags.ts";
import { listImages, type NamedImage, RandomCropLoader } from "./src/data/folder.ts";
import { readImage, writePng } from "./src/data/image.ts";
import { ensureSyntheticDataset } from "./src/data/synthetic.ts";
import { saveSafetensors } from "./src/io/safetensors.ts";
import { listCheckpoints, readTrainState, restoreTrainer, saveCheckpoint } from "./src/mdm/train_state.ts";
import { reconstruct } from "./src/mdm/pictures.ts";
import { Pretrainer, type PretrainOptions } from "./src/mdm/pretrain.ts";
import { grid, tensorToImages } from "./src/report/grid.ts";
import { linePlotSvg } from "./src/report/plot.ts";
import { Progress } from "./src/report/progress.ts";

const USAGE = `Pre-trains a UNet with masked diffusion (MDM) or DDPM.

usage: deno run -A train.ts [flags]

Without --data it trains on the embedded synthetic nuclei dataset (generated once into --cache).
Outputs in --out: log.jsonl (per-step metrics), pictures/ (original | masked input | reconstruction
at several t), checkpoints/ (resumable with --resume), model.safetensors and ema.safetensors (final
weights, guided-diffusion's keys), loss.svg and summary.json.`;

interface LogEntry {
  step: number;
  loss: number;
  imagesPerSecond: number;
  seconds: number;
}

async function loadImages(dir: string | null, cache: string): Promise<{ images: NamedImage[]; source: string }> {
  let paths: string[];
  let source: string;
  if (dir) {
    try {
      paths = await listImages(dir);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw new UsageError(`--data ${dir}: no such folder`);
      throw e;
    }
    if (paths.length === 0) throw new UsageError(`--data ${dir}: no .png/.jpg/.jpeg/.tif/.tiff images found`);
    source = dir;
  } else {
    // The paper pre-trains on the train and test images of the medical sets, labels unused.
    const set = await ensureSyntheticDataset(cache, {});
    paths = [...set.train.images, ...set.test.images];
    source = `synthetic (${cache})`;
  }
  const images: NamedImage[] = [];
  for (const p of paths) images.push({ name: p, image: await readImage(p) });
  return { images, source };
}

function readLog(path: string, upTo: number): LogEntry[] {
  try {
    // A process killed mid-write can leave a torn last line: it belongs to a step being redone.
    const parse = (l: string) => {
      try {
        return [JSON.parse(l) as LogEntry];
      } catch {
        return [];
      }
    };
    return Deno.readTextFileSync(path).split("\n").filter((l) => l.trim()).flatMap(parse)
      .filter((e) => e.step <= upTo);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  }
}

async function writePicture(
  path: string,
  trainer: Pretrainer,
  batch: Parameters<typeof reconstruct>[1],
  ts: number[],
) {
  const rows = tidy(() => {
    const recs = reconstruct(trainer, batch, ts);
    const originals = tensorToImages(batch);
    const columns = recs.map((r) => [tensorToImages(r.input), tensorToImages(r.output)]);
    return originals.map((o, i) => [o, ...columns.flatMap(([inp, out]) => [inp[i], out[i]])]);
  });
  await writePng(path, grid(rows));
}

async function main(argv: string[]): Promise<number> {
  const args = parseArgs(PRETRAIN_SPEC, argv);
  if (args.help) {
    console.log(helpText(USAGE, PRETRAIN_SPEC));
    return 0;
  }
  setNumThreads(args.threads);
  const out = args.out;
  const ckptDir = `${out}/checkpoints`;
  await Deno.mkdir(`${out}/pictures`, { recursive: true });

  let options: PretrainOptions = pretrainOptionsFrom(args);
  const { checkpointEvery, pictureEvery } = intervals(args);
  let resumeFrom: string | null = null;
  if (args.resume || args.resumeFrom) {
    resumeFrom = args.resumeFrom || listCheckpoints(ckptDir).at(-1)?.path || null;
    if (!resumeFrom) throw new UsageError(`--resume: no checkpoint in ${ckptDir}`);
    // The checkpoint decides everything that shapes the model and its training; --steps may extend it.
    options = { ...readTrainState(resumeFrom).options, steps: options.steps };
  }

  const { images, source } = await loadImages(args.data || null, args.cache);
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
  if (resumeFrom) {
    const state = readTrainState(resumeFrom);
    trainer = restoreTrainer(resumeFrom, state, options);
    loader.setState(state.data as ReturnType<RandomCropLoader["getState"]>);
    seconds = state.seconds;
    console.error(`resumed from ${resumeFrom} at step ${state.step}`);
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
  await Deno.writeTextFile(`${out}/config.json`, JSON.stringify(config, null, 2) + "\n");
  console.error(
    `${options.method} pre-training: ${
      (config.parameters / 1e6).toFixed(2)
    }M parameters, ${images.length} images from ${source}, ` +
      `${options.steps} steps of batch ${options.batch} at ${crop}², loss ${options.loss}, ${config.threads} threads`,
  );

  // A log line past the checkpoint belongs to steps that are about to be redone.
  const logPath = `${out}/log.jsonl`;
  const log = readLog(logPath, trainer.step);
  await Deno.writeTextFile(logPath, log.map((e) => JSON.stringify(e) + "\n").join(""));
  const logFile = await Deno.open(logPath, { append: true });

  const progress = new Progress({ total: options.steps, label: options.method }, trainer.step);
  let lastSaved = trainer.step;
  try {
    while (trainer.step < options.steps) {
      const t0 = performance.now();
      const { step, loss } = tidy(() => trainer.trainStep(loader.nextBatch(options.batch)));
      const dt = (performance.now() - t0) / 1000;
      seconds += dt;
      if (!Number.isFinite(loss)) throw new Error(`step ${step}: the loss is ${loss}; lower --lr or check the data`);
      const entry: LogEntry = { step, loss, imagesPerSecond: options.batch / dt, seconds };
      log.push(entry);
      await logFile.write(new TextEncoder().encode(JSON.stringify(entry) + "\n"));
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
    logFile.close();
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
    await Deno.writeTextFile(
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
  await Deno.writeTextFile(`${out}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
  console.error(
    `done: ${trainer.step} steps in ${seconds.toFixed(0)} s (${summary.imagesPerSecond.toFixed(1)} images/s); ` +
      `loss ${summary.lossFirstTenth.toFixed(4)} → ${
        summary.lossLastTenth.toFixed(4)
      }; weights in ${out}/model.safetensors`,
  );
  return 0;
}

if (import.meta.main) await runCli("train.ts", main);
