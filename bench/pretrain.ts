// MDM pre-training throughput: mdm's whole step (random crops and flips from decoded in-memory
// images, patch masking, UNet forward, SSIM loss, backward, AdamW, EMA) against PyTorch doing the
// same work on the same libtorch and threads (bench/pretrain_torch.py), batched and in the
// authors' per-sample style. All three train on the synthetic dataset's PNGs.
//
//   deno run -A bench/pretrain.ts [--threads N] [--only small|medium|gd-small|paper] [--rounds R]
//                                 [--cache DIR] [--device cpu|cuda]
//                                 [--layout nchw|channels-last]
//
// Each round runs every side once in its own process (warm-up, then best of `repeats` timed runs
// of `steps` steps); sides alternate within a round so that a noisy neighbour hits all of them,
// and each figure is the best over the rounds; the speedups also as the median of each round's own
// (the machine's load drifts between rounds more than within one).
import { type Device, setNumThreads, tidy } from "../mod.ts";
import { RandomCropLoader } from "../src/data/folder.ts";
import { readImage } from "../src/data/image.ts";
import { ensureSyntheticDataset } from "../src/data/synthetic.ts";
import { PRETRAIN_DEFAULTS, Pretrainer } from "../src/mdm/pretrain.ts";
import { denoJson, flag, layoutArgs, layoutFlag, median, npyCopies, pythonJson, report } from "./util.ts";

const threads = Number(flag("threads") ?? 2);
const rounds = Number(flag("rounds") ?? 2);
const cache = flag("cache") ?? ".cache/synthetic";
const device = (flag("device") ?? "cpu") as Device;
// mdm's UNet layout (PyTorch's side stays NCHW, as a user runs it).
const channelsLast = layoutFlag(device);
const EMA_RATE = 0.9999;

// UNet settings beyond these are mdm's defaults (numHeads 4, scale-shift norm on, no
// resblockUpdown, conv resampling), which are also unet_ref.py's defaults.
const CONFIGS = {
  small: {
    batch: 8,
    steps: 8,
    repeats: 3,
    warmup: 2,
    unet: { imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16], numResBlocks: 2 },
  },
  medium: {
    batch: 8,
    steps: 3,
    repeats: 3,
    warmup: 2,
    unet: { imageSize: 64, modelChannels: 64, channelMult: [1, 2, 2, 4], attentionResolutions: [16], numResBlocks: 2 },
  },
  // guided-diffusion's usual settings: up/down-sampling ResBlocks, scale-shift norm, 32-channel heads.
  "gd-small": {
    batch: 8,
    steps: 8,
    repeats: 3,
    warmup: 2,
    unet: {
      imageSize: 32,
      modelChannels: 32,
      channelMult: [1, 2],
      attentionResolutions: [16],
      numResBlocks: 2,
      resblockUpdown: true,
      numHeadChannels: 32,
    },
  },
  // The paper's medical model on 256² crops (a GPU's size), batch 8 of the paper's 128.
  paper: {
    batch: 8,
    steps: 5,
    repeats: 2,
    warmup: 2,
    unet: {
      imageSize: 256,
      modelChannels: 192,
      channelMult: [1, 1, 2, 2, 4, 4],
      attentionResolutions: [32, 16, 8],
      numResBlocks: 2,
      resblockUpdown: true,
      numHeadChannels: 64,
    },
  },
};
type Name = keyof typeof CONFIGS;
const DEFAULT_RUN: Name[] = ["small", "medium", "gd-small"];

async function imagePaths(): Promise<string[]> {
  const set = await ensureSyntheticDataset(cache, {});
  return [...set.train.images, ...set.test.images]; // what train.ts pre-trains on
}

async function mdmSide(name: Name): Promise<{ step_ms: number; loss: number }> {
  return await denoJson(
    new URL(import.meta.url).pathname,
    [
      "--child",
      name,
      "--threads",
      String(threads),
      "--cache",
      cache,
      "--device",
      device,
      ...layoutArgs(channelsLast),
    ],
    `mdm side of ${name}`,
  );
}

