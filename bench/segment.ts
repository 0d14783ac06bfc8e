// The medical few-shot protocol end to end (the paper's Section 4.2 and Appendix A.2): head
// training on features recomputed every step, then Gaussian-blended sliding-window prediction of
// the test split, mdm (src/segment/heads.ts) against the same work in plain PyTorch
// (bench/segment_torch.py) on the same libtorch, weights, data and threads. One timed run per side
// and round, each in its own process; peak memory is each process's maximum resident set.
//
//   deno run -A bench/segment.ts [--threads N] [--rounds R] [--epochs E] [--cache DIR] [--window-batch B]
//
// Setting: train.ts's "tiny" UNet (64², 32 channels, mult 1,2,2, one res block per level), randomly
// initialised (seeded, including the zero-initialised layers, as the tests randomise it) and shared
// through a safetensors file; decoder blocks 2,3,4 at t = 50, L2-normalised; 3 heads trained for a
// fixed number of epochs (no early stopping) on 64² crops, 4 per step, of the first 3 synthetic
// training images; the 8 synthetic 256² test images with windows of 64, overlap 0.2.
// PyTorch runs twice per round: "reference" (per head, per window, full UNet forward with hooks)
// and "shared" (each window's features computed once for all heads, still one window at a time).
import { manualSeed, setNumThreads } from "../mod.ts";
import { loadSynthetic } from "../src/data/datasets/synthetic_set.ts";
import { PRESETS } from "../src/cli/pretrain_flags.ts";
import { loadModel } from "../src/io/weights.ts";
import { saveSafetensors } from "../src/io/safetensors.ts";
import { UNet } from "../src/models/unet/unet.ts";
import type { FeatureOptions } from "../src/segment/features.ts";
import { type HeadTrainingOptions, predictHeads, trainHead } from "../src/segment/heads.ts";
import { dice } from "../src/segment/metrics.ts";
import { randomize } from "../tests/helpers/unet_port.ts";
import { denoJson, flag, npyCopies, pythonJson, report } from "./util.ts";

const threads = Number(flag("threads") ?? 2);
const rounds = Number(flag("rounds") ?? 1);
const epochs = Number(flag("epochs") ?? 10);

const UNET = PRESETS.tiny.unet; // train.ts's default model
const SETTING = {
  blocks: [2, 3, 4],
  t: 50,
  heads: 3,
  labels: 3,
  crop: 64,
  batch: 4,
  lr: 1e-3,
  window: 64,
  overlap: 0.2,
  seed: 0,
  classes: 2,
};

interface SideResult {
  train_s: number;
  test_s: number;
  total_s: number;
  peak_mib: number;
  dice: number;
  pred_md5?: string;
  pred_sha256?: string;
}

function peakMiB(): number {
  return Number(/VmHWM:\s+(\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))![1]) / 1024;
}

async function child(weights: string, cache: string): Promise<void> {
  setNumThreads(threads);
  const { model } = loadModel(weights, (vb) => new UNet(UNET, vb));
  model.eval();
  const ds = await loadSynthetic(cache);
  const train = await ds.train.first(SETTING.labels).loadAll();
  const test = await ds.test.loadAll();
  const features: Omit<FeatureOptions, "generator"> = {
    method: "mdm",
    blocks: SETTING.blocks,
    timesteps: [SETTING.t],
    l2Normalize: true,
    patchSize: 8,
    diffusionSteps: 1000,
    maskRatio: "release",
  };
  const training: HeadTrainingOptions = {
    classes: SETTING.classes,
    crop: SETTING.crop,
    batch: SETTING.batch,
    lr: SETTING.lr,
    minEpochs: epochs,
    maxEpochs: epochs,
    patience: epochs, // with minEpochs = maxEpochs nothing stops early
    seed: SETTING.seed,
    features,
    device: "cpu",
  };
  const t0 = performance.now();
  const heads = [];
  for (let h = 0; h < SETTING.heads; h++) {
    // trainHead seeds its crops and masks, but the head's initial weights come from the global
    // generator, which libtorch seeds at random per process: seeded here, as the PyTorch side does.
    manualSeed(SETTING.seed * 1009 + h);
    heads.push(trainHead(model, train, training, h).classifier);
  }
  const t1 = performance.now();
  const dices: number[] = [];
  const all: Uint8Array[] = [];
  // Windows per UNet pass: slidingWindow's default (8) unless --window-batch says otherwise.
  const windowBatch = flag("window-batch");
  const sliding = {
    window: SETTING.window,
    overlap: SETTING.overlap,
    ...(windowBatch ? { batch: Number(windowBatch) } : {}),
  };
  for (const ex of test) {
    const preds = predictHeads(model, heads, ex.image, { features, device: "cpu", seed: SETTING.seed, sliding });
    for (const p of preds) {
      dices.push(dice(p, ex.label));
      all.push(p);
    }
  }
  const t2 = performance.now();
  const bytes = new Uint8Array(all.reduce((n, p) => n + p.length, 0));
  all.reduce((at, p) => (bytes.set(p, at), at + p.length), 0);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const result: SideResult = {
    train_s: (t1 - t0) / 1000,
    test_s: (t2 - t1) / 1000,
    total_s: (t2 - t0) / 1000,
    peak_mib: peakMiB(),
    dice: dices.reduce((s, x) => s + x, 0) / dices.length,
    pred_sha256: Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join(""),
  };
  console.log(JSON.stringify(result));
}

