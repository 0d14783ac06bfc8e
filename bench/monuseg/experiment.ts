// The MoNuSeg experiment end to end: pre-train MDM and DDPM with one budget, train pixel heads on
// four kinds of features (MDM, DDPM, the same UNet untrained, the RGB values) and the supervised
// UNet from scratch at each label count, evaluate all of them on the evaluation images (each
// window's features computed once for every head of that feature type), and collect what the
// report needs: scores, training details, timings and overlay panels.
import { keep } from "../../src/scope.ts";
import { randn } from "../../src/create.ts";
import type { Device } from "../../src/device.ts";
import { Generator } from "../../src/random.ts";
import type { UNet } from "../../src/models/unet/unet.ts";
import { type BaselineResult, predictBaseline, trainBaseline } from "../../src/segment/baseline.ts";
import type { PixelClassifier } from "../../src/segment/classifier.ts";
import {
  decoderPixelFeatures,
  type FeatureOptions,
  type PixelFeatures,
  rgbPixelFeatures,
} from "../../src/segment/features.ts";
import { type HeadReport, type Labelled, predictHeadsWith, trainHeadGroup } from "../../src/segment/heads.ts";
import { binaryScores, type BinarySummary, type ImageScores, summarize } from "../../src/segment/medical.ts";
import { dice } from "../../src/segment/metrics.ts";
import { type OverlayPanels, overlayPanels } from "../../src/report/error_overlay.ts";
import { loadUnlabelled, openSplits, type ScaledExample } from "./data.ts";
import { initialModel, loadPretrained, pretrain, pretrainOptions, type PretrainSummary } from "./pretrain.ts";
import type { Recipe } from "./recipes.ts";

/** The four feature types a pixel head is trained on. */
export const FEATURE_KINDS = ["mdm", "ddpm", "random", "rgb"] as const;
export type FeatureKind = typeof FEATURE_KINDS[number];
export type PredictorKind = FeatureKind | "supervised";

/** What the command line decided, beside the recipe. */
export interface RunSettings {
  recipe: Recipe;
  root: string;
  out: string;
  device: Device;
  threads: number;
  /** Evaluate on held-out training images (the last 6) instead of the test split; labelled sets capped at 24. */
  validate: boolean;
  /** Reuse pre-trained weights from this earlier run's folder (its pretrain/ subfolder). */
  pretrained?: string;
  /** Which predictors to train and evaluate. */
  kinds: PredictorKind[];
  /** Evaluate only the first N evaluation images. */
  evalImages?: number;
  /** Evaluation images drawn as overlays. */
  overlays: number;
}

/** The scores and training record of one predictor type at one label count. */
export interface PredictorResult {
  kind: PredictorKind;
  labels: number;
  /** Heads, or supervised seeds. */
  runs: number;
  scores: BinarySummary;
  /** Per run: the mean per-image scores (Dice, IoU, binary AJI, instance AJI). */
  perRun: { dice: number; iou: number; ajiBinary: number; ajiInstance: number | null }[];
  heads?: { reports: HeadReport[]; stepsPerEpoch: number; seconds: number; timedOut: boolean; features: string };
  supervised?: {
    steps: number;
    bestStep: number;
    stoppedBy: BaselineResult["stoppedBy"];
    seconds: number;
    finalLoss: number;
  }[];
}

export interface ExperimentResult {
  settings: Omit<RunSettings, "recipe">;
  recipe: Recipe;
  split: {
    evaluation: "test" | "validation";
    evalImages: string[];
    labelled: Record<number, string[]>;
    pretrainingImages: number;
  };
  pretraining: Partial<Record<"mdm" | "ddpm", Omit<PretrainSummary, "losses">>>;
  parameters: number;
  featureChannels: Partial<Record<FeatureKind, number>>;
  results: PredictorResult[];
  trivialAllForegroundDice: number;
  timings: { phase: string; seconds: number; cpuSeconds: number }[];
  cpuSeconds: number;
  overlays: { name: string; panels: OverlayPanels }[];
  wallSeconds: number;
}

/** This process's CPU time (user + system), seconds; NaN where /proc is not available. */
function cpuSeconds(): number {
  try {
    const fields = Deno.readTextFileSync("/proc/self/stat").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return NaN;
  }
}

/**
 * A phase timer: every phase's wall time and CPU time, in order, logged as it ends. On a shared
 * machine the wall time grows with the neighbours' load; the CPU time much less.
 */