async function child(name: Name) {
  const c = CONFIGS[name];
  setNumThreads(threads);
  const images = [];
  for (const p of await imagePaths()) images.push({ name: p, image: await readImage(p) });
  const loader = new RandomCropLoader(images, { cropSize: c.unet.imageSize, seed: 0 });
  const trainer = new Pretrainer({
    ...PRETRAIN_DEFAULTS,
    unet: { ...c.unet, channelsLast },
    batch: c.batch,
    microBatch: c.batch,
    emaRate: EMA_RATE,
    device,
  });
  let loss = NaN;
  const step = () => {
    loss = tidy(() => trainer.trainStep(loader.nextBatch(c.batch))).loss;
  };
  for (let i = 0; i < c.warmup; i++) step();
  let best = Infinity;
  for (let r = 0; r < c.repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < c.steps; i++) step();
    best = Math.min(best, (performance.now() - t0) / c.steps);
  }
  console.log(JSON.stringify({ step_ms: best, loss }));
}

if (Deno.args.includes("--child")) {
  await child(flag("child") as Name);
} else {
  const names = (flag("only")?.split(",") ?? DEFAULT_RUN) as Name[];
  const paths = await npyCopies(await imagePaths(), Deno.makeTempDirSync({ prefix: "mdm-bench-pretrain-" }), "rgb");
  const script = new URL("./pretrain_torch.py", import.meta.url).pathname;
  for (const name of names) {
    const c = CONFIGS[name];
    const py = (style: "batched" | "loop") =>
      pythonJson(script, [
        JSON.stringify({
          style,
          threads,
          device,
          batch: c.batch,
          steps: c.steps,
          repeats: c.repeats,
          warmup: c.warmup,
          paths,
          ema_rate: EMA_RATE,
          image_size: c.unet.imageSize,
          model_channels: c.unet.modelChannels,
          channel_mult: c.unet.channelMult,
          attention_resolutions: c.unet.attentionResolutions,
          num_res_blocks: c.unet.numResBlocks,
          resblock_updown: "resblockUpdown" in c.unet ? c.unet.resblockUpdown : false,
          num_head_channels: "numHeadChannels" in c.unet ? c.unet.numHeadChannels : -1,
        }),
      ]);
    const best = { mdm: Infinity, batched: Infinity, loop: Infinity };
    // Each round's own speedups: its three sides ran back to back, under one load.
    const perRound = { batched: [] as number[], loop: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      const m = await mdmSide(name), b = await py("batched"), l = await py("loop");
      perRound.batched.push(b.step_ms / m.step_ms);
      perRound.loop.push(l.step_ms / m.step_ms);
      console.error(
        `${name} round ${r + 1}: ms per step mdm ${m.step_ms.toFixed(1)}, batched ${b.step_ms.toFixed(1)}, ` +
          `loop ${l.step_ms.toFixed(1)} (last losses ${m.loss.toFixed(4)}, ${b.loss.toFixed(4)}, ${l.loss.toFixed(4)})`,
      );
      best.mdm = Math.min(best.mdm, m.step_ms);
      best.batched = Math.min(best.batched, b.step_ms);
      best.loop = Math.min(best.loop, l.step_ms);
    }
    const title = `MDM pre-training step, ${name} (crop ${c.unet.imageSize}, batch ${c.batch}, ${device}, ` +
      `threads=${threads}, mdm ${channelsLast ? "channels-last" : "NCHW"})`;
    report(`${title}: time, ratio = mdm / PyTorch (below 1: mdm is faster)`, [
      ["ms per step vs batched PyTorch", best.mdm, best.batched],
      ["ms per step vs per-sample-loop PyTorch", best.mdm, best.loop],
    ]);
    // Throughput, the measure: higher is better, speedup = mdm / PyTorch.
    const ips = (ms: number) => (c.batch * 1000) / ms;
    console.log(`\n${title}: throughput, speedup = mdm / PyTorch (above 1: mdm is faster)`);
    console.log(
      `${"".padEnd(28)}  ${"images/s".padStart(10)}  ${"speedup".padStart(8)}  ${"per-round median".padStart(16)}`,
    );
    const rows: [string, number, number[]][] = [
      ["mdm", best.mdm, []],
      ["PyTorch, batched", best.batched, perRound.batched],
      ["PyTorch, per-sample loop", best.loop, perRound.loop],
    ];
    for (const [label, ms, ratios] of rows) {
      const speedup = label === "mdm" ? "" : (ips(best.mdm) / ips(ms)).toFixed(3);
      const typical = ratios.length ? median(ratios).toFixed(3) : "";
      console.log(
        `${label.padEnd(28)}  ${ips(ms).toFixed(2).padStart(10)}  ${speedup.padStart(8)}  ${typical.padStart(16)}`,
      );
    }
  }
}