async function mdmSide(weights: string, cache: string): Promise<SideResult> {
  const windowBatch = flag("window-batch");
  return await denoJson<SideResult>(new URL(import.meta.url).pathname, [
    "--child",
    "--weights",
    weights,
    "--cache",
    cache,
    "--threads",
    String(threads),
    "--epochs",
    String(epochs),
    ...(windowBatch ? ["--window-batch", windowBatch] : []),
  ], "mdm side");
}

if (Deno.args.includes("--child")) {
  await child(flag("weights")!, flag("cache")!);
} else {
  const tmp = Deno.makeTempDirSync({ prefix: "mdm-bench-segment-" });
  try {
    const cache = flag("cache") ?? `${tmp}/synthetic`;
    const ds = await loadSynthetic(cache);
    manualSeed(0);
    const model = new UNet(UNET);
    randomize(model);
    const weights = `${tmp}/tiny.safetensors`;
    saveSafetensors(weights, Object.fromEntries(model.namedParameters()));
    const files = (split: typeof ds.train, key: string) =>
      npyCopies(
        split.items.map((it) => it.files[key]),
        `${tmp}/npy-${split === ds.test ? "test" : "train"}`,
        key === "image" ? "rgb" : "label",
      );
    const train = ds.train.first(SETTING.labels);
    const script = new URL("./segment_torch.py", import.meta.url).pathname;
    const py = async (style: "reference" | "shared") =>
      await pythonJson(script, [
        JSON.stringify({
          ...SETTING,
          style,
          threads,
          epochs,
          weights,
          unet: UNET,
          train_images: await files(train, "image"),
          train_masks: await files(train, "label"),
          test_images: await files(ds.test, "image"),
          test_masks: await files(ds.test, "label"),
        }),
      ]) as unknown as SideResult;
    const title = `medical protocol, tiny UNet, blocks ${SETTING.blocks.join(",")}, ${SETTING.heads} heads × ` +
      `${epochs} epochs, ${ds.test.length} test images, threads=${threads}`;
    for (let r = 1; r <= rounds; r++) {
      // Alternating sides, so that a noisy neighbour hits all of them alike.
      const m = await mdmSide(weights, cache);
      const ref = await py("reference");
      const shared = await py("shared");
      console.error(
        `round ${r}: mean Dice mdm ${m.dice.toFixed(4)}, PyTorch ${ref.dice.toFixed(4)} / ${shared.dice.toFixed(4)}; ` +
          `PyTorch predictions ${ref.pred_md5 === shared.pred_md5 ? "identical" : "DIFFER"} in both styles`,
      );
      report(`${title}, round ${r}: seconds, MiB; ratio = mdm / PyTorch (below 1: mdm is faster)`, [
        ["head training, s (vs PyTorch reference)", m.train_s, ref.train_s],
        ["test, s (vs PyTorch reference)", m.test_s, ref.test_s],
        ["total, s (vs PyTorch reference)", m.total_s, ref.total_s],
        ["test, s (vs PyTorch, shared window features)", m.test_s, shared.test_s],
        ["total, s (vs PyTorch, shared window features)", m.total_s, shared.total_s],
        ["peak RSS, MiB (vs PyTorch reference)", m.peak_mib, ref.peak_mib],
        ["peak RSS, MiB (vs PyTorch, shared)", m.peak_mib, shared.peak_mib],
      ]);
      console.log(
        `speedup (PyTorch total / mdm total): ${(ref.total_s / m.total_s).toFixed(2)}× over reference, ` +
          `${(shared.total_s / m.total_s).toFixed(2)}× over shared`,
      );
    }
  } finally {
    Deno.removeSync(tmp, { recursive: true });
  }
}
