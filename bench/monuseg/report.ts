// The experiment's report: report.json (every setting, figure and timing) and report.md, written
// for a reader who knows histology and some machine learning but not this code: what each row is,
// what was held out, what an epoch means, how long each phase took, and the paper's Table 1 beside
// the results.
import { writeErrorOverlay } from "../../src/report/error_overlay.ts";
import type { MeanStd } from "../../src/segment/metrics.ts";
import type { ExperimentResult, PredictorKind, PredictorResult } from "./experiment.ts";

/** The paper's Table 1, MoNuSeg: Dice and AJI (the authors' binary AJI), % mean ± std over 10 runs. */
export const PAPER_TABLE_1: Record<number, Partial<Record<PredictorKind, [number, number, number, number]>>> = {
  30: { mdm: [81.01, 0.35, 68.25, 0.49], ddpm: [80.31, 0.58, 67.31, 0.77], supervised: [74.56, 0.98, 60.22, 1.31] },
  3: { mdm: [79.71, 0.75, 66.43, 1.02], ddpm: [74.37, 3.08, 60.03, 3.48], supervised: [54.79, 2.5, 41.06, 2.14] },
};

const ROW_NAMES: Record<PredictorKind, string> = {
  mdm: "MDM features + pixel MLP",
  ddpm: "DDPM features + pixel MLP",
  random: "untrained UNet features + pixel MLP (control)",
  rgb: "RGB values + pixel MLP (control)",
  supervised: "supervised UNet from scratch",
};

const pct = (x: number) => (100 * x).toFixed(2);
const pm = (m: MeanStd | null | undefined) => m ? `${pct(m.mean)} ± ${Number.isFinite(m.std) ? pct(m.std) : "–"}` : "–";
const minutes = (s: number) => (s / 60).toFixed(1);

function paperCell(labels: number, kind: PredictorKind): string {
  const p = PAPER_TABLE_1[labels]?.[kind];
  return p ? `${p[0].toFixed(2)} ± ${p[1].toFixed(2)} / ${p[2].toFixed(2)} ± ${p[3].toFixed(2)}` : "";
}

function table(r: ExperimentResult, labels: number): string[] {
  const rows = r.results.filter((x) => x.labels === labels);
  const paperLabels = labels === 30 || labels === 3 ? labels : null;
  const lines = [
    `| row | runs | Dice | AJI (authors', binary) | AJI (challenge, instances) | IoU |${
      paperLabels ? ` paper Table 1, Dice / AJI (${paperLabels} labels) |` : ""
    }`,
    `|---|---|---|---|---|---|${paperLabels ? "---|" : ""}`,
  ];
  for (const x of rows) {
    const runs = x.kind === "supervised" ? `${x.runs} seeds` : `${x.runs} heads`;
    lines.push(
      `| ${ROW_NAMES[x.kind]} | ${runs} | ${pm(x.scores.dice)} | ${pm(x.scores.ajiBinaryAuthors)} | ${
        pm(x.scores.ajiInstanceChallenge)
      } | ${pm(x.scores.iouPerImage)} |${paperLabels ? ` ${paperCell(labels, x.kind)} |` : ""}`,
    );
  }
  lines.push(
    `| nuclei everywhere (trivial) | – | ${pct(r.trivialAllForegroundDice)} | | | |${paperLabels ? " |" : ""}`,
  );
  return lines;
}

const find = (r: ExperimentResult, kind: PredictorKind, labels: number) =>
  r.results.find((x) => x.kind === kind && x.labels === labels);

/** One sentence per comparison the experiment exists for, with the figures behind it. */
function verdicts(r: ExperimentResult, labels: number): string[] {
  const mdm = find(r, "mdm", labels);
  if (!mdm?.scores.dice) return [];
  const d = (x: PredictorResult | undefined) => x?.scores.dice?.mean;
  const gap = (other: PredictorKind, phrase: string) => {
    const o = d(find(r, other, labels));
    if (o === undefined) return null;
    const diff = 100 * (mdm.scores.dice!.mean - o);
    return `- MDM ${diff > 0 ? "is ahead of" : "is not ahead of"} ${phrase}: Dice ${
      pct(mdm.scores.dice!.mean)
    } against ${pct(o)} (${diff >= 0 ? "+" : ""}${diff.toFixed(2)} points).`;
  };
  return [
    gap("ddpm", "DDPM"),
    gap("random", "the untrained UNet (what pre-training buys)"),
    gap("rgb", "colour alone"),
    gap("supervised", "the supervised UNet from scratch"),
  ].filter((x): x is string => x !== null);
}

