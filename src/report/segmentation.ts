// segment.ts's reports: report.json (every setting and figure, for tools) and report.md (the
// results table, for people) from the protocols' results.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import type { Device } from "../device.ts";
import type { FacesResult } from "../segment/faces.ts";
import type { FeatureOptions } from "../segment/features.ts";
import type { HeadTrainingOptions } from "../segment/heads.ts";
import type { BinarySummary, MedicalResult } from "../segment/medical.ts";
import type { MeanStd } from "../segment/metrics.ts";

/** The run a report describes, beside the protocol's result. */
export interface RunInfo {
  dataset: string;
  checkpoint: string;
  method: "mdm" | "ddpm";
  /** The feature options (a DDPM noise tensor is left out of the report). */
  features: Omit<FeatureOptions, "generator">;
  featureChannels: number;
  environment: { libtorch: string; threads: number; device: Device };
}

/** The medical protocol's settings the report names. */
export interface MedicalSettings {
  heads: number;
  head: HeadTrainingOptions;
  overlap: number;
  baselineLoss: string;
  /** Where the overlays were written (named in report.md). */
  overlaysDir: string;
  peakResidentMiB: number;
}

/** A report in both forms. */
export interface Report {
  json: unknown;
  markdown: string;
}

const pct = (x: number) => (100 * x).toFixed(2);
const pm = (m: Pick<MeanStd, "mean" | "std"> | null | undefined) =>
  m ? `${pct(m.mean)} ± ${Number.isFinite(m.std) ? pct(m.std) : "–"}` : "–";
const featuresJson = (run: RunInfo) => ({ ...run.features, noise: undefined, channels: run.featureChannels });

/** The medical protocol's report: scores table (binary or mIoU), settings and timings. */
export function medicalReport(run: RunInfo, settings: MedicalSettings, result: MedicalResult): Report {
  const { head } = settings;
  const json = {
    dataset: run.dataset,
    labelledImages: result.labelledImages,
    testImages: result.testImages,
    checkpoint: run.checkpoint,
    method: run.method,
    features: featuresJson(run),
    heads: {
      count: settings.heads,
      training: result.heads,
      crop: head.crop,
      batch: head.batch,
      lr: head.lr,
      minEpochs: head.minEpochs,
      maxEpochs: head.maxEpochs,
      patience: head.patience,
    },
    supervised: result.supervised ? { ...result.supervised, loss: settings.baselineLoss } : null,
    results: result.results,
    timings: { ...result.timings, peakResidentMiB: settings.peakResidentMiB },
    environment: run.environment,
  };

  const method = run.method.toUpperCase();
  const lines = [
    `# Few-shot segmentation: ${run.dataset}`,
    "",
    `${method} features from \`${run.checkpoint}\` (blocks ${run.features.blocks.join(", ")}, t = ${
      run.features.timesteps.join(", ")
    }, ${run.featureChannels} channels); ` +
    `${settings.heads} heads trained on the first ${result.labelledImages.length} labelled images; ${result.testImages} test images, sliding window ${head.crop} with overlap ${settings.overlap}.`,
    "",
  ];
  if (result.binary) {
    const r = result.results;
    lines.push(
      "Scores in %, mean ± std over heads (the supervised UNet is one run). AJI (authors') is computed on binary masks, as the",
      "MDM authors did, and equals foreground IoU; AJI (challenge) is the MoNuSeg challenge's instance AJI, predicted instances",
      "being the 4-connected components of the prediction.",
      "",
      "| method | Dice | IoU (per image) | IoU from Dice (GlaS) | AJI (authors', binary) | AJI (challenge, instances) |",
      "|---|---|---|---|---|---|",
    );
    const row = (name: string, s: BinarySummary) =>
      `| ${name} | ${pm(s.dice)} | ${pm(s.iouPerImage)} | ${pm(s.glasIoUFromDice)} | ${pm(s.ajiBinaryAuthors)} | ${
        pm(s.ajiInstanceChallenge)
      } |`;
    lines.push(row(`${method} + pixel MLP (${settings.heads} heads)`, r.mdmHeads));
    if (r.supervisedUNet) {
      lines.push(
        row(
          `supervised UNet from scratch (${result.supervised!.steps} steps, ${settings.baselineLoss})`,
          r.supervisedUNet,
        ),
      );
    }
    lines.push(`| all background (trivial) | ${pct(r.trivialAllBackground.dice)} | | | | |`);
    lines.push(`| all foreground (trivial) | ${pct(r.trivialAllForeground.dice)} | | | | |`);
  } else {
    const r = result.results;
    lines.push("| method | mIoU (%) |", "|---|---|", `| ${method} + pixel MLP | ${pm(r.mdmHeads.mIoU)} |`);
    if (r.supervisedUNet) lines.push(`| supervised UNet | ${pct(r.supervisedUNet.mIoU)} |`);
  }
  const trainSeconds = result.timings.headTrainingSeconds;
  lines.push(
    "",
    `Timings: heads ${trainSeconds.toFixed(1)} s (${(trainSeconds / settings.heads).toFixed(1)} s each, epochs ${
      result.heads.map((r) => r.epochs).join(", ")
    }), ` +
      `test ${result.timings.testSeconds.toFixed(1)} s; peak memory ${
        settings.peakResidentMiB.toFixed(0)
      } MiB; libtorch ${run.environment.libtorch}, ${run.environment.threads} threads.`,
    "",
    `Overlays (image | ground truth | head 0${
      result.supervised ? " | supervised UNet" : ""
    }): \`${settings.overlaysDir}/\`.`,
  );
  return { json, markdown: lines.join("\n") };
}

/** The faces protocol's report: mIoU mean ± std over the seeds. */
export function facesReport(run: RunInfo, result: FacesResult): Report {
  const json = {
    dataset: run.dataset,
    protocol: "faces",
    labelledImages: result.labelledImages,
    testImages: result.testImages,
    features: featuresJson(run),
    seeds: result.seeds,
    mIoU: result.mIoU,
    seconds: result.seconds,
  };
  const markdown = `# Few-shot segmentation (faces protocol): ${run.dataset}\n\nmIoU over ${result.seeds.length} ` +
    `seeds (10-head majority vote each): ${pm(result.mIoU)} %`;
  return { json, markdown };
}

/** Writes `report.json` and `report.md` into `dir` (created if needed). */
export async function writeReport(dir: string, report: Report): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(`${dir}/report.json`, JSON.stringify(report.json, null, 2) + "\n");
  await writeFile(`${dir}/report.md`, report.markdown + "\n");
}

/** This process's peak resident memory (VmHWM), MiB; 0 where /proc is not available. */
export async function peakResidentMiB(): Promise<number> {
  const status = await readFile("/proc/self/status", "utf8").catch(() => "");
  return Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
}
