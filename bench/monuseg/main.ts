// bench/monuseg.ts's flags: the chosen recipe, the overrides, and the run (see bench/monuseg.ts).
import { getNumThreads, setNumThreads } from "../../mod.ts";
import { deviceArg, helpText, parseArgs, runMain, type Spec, UsageError } from "../../src/cli/args.ts";
import { FEATURE_KINDS, type PredictorKind, runExperiment } from "./experiment.ts";
import { RECIPES } from "./recipes.ts";
import { writeMonusegReport } from "./report.ts";

const USAGE = `Runs the MDM paper's MoNuSeg experiment end to end and writes a report.

usage: deno run -A bench/monuseg.ts --scale quick|cpu|gpu|paper [flags]

Scales: quick (a first look: 10 minutes on two CPU cores), cpu (about an hour on two cores: the
recipe whose report is in docs/monuseg/), gpu (one call of at most 8 minutes on one H200), paper (the
paper's settings: hours on a GPU). The other flags override a scale's settings, e.g. for a smoke test
of the gpu recipe's code path on a CPU: --scale gpu --device cpu --steps 2 --batch 2 --head-batch 2
--max-epochs 1 --heads 1 --seeds 1 --supervised-steps 2 --supervised-batch 2 --labels 3
--downscale 2 --eval-images 1. Writes report.md, report.json, overlays/ and pretrain/ (weights) to --out.`;

const SPEC = {
  scale: { type: "string", help: "the recipe", default: "quick", choices: Object.keys(RECIPES) },
  data: { type: "string", help: "the MoNuSeg 2018 folder (train/, test/)", default: "../shared/data/monuseg" },
  out: { type: "string", help: "output folder (default runs/monuseg-<scale>)" },
  device: { type: "string", help: "cpu, cuda or cuda:N (default: the scale's)" },
  threads: { type: "int", help: "libtorch threads (default: all cores)", min: 1, max: 1024 },
  validate: {
    type: "bool",
    help: "evaluate on the last 6 training images instead of the test split (labelled sets capped at 24)",
    default: false,
  },
  pretrained: { type: "string", help: "reuse the pre-trained weights of an earlier run's --out folder" },
  only: {
    type: "string",
    help: `predictors to run, comma-separated from ${[...FEATURE_KINDS, "supervised"].join(", ")} (default: all)`,
  },
  labels: { type: "ints", help: "label counts (default: the scale's, 3,30)", min: 1 },
  downscale: {
    type: "int",
    help: "shrink the images by this factor for the networks (default: the scale's)",
    min: 1,
    max: 8,
  },
  steps: { type: "int", help: "pre-training steps of each method", min: 1 },
  batch: { type: "int", help: "pre-training crops per step (and per forward pass)", min: 1 },
  blocks: { type: "ints", help: "decoder blocks read for the MDM and untrained-UNet features", min: 0 },
  ddpmBlocks: { type: "ints", help: "decoder blocks read for the DDPM features (default: the scale's)", min: 0 },
  mdmT: { type: "ints", help: "MDM feature timesteps", min: 0, max: 999 },
  ddpmT: { type: "ints", help: "DDPM feature timesteps", min: 0, max: 999 },
  heads: { type: "int", help: "heads per feature type and label count", min: 1 },
  headBatch: { type: "int", help: "crops per head training step", min: 1 },
  maxEpochs: { type: "int", help: "head epochs at most (min epochs and patience shrink to fit)", min: 1 },
  pixelFraction: { type: "float", help: "share of each step's pixels the heads train on", min: 0.001, max: 1 },
  seeds: { type: "int", help: "supervised UNet seeds", min: 1 },
  supervisedBatch: { type: "int", help: "crops per supervised UNet step", min: 1 },
  supervisedSteps: { type: "int", help: "supervised UNet steps at most", min: 1 },
  evalImages: { type: "int", help: "evaluate only the first N evaluation images", min: 1 },
  overlays: { type: "int", help: "evaluation images drawn as overlays", default: 3, min: 0 },
  verbose: { type: "bool", help: "print the stack trace of an unexpected error", default: false },
} as const satisfies Spec;