/** What the MDM features see at timesteps `ts`: the mask ratio is t / 1000 (0: the image as it is). */
function maskedInputs(ts: number[]): string {
  const one = (t: number) =>
    t === 0 ? "the image as it is (t = 0)" : `the image with ${t / 10}% of its patches blanked (t = ${t})`;
  return ts.map(one).join(" and ");
}

function describeRows(r: ExperimentResult): string[] {
  const rec = r.recipe, f = rec.features;
  const ch = (k: keyof ExperimentResult["featureChannels"]) => r.featureChannels[k] ?? "?";
  return [
    `- **${ROW_NAMES.mdm}**: the UNet pre-trained by masked diffusion (patches of 8×8 px blanked at a rate set by ` +
    `a random timestep, reconstruction scored by SSIM) is frozen; each pixel is described by the activations of ` +
    `decoder blocks ${f.blocks.join(", ")} (${ch("mdm")} numbers per pixel) of ${
      maskedInputs(f.mdmTimesteps)
    }; a small per-pixel network (MLP 128-32-2) learns nucleus or ` +
    `background from them. This is the paper's method.`,
    `- **${ROW_NAMES.ddpm}**: the same UNet, pre-trained as a denoising diffusion model (Gaussian noise, MSE) ` +
    `with the same images, steps and batch; features of decoder blocks ${
      (f.ddpmBlocks ?? f.blocks).join(", ")
    } at noise levels t = ${f.ddpmTimesteps.join(", ")} concatenated (${
      ch("ddpm")
    } numbers per pixel). The paper's main baseline.`,
    `- **${ROW_NAMES.random}**: the same UNet with the weights pre-training starts from (no training at all), ` +
    `read exactly as MDM's (${ch("random")} numbers per pixel). Its gap to MDM is what pre-training buys. ` +
    `guided-diffusion starts every residual branch at zero, so these features are a fixed bank of ` +
    `local filters of the image, not noise.`,
    `- **${ROW_NAMES.rgb}**: the same per-pixel network on the pixel's three colour values alone. Nuclei are the ` +
    `hematoxylin-dark pixels, so colour is a strong floor that useful features must clear.`,
    `- **${ROW_NAMES.supervised}**: the same UNet architecture trained from scratch, end to end, on the same ` +
    `labelled images only (no pre-training), as a user would train it: random flips and 90° turns, early ` +
    `stopping, ${rec.supervised.seeds} seeds. The paper's "UNet" row is MONAI's UNet, a different network.`,
  ];
}

