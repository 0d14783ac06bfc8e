// UNet training step (forward, MSE, backward, AdamW): mdm against the PyTorch port of the same
// UNet (tests/unet_ref.py), same configuration and threads, one run each. Peak memory is each
// process's maximum resident set (the CPU) or the allocator's peak (PyTorch on a GPU).
//
//   deno run -A bench/unet.ts [--threads N] [--only small,gd-medium,...] [--device cpu|cuda]
//                             [--precision fp32|bf16|both] [--compile] [--layout nchw|channels-last]
//                             [--torch-channels-last]
//
// fp32 compares mdm with PyTorch eager; bf16 runs mdm's torso in bfloat16 (norms and softmax in
// float32, float32 master weights) against PyTorch's whole step under torch.autocast(bfloat16);
// --compile adds torch.compile (inductor) in float32, the fastest thing a PyTorch user gets.
import { AdamW, type Device, F, manualSeed, randint, randn, setNumThreads, tidy } from "../mod.ts";
import type { UNetConfig } from "../src/models/unet/config.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { denoJson, flag, layoutArgs, layoutFlag, pythonJson, report } from "./util.ts";

const threads = Number(flag("threads") ?? 2);
const device = (flag("device") ?? "cpu") as Device;
const precisions = flag("precision") === "both" ? ["fp32", "bf16"] : [flag("precision") ?? "fp32"];
// mdm's layout and PyTorch's are chosen apart: a PyTorch user runs the default layout unless they
// convert the model and the input themselves.
const channelsLast = layoutFlag(device);
const torchChannelsLast = Deno.args.includes("--torch-channels-last");

// guided-diffusion's usual settings: up/down-sampling ResBlocks, scale-shift norm, 32-channel heads.
const GD = { resblockUpdown: true, useScaleShiftNorm: true, numHeadChannels: 32 };

const CONFIGS: Record<string, { batch: number; steps: number; unet: Partial<UNetConfig> & { imageSize: number } }> = {
  small: {
    batch: 4,
    steps: 10,
    unet: { imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16], numResBlocks: 2 },
  },
  medium: {
    batch: 8,
    steps: 3,
    unet: { imageSize: 64, modelChannels: 64, channelMult: [1, 2, 2, 4], attentionResolutions: [16], numResBlocks: 2 },
  },
  "gd-small": {
    batch: 4,
    steps: 10,
    unet: { imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16], numResBlocks: 2, ...GD },
  },
  "gd-medium": {
    batch: 8,
    steps: 3,
    unet: {
      imageSize: 64,
      modelChannels: 64,
      channelMult: [1, 2, 2, 4],
      attentionResolutions: [16, 8],
      numResBlocks: 2,
      ...GD,
    },
  },
  // The paper's medical model (a GPU's size): 256², 192 channels, attention at 32, 16 and 8, 64-channel heads.
  paper: {
    batch: 8,
    steps: 5,
    unet: {
      imageSize: 256,
      modelChannels: 192,
      channelMult: [1, 1, 2, 2, 4, 4],
      attentionResolutions: [32, 16, 8],
      numResBlocks: 2,
      resblockUpdown: true,
      useScaleShiftNorm: true,
      numHeadChannels: 64,
    },
  },
};
const DEFAULT_RUN = ["small", "medium", "gd-small", "gd-medium"];

function peakMiB(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function mdmSide(name: string, precision: string) {
  // A child process per configuration, so that peak memory is that configuration's own.
  const args = ["--child", name, "--threads", String(threads), "--device", device, "--precision", precision];
  return await denoJson(
    new URL(import.meta.url).pathname,
    [...args, ...layoutArgs(channelsLast)],
    `mdm ${name}`,
  );
}

function child(name: string, precision: string) {
  const c = CONFIGS[name];
  setNumThreads(threads);
  manualSeed(0);
  const model = new UNet({ ...c.unet, torsoDtype: precision === "bf16" ? "bfloat16" : "float32", channelsLast });
  if (device !== "cpu") model.to({ device });
  const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0 });
  const x = randn([c.batch, 3, c.unet.imageSize, c.unet.imageSize], { device });
  const t = randint(0, 1000, [c.batch], { device });
  const step = () =>
    tidy(() => {
      opt.zeroGrad();
      F.mseLoss(model.forward(x, t).output!.float(), x).backward();
      opt.step();
    });
  const sync = () => {
    if (device !== "cpu") x.sum().item(); // a host read waits for the queued kernels
  };
  for (let i = 0; i < 2; i++) step();
  sync();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < c.steps; i++) step();
    sync();
    best = Math.min(best, (performance.now() - t0) / c.steps);
  }
  console.log(JSON.stringify({ step_ms: best, peak_mib: device === "cpu" ? peakMiB() : NaN }));
}

function torchArgs(name: string, extra: Record<string, unknown>): string[] {
  const c = CONFIGS[name], u = c.unet;
  return [
    JSON.stringify({
      threads,
      batch: c.batch,
      steps: c.steps,
      device,
      channels_last: torchChannelsLast,
      image_size: u.imageSize,
      model_channels: u.modelChannels,
      channel_mult: u.channelMult,
      attention_resolutions: u.attentionResolutions,
      num_res_blocks: u.numResBlocks,
      resblock_updown: u.resblockUpdown ?? false,
      use_scale_shift_norm: u.useScaleShiftNorm ?? true,
      num_head_channels: u.numHeadChannels ?? -1,
      ...extra,
    }),
  ];
}

if (Deno.args.includes("--child")) {
  child(flag("child")!, flag("precision") ?? "fp32");
} else {
  const names = flag("only")?.split(",") ?? DEFAULT_RUN;
  for (const name of names) {
    if (!CONFIGS[name]) throw new Error(`unknown configuration ${name}; one of ${Object.keys(CONFIGS).join(", ")}`);
    const script = new URL("./unet_torch.py", import.meta.url).pathname;
    const c = CONFIGS[name];
    for (const precision of precisions) {
      const py = await pythonJson(script, torchArgs(name, { autocast: precision === "bf16" ? "bfloat16" : null }));
      const m = await mdmSide(name, precision);
      const rows: [string, number, number][] = [
        [
          `ms per step, mdm ${precision} / PyTorch eager ${precision === "bf16" ? "autocast bf16" : "fp32"}`,
          m.step_ms,
          py.step_ms,
        ],
        ["peak memory, MiB", m.peak_mib, py.peak_mib],
      ];
      if (Deno.args.includes("--compile") && precision === "fp32") {
        const compiled = await pythonJson(script, torchArgs(name, { compile: true }));
        rows.push(["ms per step, mdm fp32 / torch.compile fp32", m.step_ms, compiled.step_ms]);
        console.log(`torch.compile: first two steps (compiling) took ${compiled.warmup_s.toFixed(0)} s`);
      }
      report(
        `UNet training step, ${name} (batch ${c.batch}, ${device}, threads=${threads}; mdm ${
          channelsLast ? "channels-last" : "NCHW"
        }, PyTorch ${torchChannelsLast ? "channels-last" : "NCHW"})`,
        rows,
      );
    }
  }
}
