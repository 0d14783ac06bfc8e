// UNet training step (forward, MSE, backward, AdamW): mdm against the PyTorch port of the same
// UNet (tests/unet_ref.py), same configuration and threads, one run. Peak memory is each
// process's maximum resident set.
//
//   deno run -A bench/unet.ts [--threads N] [--only small|medium]
import { AdamW, F, manualSeed, randint, randn, setNumThreads, tidy } from "../mod.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { denoJson, flag, pythonJson, report } from "./util.ts";

const threads = Number(flag("threads") ?? 2);

const CONFIGS = {
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
};

function peakMiB(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+)/.exec(status)![1]) / 1024;
}

async function mdmSide(name: keyof typeof CONFIGS) {
  // A child process per configuration, so that peak memory is that configuration's own.
  return await denoJson(
    new URL(import.meta.url).pathname,
    ["--child", name, "--threads", String(threads)],
    `mdm side of ${name}`,
  );
}

function child(name: keyof typeof CONFIGS) {
  const c = CONFIGS[name];
  setNumThreads(threads);
  manualSeed(0);
  const model = new UNet(c.unet);
  const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0 });
  const x = randn([c.batch, 3, c.unet.imageSize, c.unet.imageSize]);
  const t = randint(0, 1000, [c.batch]);
  const step = () =>
    tidy(() => {
      opt.zeroGrad();
      F.mseLoss(model.forward(x, t).output!, x).backward();
      opt.step();
    });
  for (let i = 0; i < 2; i++) step();
  let best = Infinity;
  for (let r = 0; r < 3; r++) {
    const t0 = performance.now();
    for (let i = 0; i < c.steps; i++) step();
    best = Math.min(best, (performance.now() - t0) / c.steps);
  }
  console.log(JSON.stringify({ step_ms: best, peak_mib: peakMiB() }));
}

if (Deno.args.includes("--child")) {
  child(flag("child") as keyof typeof CONFIGS);
} else {
  const names = (flag("only") ? [flag("only")] : Object.keys(CONFIGS)) as (keyof typeof CONFIGS)[];
  for (const name of names) {
    const c = CONFIGS[name];
    const pyArgs = [
      JSON.stringify({
        threads,
        batch: c.batch,
        steps: c.steps,
        image_size: c.unet.imageSize,
        model_channels: c.unet.modelChannels,
        channel_mult: c.unet.channelMult,
        attention_resolutions: c.unet.attentionResolutions,
        num_res_blocks: c.unet.numResBlocks,
      }),
    ];
    const script = new URL("./unet_torch.py", import.meta.url).pathname;
    const py = await pythonJson(script, pyArgs);
    // As a PyTorch user would run it, OpenBLAS's pool left at its default size.
    const pyDefault = await pythonJson(script, pyArgs, {});
    const m = await mdmSide(name);
    report(`UNet training step, ${name} (batch ${c.batch}, threads=${threads})`, [
      ["ms per step", m.step_ms, py.step_ms],
      ["ms per step vs PyTorch with default OpenBLAS threads", m.step_ms, pyDefault.step_ms],
      ["peak resident memory, MiB", m.peak_mib, py.peak_mib],
    ]);
  }
}