function protocol(r: ExperimentResult): string[] {
  const rec = r.recipe, h = rec.heads, sv = rec.supervised, es = sv.earlyStopping;
  const mag = rec.downscale === 1
    ? "40× (full resolution)"
    : `${40 / rec.downscale}× (each image shrunk ${rec.downscale}×)`;
  const fieldOfView = rec.crop * rec.downscale;
  const labelled = Object.entries(r.split.labelled).map(([n, names]) =>
    `${n} labels: ${
      names.length <= 3 ? names.join(", ") : `${names[0]} … ${names.at(-1)} (the first ${names.length} in sorted order)`
    }`
  );
  const pre = Object.values(r.pretraining);
  const lines = [
    "### Data and what was held out",
    "",
    `- Pre-training: the ${r.split.pretrainingImages} MoNuSeg 2018 images (30 train + 14 test), labels unused, as the ` +
    `paper does. The networks see the images at ${mag}; a ${rec.crop}² crop covers ${fieldOfView}×${fieldOfView} ` +
    `px of the original 1000×1000 tile (${(fieldOfView * 0.25).toFixed(0)} µm at 0.25 µm/px).`,
    `- Labelled training images: ${labelled.join("; ")}. The 3-label set is the paper's 10%.`,
    r.split.evaluation === "test"
      ? `- Evaluation: all ${r.split.evalImages.length} test images, whose labels no training step saw. ` +
        `Predictions are made at the networks' magnification and scored at full resolution against the ` +
        `official polygons (${r.split.evalImages.length} images).`
      : `- Evaluation (validation run): the last ${r.split.evalImages.length} training images ` +
        `(${r.split.evalImages.join(", ")}), held out from every labelled set; the test split was not used.`,
    "",
    "### Pre-training",
    "",
    `- UNet: ${(r.parameters / 1e6).toFixed(2)}M parameters, ${rec.unet.modelChannels} base channels, channel ` +
    `multipliers ${(rec.unet.channelMult ?? []).join(", ")}, ${rec.unet.numResBlocks} residual block(s) per level, ` +
    `attention at ${(rec.unet.attentionResolutions ?? []).join(", ")} px, torso ${rec.unet.torsoDtype ?? "float32"}.`,
    ...pre.map((p) =>
      `- ${p!.method.toUpperCase()}: ${p!.steps} steps of ${p!.batch} random ${p!.crop}² crops (left-right flips) = ` +
      `${p!.steps * p!.batch} crops, AdamW lr ${rec.pretrain.lr}, loss ${
        p!.method === "mdm" ? "SSIM" : "MSE on the noise"
      } ` +
      `${p!.lossFirstTenth.toFixed(4)} → ${p!.lossLastTenth.toFixed(4)} (first → last tenth of the steps); ` +
      `${
        p!.reused
          ? `weights from an earlier run of this recipe (${r.settings.pretrained}), whose pre-training took ` +
            `${minutes(p!.seconds)} min, ${p!.imagesPerSecond.toFixed(1)} crops/s`
          : `${minutes(p!.seconds)} min, ${p!.imagesPerSecond.toFixed(1)} crops/s`
      }. ` +
      `The raw (not averaged) weights are used, as the paper did for MoNuSeg.`
    ),
    "",
    "### Pixel heads (what an epoch means)",
    "",
    `- Each step draws ${h.batch} random ${rec.crop}² crops from the labelled images (the image for each crop ` +
    `drawn at random), computes their features afresh (new random mask for MDM) and updates the heads on ` +
    `${
      h.pixelFraction === 1
        ? "all their pixels"
        : `${100 * h.pixelFraction}% of their pixels, drawn at random each step (a CPU economy; the paper uses all)`
    }. ` +
    `Adam, lr ${h.lr}, cross-entropy.`,
    `- An **epoch** is one pass of a loader that gives one crop per labelled image, batched by ${h.batch}, as the ` +
    `authors' loader does: ceil(images / ${h.batch}) steps, i.e. **1 step of ${h.batch} crops for 3 labelled ` +
    `images** (≈${
      (h.batch / 3).toFixed(1)
    } crops per image) and **2 steps for 30 images**. The epoch loss is the mean ` +
    `over its steps.`,
    `- Early stopping as the paper's: at least ${h.minEpochs} epochs, then stop once the epoch loss has not ` +
    `improved for ${h.patience} epochs; at most ${h.maxEpochs} epochs. ${h.count} heads per feature type and label ` +
    `count, ${
      h.together
        ? "trained together on the same crops (features computed once per step for all of them), each with its " +
          "own seeded initial weights, optimizer and stopping; the paper trains its 10 heads one by one, so its " +
          "spread between heads includes the crops' and ours does not."
        : "trained one by one, each on its own random crops, as the paper."
    }`,
    `- After training, each head's batch-norm statistics are recomputed over a few batches of training crops.`,
    "",
    "### Supervised UNet",
    "",
    `- ${sv.seeds} seeds; each step ${sv.batch} random ${rec.crop}² crops of the labelled images${
      sv.augment ? ", each flipped and turned by a random multiple of 90° with its label" : ""
    }; AdamW lr ${sv.lr}, ${sv.loss === "ce" ? "cross-entropy" : "cross-entropy + soft Dice"}.`,
    es.monitor === "train-loss"
      ? `- Trained to convergence on its own schedule: every ${es.every} steps the mean training loss of those ` +
        `steps is checked; training stops once it has not improved for ${es.patience} checks (not before step ` +
        `${es.minSteps ?? 0}), or at ${sv.maxSteps} steps.`
      : `- Early stopping on held-out rows: the bottom ${100 * (es.heldOutFraction ?? 0.2)}% of each labelled ` +
        `image is kept out of training; its loss is checked every ${es.every} steps; training stops after ` +
        `${es.patience} checks without improvement (or ${sv.maxSteps} steps) and keeps the best weights.`,
    "",
    "### Evaluation and metrics",
    "",
    `- Sliding windows of ${rec.crop}² with overlap ${rec.overlap}, logits blended with a Gaussian (sigma = ` +
    `${0.125 * rec.crop} px), as the paper; ${
      rec.downscale > 1
        ? `the blended logits are enlarged ${rec.downscale}× (bilinear) to 1000×1000 before the argmax; `
        : ""
    }each window's features are computed once for every head of that feature type.`,
    "- **Dice** = 2·TP / (2·TP + FP + FN) of the nucleus pixels, per image, averaged over the images.",
    "- **AJI (authors', binary)**: what the MDM authors computed and published as AJI: the AJI formula applied to " +
    "the binary masks, which makes it the per-image foreground IoU. Comparable with the paper's Table 1.",
    "- **AJI (challenge, instances)**: the MoNuSeg challenge's Aggregated Jaccard Index on instances: each annotated " +
    "nucleus is matched to the predicted nucleus (4-connected component of the prediction) it overlaps most; touching " +
    "nuclei merged into one blob are punished. Semantic segmentation without a separation step scores low here; the " +
    "paper does not report it.",
    "- **IoU** = TP / (TP + FP + FN) per image, averaged (equal to the authors' AJI up to rounding).",
    "- Mean ± std: over the heads (feature rows) or over the seeds (supervised rows) of each run's mean over the images.",
  ];
  return lines;
}