class Timings {
  readonly phases: { phase: string; seconds: number; cpuSeconds: number }[] = [];
  async time<T>(phase: string, f: () => T | Promise<T>): Promise<T> {
    const t0 = performance.now(), c0 = cpuSeconds();
    const out = await f();
    this.add(phase, (performance.now() - t0) / 1000, cpuSeconds() - c0);
    return out;
  }
  add(phase: string, seconds: number, cpu: number): void {
    const row = this.phases.find((p) => p.phase === phase);
    if (row) {
      row.seconds += seconds;
      row.cpuSeconds += cpu;
    } else this.phases.push({ phase, seconds, cpuSeconds: cpu });
    console.error(`[${phase}] ${seconds.toFixed(1)} s (CPU ${cpu.toFixed(1)} s)`);
  }
}

const HELD_OUT_VALIDATION = 6;
const log = (line: string) => console.error(line);

/** Runs the whole experiment; see the file comment. */
export async function runExperiment(s: RunSettings): Promise<ExperimentResult> {
  const t0 = performance.now(), c0 = cpuSeconds();
  const { recipe, device } = s;
  const timings = new Timings();
  const kinds = new Set(s.kinds);
  const needs = (k: PredictorKind) => kinds.has(k);
  await Deno.mkdir(`${s.out}/pretrain`, { recursive: true });

  // Pre-training (or the weights of an earlier run).
  const pretraining: ExperimentResult["pretraining"] = {};
  const models: Partial<Record<"mdm" | "ddpm" | "random", UNet>> = {};
  let pretrainingImages = 44;
  const methods = (["mdm", "ddpm"] as const).filter((m) => needs(m));
  if (methods.length) {
    let steps = recipe.pretrain.steps;
    if (s.pretrained) {
      const previous = JSON.parse(await Deno.readTextFile(`${s.pretrained}/pretrain/summary.json`));
      for (const m of methods) {
        const opts = pretrainOptions(recipe, m, device, previous[m].steps);
        const r = loadPretrained(opts, `${s.pretrained}/pretrain/${m}.safetensors`, previous[m]);
        models[m] = r.model;
        pretraining[m] = r.summary;
      }
    } else {
      const images = await timings.time(
        "read and downscale the 44 images",
        () => loadUnlabelled(s.root, recipe.downscale, log),
      );
      pretrainingImages = images.length;
      for (const m of methods) {
        const opts = pretrainOptions(recipe, m, device, steps);
        // DDPM gets exactly MDM's steps, also when a time limit cut MDM short.
        const r = await timings.time(
          `pre-train ${m.toUpperCase()}`,
          () =>
            pretrain(
              images,
              opts,
              `${s.out}/pretrain/${m}.safetensors`,
              m === "mdm" ? recipe.pretrain.timeLimitSeconds : undefined,
            ),
        );
        steps = r.summary.steps;
        models[m] = r.model;
        const { losses: _, ...summary } = r.summary;
        pretraining[m] = summary;
      }
      await Deno.writeTextFile(`${s.out}/pretrain/summary.json`, JSON.stringify(pretraining, null, 2) + "\n");
    }
  }
  if (needs("random") || needs("supervised") || !methods.length) {
    models.random = initialModel(pretrainOptions(recipe, "mdm", device, 1));
  }
  const parameters = (models.mdm ?? models.random!).numParameters();

  // Feature sources.
  using noiseGen = new Generator(0, device);
  const ddpmNoise = keep(randn([1, 3, recipe.crop, recipe.crop], { device, generator: noiseGen }));
  const decoder = (model: UNet, method: "mdm" | "ddpm"): PixelFeatures => {
    const opts: Omit<FeatureOptions, "generator"> = {
      method,
      blocks: method === "ddpm" ? recipe.features.ddpmBlocks ?? recipe.features.blocks : recipe.features.blocks,
      timesteps: method === "mdm" ? recipe.features.mdmTimesteps : recipe.features.ddpmTimesteps,
      l2Normalize: true,
      noise: method === "ddpm" ? ddpmNoise : undefined,
      patchSize: 8,
      diffusionSteps: 1000,
      maskRatio: "release",
      schedule: "linear",
    };
    return decoderPixelFeatures(model, opts);
  };
  const sources: Partial<Record<FeatureKind, PixelFeatures>> = {};
  if (needs("mdm")) sources.mdm = decoder(models.mdm!, "mdm");
  if (needs("ddpm")) sources.ddpm = decoder(models.ddpm!, "ddpm");
  // The untrained UNet read exactly as MDM's: same blocks, same timesteps.
  if (needs("random")) sources.random = decoder(models.random!, "mdm");
  if (needs("rgb")) sources.rgb = rgbPixelFeatures();

  // Labelled images and the evaluation split.
  const splits = await openSplits(s.root, recipe.downscale);
  const trainable = s.validate ? splits.trainNames.length - HELD_OUT_VALIDATION : splits.trainNames.length;
  const labelSets = [...new Set(recipe.labelSets.map((l) => Math.min(l, trainable)))];
  const maxLabels = Math.max(...labelSets);
  const labelled: ScaledExample[] = [];
  await timings.time("read the labelled images", async () => {
    for (let i = 0; i < maxLabels; i++) labelled.push(await splits.train(i));
  });
  const evalIndices = s.validate
    ? Array.from({ length: HELD_OUT_VALIDATION }, (_, i) => trainable + i)
    : Array.from({ length: splits.testNames.length }, (_, i) => i);
  const evalList = evalIndices.slice(0, s.evalImages ?? evalIndices.length);
  const evalNames = evalList.map((i) => (s.validate ? splits.trainNames : splits.testNames)[i]);
  const loadEval = (i: number) => (s.validate ? splits.train(i) : splits.test(i));

  // Heads: per feature type and label count, trained together on shared crops.
  const heads = new Map<string, { classifiers: PixelClassifier[]; record: PredictorResult["heads"] }>();
  for (const labels of labelSets) {
    const data: Labelled[] = labelled.slice(0, labels).map((x) => x.scaled);
    for (const kind of FEATURE_KINDS) {
      const source = sources[kind];
      if (!source) continue;
      const name = `heads on ${kind.toUpperCase()} features, ${labels} labels`;
      const group = (count: number, seed: number) =>
        trainHeadGroup(source, data, {
          classes: 2,
          crop: recipe.crop,
          batch: recipe.heads.batch,
          lr: recipe.heads.lr,
          minEpochs: recipe.heads.minEpochs,
          maxEpochs: recipe.heads.maxEpochs,
          patience: recipe.heads.patience,
          heads: count,
          seed,
          device,
          pixelFraction: recipe.heads.pixelFraction,
          timeLimitSeconds: recipe.heads.timeLimitSeconds,
        }, (epoch, losses) => {
          if (epoch % 10 === 0) {
            log(`  epoch ${epoch}: ${losses.map((l) => (l === null ? "done" : l.toFixed(4))).join(" ")}`);
          }
        });
      const r = await timings.time(name, () => {
        log(`${name}: ${recipe.heads.count} heads, ${source.channels} channels (${source.description})`);
        if (recipe.heads.together) return group(recipe.heads.count, labels);
        // One by one, each on its own crops and masks, as the paper trains them.
        const single = Array.from({ length: recipe.heads.count }, (_, h) => group(1, labels * 1000 + h));
        return {
          classifiers: single.flatMap((x) => x.classifiers),
          reports: single.flatMap((x) => x.reports),
          stepsPerEpoch: single[0].stepsPerEpoch,
          timedOut: single.some((x) => x.timedOut),
          seconds: single.reduce((t, x) => t + x.seconds, 0),
        };
      });
      heads.set(`${kind}/${labels}`, {
        classifiers: r.classifiers,
        record: {
          reports: r.reports,
          stepsPerEpoch: r.stepsPerEpoch,
          seconds: r.seconds,
          timedOut: r.timedOut,
          features: source.description,
        },
      });
    }
  }

  // The supervised UNet from scratch, per label count and seed.
  const supervised = new Map<number, BaselineResult[]>();
  if (needs("supervised")) {
    for (const labels of labelSets) {
      const data = labelled.slice(0, labels).map((x) => x.scaled);
      const runs: BaselineResult[] = [];
      await timings.time(`supervised UNet, ${labels} labels (${recipe.supervised.seeds} seeds)`, () => {
        for (let seed = 0; seed < recipe.supervised.seeds; seed++) {
          const r = trainBaseline(data, {
            unet: recipe.unet,
            classes: 2,
            crop: recipe.crop,
            batch: recipe.supervised.batch,
            steps: recipe.supervised.maxSteps,
            lr: recipe.supervised.lr,
            loss: recipe.supervised.loss,
            seed,
            device,
            augment: recipe.supervised.augment,
            earlyStopping: recipe.supervised.earlyStopping,
            timeLimitSeconds: recipe.supervised.timeLimitSeconds,
          });
          log(
            `supervised UNet, ${labels} labels, seed ${seed}: ${r.steps} steps (${r.stoppedBy}), loss ${
              r.finalLoss.toFixed(4)
            }, ${r.seconds.toFixed(0)} s`,
          );
          runs.push(r);
        }
      });
      supervised.set(labels, runs);
    }
  }

  // Evaluation: every predictor on every evaluation image, scored at full resolution.
  const scores = new Map<string, ImageScores[][]>(); // key -> per run -> per image
  const push = (key: string, run: number, sc: ImageScores) => {
    const runs = scores.get(key) ?? [];
    (runs[run] ??= []).push(sc);
    scores.set(key, runs);
  };
  const trivial: number[] = [];
  const overlays: ExperimentResult["overlays"] = [];
  const sliding = { window: recipe.crop, overlap: recipe.overlap, batch: recipe.windowBatch };
  for (const [n, index] of evalList.entries()) {
    const ex = await timings.time("read the evaluation images", () => loadEval(index));
    const { full, scaled } = ex;
    const outputSize: [number, number] = [full.image.width, full.image.height];
    const drawn: Record<string, Uint8Array> = {};
    for (const kind of FEATURE_KINDS) {
      const source = sources[kind];
      if (!source) continue;
      const groups = labelSets.map((l) => heads.get(`${kind}/${l}`)!);
      const all = groups.flatMap((g) => g.classifiers);
      const preds = await timings.time(
        `evaluate ${kind.toUpperCase()} heads`,
        () => predictHeadsWith(source, all, scaled.image, { device, seed: 0, sliding, outputSize }),
      );
      await timings.time("score predictions", () => {
        let at = 0;
        labelSets.forEach((labels, g) => {
          groups[g].classifiers.forEach((_, h) => {
            const p = preds[at++];
            push(`${kind}/${labels}`, h, binaryScores(p, full));
            if (h === 0) drawn[`${kind}/${labels}`] = p;
          });
        });
      });
    }
    for (const [labels, runs] of supervised) {
      const preds = await timings.time(
        "evaluate the supervised UNets",
        () => runs.map((r) => predictBaseline(r.model, scaled.image, { device, sliding, outputSize })),
      );
      await timings.time("score predictions", () =>
        preds.forEach((p, seed) => {
          push(`supervised/${labels}`, seed, binaryScores(p, full));
          if (seed === 0) drawn[`supervised/${labels}`] = p;
        }));
    }
    const truth = Uint8Array.from(full.label, (v) => (v === 1 ? 1 : 0));
    trivial.push(dice(new Uint8Array(truth.length).fill(1), truth));
    if (n < s.overlays) overlays.push({ name: full.name, panels: overlayPanels(full.image, truth, drawn, 160) });
    log(`evaluated ${n + 1}/${evalList.length}: ${full.name}`);
  }

  const results: PredictorResult[] = [];
  for (const labels of labelSets) {
    for (const kind of [...FEATURE_KINDS, "supervised"] as const) {
      const runs = scores.get(`${kind}/${labels}`);
      if (!runs) continue;
      const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
      const perRun = runs.map((r) => ({
        dice: mean(r.map((x) => x.dice)),
        iou: mean(r.map((x) => x.iou)),
        ajiBinary: mean(r.map((x) => x.ajiBinary)),
        ajiInstance: r.every((x) => x.ajiInstance !== null) ? mean(r.map((x) => x.ajiInstance!)) : null,
      }));
      const row: PredictorResult = { kind, labels, runs: runs.length, scores: summarize(runs), perRun };
      if (kind === "supervised") {
        row.supervised = supervised.get(labels)!.map((r) => ({
          steps: r.steps,
          bestStep: r.bestStep,
          stoppedBy: r.stoppedBy,
          seconds: r.seconds,
          finalLoss: r.finalLoss,
        }));
      } else row.heads = heads.get(`${kind}/${labels}`)!.record;
      results.push(row);
    }
  }
  const { recipe: _, ...settings } = s;
  return {
    settings,
    recipe,
    split: {
      evaluation: s.validate ? "validation" : "test",
      evalImages: evalNames,
      labelled: Object.fromEntries(labelSets.map((l) => [l, labelled.slice(0, l).map((x) => x.full.name)])),
      pretrainingImages,
    },
    pretraining,
    parameters,
    featureChannels: Object.fromEntries(Object.entries(sources).map(([k, v]) => [k, v.channels])),
    results,
    trivialAllForegroundDice: trivial.reduce((a, b) => a + b, 0) / Math.max(1, trivial.length),
    timings: timings.phases,
    overlays,
    wallSeconds: (performance.now() - t0) / 1000,
    cpuSeconds: cpuSeconds() - c0,
  };
}