/** Parses the command line, runs the experiment and writes its report; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const a = parseArgs(SPEC, argv);
  if (a.help) {
    console.log(helpText(USAGE, SPEC));
    return 0;
  }
  const base = RECIPES[a.scale];
  const device = deviceArg(a.device ?? base.device);
  setNumThreads(a.threads ?? Math.max(1, navigator.hardwareConcurrency ?? 1));
  const recipe = structuredClone(base);
  if (a.labels) recipe.labelSets = a.labels;
  if (a.downscale) recipe.downscale = a.downscale;
  if (a.steps) recipe.pretrain.steps = a.steps;
  if (a.batch) recipe.pretrain.batch = recipe.pretrain.microBatch = a.batch;
  if (a.headBatch) recipe.heads.batch = a.headBatch;
  if (a.supervisedBatch) recipe.supervised.batch = a.supervisedBatch;
  if (a.blocks) recipe.features.blocks = a.blocks;
  if (a.ddpmBlocks) recipe.features.ddpmBlocks = a.ddpmBlocks;
  if (a.mdmT) recipe.features.mdmTimesteps = a.mdmT;
  if (a.ddpmT) recipe.features.ddpmTimesteps = a.ddpmT;
  if (a.heads) recipe.heads.count = a.heads;
  if (a.maxEpochs) {
    recipe.heads.maxEpochs = a.maxEpochs;
    recipe.heads.minEpochs = Math.min(recipe.heads.minEpochs, a.maxEpochs);
    recipe.heads.patience = Math.min(recipe.heads.patience, a.maxEpochs);
  }
  if (a.pixelFraction) recipe.heads.pixelFraction = a.pixelFraction;
  if (a.seeds) recipe.supervised.seeds = a.seeds;
  if (a.supervisedSteps) {
    recipe.supervised.maxSteps = a.supervisedSteps;
    const es = recipe.supervised.earlyStopping;
    es.every = Math.min(es.every, a.supervisedSteps);
    es.minSteps = Math.min(es.minSteps ?? 0, a.supervisedSteps);
  }
  const kinds = (a.only ? a.only.split(",").map((s) => s.trim()) : [...FEATURE_KINDS, "supervised"]) as PredictorKind[];
  for (const k of kinds) {
    if (![...FEATURE_KINDS, "supervised"].includes(k)) {
      throw new UsageError(
        `--only: unknown predictor ${JSON.stringify(k)} (known: ${FEATURE_KINDS.join(", ")}, supervised)`,
      );
    }
  }
  const out = a.out ?? `runs/monuseg-${a.scale}${a.validate ? "-validate" : ""}`;
  const root = a.data.replace(/\/+$/, "");
  if (!(await Deno.stat(root).catch(() => null))?.isDirectory) {
    throw new UsageError(`--data ${root}: no such folder (the MoNuSeg 2018 folder with train/ and test/)`);
  }
  if (a.pretrained && !(await Deno.stat(`${a.pretrained}/pretrain/summary.json`).catch(() => null))?.isFile) {
    throw new UsageError(`--pretrained ${a.pretrained}: no pretrain/summary.json there (the --out of an earlier run)`);
  }
  console.error(
    `MoNuSeg experiment, scale ${a.scale}: ${kinds.join(", ")}; labels ${recipe.labelSets.join(", ")}; ` +
      `${device}, ${getNumThreads()} threads; output in ${out}`,
  );
  const result = await runExperiment({
    recipe,
    root,
    out,
    device,
    threads: getNumThreads(),
    validate: a.validate,
    pretrained: a.pretrained,
    kinds,
    evalImages: a.evalImages,
    overlays: a.overlays,
  });
  await writeMonusegReport(out, result);
  console.log(`report: ${out}/report.md (${(result.wallSeconds / 60).toFixed(1)} min)`);
  return 0;
}

/** `main` with the programs' error reporting (one line, exit code 2 for usage errors). */
export function run(argv: string[]): Promise<number> {
  return runMain("bench/monuseg.ts", main, argv);
}