function trainingDetails(r: ExperimentResult): string[] {
  const lines = [
    "| row | labels | epochs (per head) or steps (per seed) | final training loss | seconds |",
    "|---|---|---|---|---|",
  ];
  for (const x of r.results) {
    if (x.heads) {
      lines.push(
        `| ${ROW_NAMES[x.kind]} | ${x.labels} | ${
          x.heads.reports.map((h) => h.epochs).join(", ")
        } epochs (${x.heads.stepsPerEpoch} step${x.heads.stepsPerEpoch > 1 ? "s" : ""} each)${
          x.heads.timedOut ? ", time limit" : ""
        } | ${x.heads.reports.map((h) => h.finalLoss.toFixed(3)).join(", ")} | ${x.heads.seconds.toFixed(0)} |`,
      );
    } else if (x.supervised) {
      lines.push(
        `| ${ROW_NAMES[x.kind]} | ${x.labels} | ${
          x.supervised.map((s) =>
            `${s.steps} (${
              s.stoppedBy === "plateau" ? "converged" : s.stoppedBy === "steps" ? "step cap" : "time limit"
            })`
          ).join(", ")
        } steps | ${x.supervised.map((s) => s.finalLoss.toFixed(3)).join(", ")} | ${
          x.supervised.reduce((a, s) => a + s.seconds, 0).toFixed(0)
        } |`,
      );
    }
  }
  return lines;
}

/** The report in both forms; overlays are written to `dir`/overlays. */
export async function writeMonusegReport(dir: string, r: ExperimentResult): Promise<void> {
  await Deno.mkdir(`${dir}/overlays`, { recursive: true });
  const labelSets = [...new Set(r.results.map((x) => x.labels))].sort((a, b) => a - b);
  const predictionNames = (labels: number) =>
    (["mdm", "ddpm", "random", "rgb", "supervised"] as const).map((k) => `${k}/${labels}`).filter((k) =>
      r.overlays[0]?.panels.predictions[k]
    );
  const overlayFiles: { file: string; name: string; rows: { labels: number; columns: string[] }[] }[] = [];
  for (const [i, o] of r.overlays.entries()) {
    const rows = labelSets.map(predictionNames);
    const file = `overlays/${String(i).padStart(2, "0")}-${o.name}.png`;
    await writeErrorOverlay(`${dir}/${file}`, o.panels, rows);
    overlayFiles.push({
      file,
      name: o.name,
      rows: labelSets.map((labels, j) => ({
        labels,
        columns: rows[j].map((n) => ROW_NAMES[n.split("/")[0] as PredictorKind]),
      })),
    });
  }

  const title = r.split.evaluation === "test" ? "test split" : "validation (held-out training images)";
  const total = r.wallSeconds;
  const reusedPretraining = Object.values(r.pretraining).filter((p) => p!.reused).map((p) => p!);
  const fromScratch = total + reusedPretraining.reduce((t, p) => t + p.seconds, 0);
  const md = [
    `# MoNuSeg 2018: few-shot nuclei segmentation from masked-diffusion features (\`${r.recipe.scale}\` scale, ${title})`,
    "",
    `Produced by \`deno run -A bench/monuseg.ts --scale ${r.recipe.scale}${
      r.settings.validate ? " --validate" : ""
    }\` ` +
    `in ${minutes(total)} min on ${r.settings.device} (${r.settings.threads} threads). ${r.recipe.rationale}`,
    "",
    "The question: do the features of a UNet pre-trained by masked diffusion (MDM), on the unlabelled images, let a " +
    "small per-pixel classifier segment nuclei from very few labelled images, better than the denoising-diffusion " +
    "features (DDPM), than an untrained network, than colour alone, and than a UNet trained from scratch on the same " +
    "labels? The paper's answer (Table 1) is yes at both 3 and 30 labelled images.",
    "",
  ];
  for (const labels of labelSets) {
    md.push(
      `## ${labels} labelled image${labels > 1 ? "s" : ""}${
        labels === 3 ? " (the paper's 10%)" : labels === 30 ? " (100%)" : ""
      }`,
      "",
    );
    md.push(...table(r, labels), "");
    const v = verdicts(r, labels);
    if (v.length) md.push(...v, "");
  }
  md.push(
    `Scores in %, on ${r.split.evalImages.length} ${r.split.evaluation} images at full resolution. The paper's ` +
      "column is its Table 1 (mean ± std over 10 runs at 192 channels, 256² crops, 5k steps of 128 crops); it has no " +
      "untrained or RGB control, and its supervised row is MONAI's UNet. Its MAE row, for reference: 76.19 / 61.61 " +
      "(3 labels), 73.68 / 58.62 (30 labels).",
    "",
    "## What each row is",
    "",
    ...describeRows(r),
    "",
    "## How it was run",
    "",
    ...protocol(r),
    "",
    "### Training as it went",
    "",
    ...trainingDetails(r),
    "",
    "## Timings",
    "",
    "| phase | wall clock, s | minutes | CPU time, s |",
    "|---|---|---|---|",
    ...r.timings.map((t) =>
      `| ${t.phase} | ${t.seconds.toFixed(1)} | ${minutes(t.seconds)} | ${t.cpuSeconds.toFixed(0)} |`
    ),
    `| **total (wall clock)** | ${total.toFixed(0)} | ${minutes(total)} | ${r.cpuSeconds.toFixed(0)} |`,
    ...reusedPretraining.map((p) =>
      `| pre-train ${p.method.toUpperCase()} in the earlier run (not in the total) | ${p.seconds.toFixed(1)} | ` +
      `${minutes(p.seconds)} | |`
    ),
    ...(reusedPretraining.length
      ? [
        `| **the recipe from scratch (total + the earlier pre-training)** | ${fromScratch.toFixed(0)} | ` +
        `${minutes(fromScratch)} | |`,
      ]
      : []),
    "",
    `${r.settings.threads} libtorch threads on ${r.settings.device}. The machine may have been shared with other ` +
      "jobs: the wall clock then grows with their load, the CPU time (this process's, all threads) much less; " +
      `with ${r.settings.threads} threads busy a quiet machine needs about CPU time / ${r.settings.threads} of wall clock.`,
    "",
  );
  if (overlayFiles.length) {
    const first = overlayFiles[0];
    md.push(
      "## Overlays",
      "",
      `A ${r.overlays[0].panels.size}×${r.overlays[0].panels.size} px region (full resolution, 40×) of test images. ` +
        "One row per label count (" + first.rows.map((x) =>
          `row ${first.rows.indexOf(x) + 1}: ${x.labels} labels`
        ).join(", ") +
        "). Columns: the image (first row only); the ground truth (white); then " +
        first.rows[0].columns.join(", ") + ", each coloured against the truth: **white** = nucleus found, **red** = " +
        "false alarm, **blue** = nucleus pixel missed. Feature rows show their first head, the supervised UNet its " +
        "first seed.",
      "",
    );
    for (const o of overlayFiles) md.push(`**${o.name}**`, "", `![${o.name}](${o.file})`, "");
  }
  await Deno.writeTextFile(`${dir}/report.md`, md.join("\n"));
  const { overlays: _, ...json } = r;
  await Deno.writeTextFile(
    `${dir}/report.json`,
    JSON.stringify({ ...json, overlays: overlayFiles, paperTable1: PAPER_TABLE_1 }, null, 2) + "\n",
  );
}
