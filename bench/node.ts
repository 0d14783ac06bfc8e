// The Node port's per-call cost against Deno's: a trivial native call, a tiny add and its free, and a
// UNet training step, each side in its own process with the same threads. The Node side runs the npm
// build (`deno run -A scripts/build_npm.ts` first), whose native calls go through koffi.
//
//   deno run -A bench/node.ts [--threads N]
import { AdamW, F, liveTensors, manualSeed, ones, randint, randn, setNumThreads, tidy, UNet } from "../mod.ts";
import { denoJson, flag, perCall, report } from "./util.ts";

const CONFIG = {
  threads: Number(flag("threads") ?? 2),
  calls: 200_000,
  steps: 10,
  batch: 4,
  unet: { imageSize: 32, modelChannels: 32, channelMult: [1, 2], attentionResolutions: [16], numResBlocks: 2 },
};

function child(): void {
  setNumThreads(CONFIG.threads);
  const trivial = perCall(() => liveTensors(), CONFIG.calls) * 1e3;
  const a = ones([4]), b = ones([4]);
  const addFree = perCall(() => a.add(b).dispose(), CONFIG.calls) * 1e3;
  manualSeed(0);
  const model = new UNet(CONFIG.unet);
  const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0 });
  const x = randn([CONFIG.batch, 3, 32, 32]);
  const t = randint(0, 1000, [CONFIG.batch]);
  const step = () =>
    tidy(() => {
      opt.zeroGrad();
      F.mseLoss(model.forward(x, t).output!, x).backward();
      opt.step();
    });
  console.log(JSON.stringify({ trivial_us: trivial, add_free_us: addFree, step_ms: perCall(step, CONFIG.steps, 3) }));
}

if (Deno.args.includes("--child")) {
  child();
} else {
  const deno = await denoJson(
    new URL(import.meta.url).pathname,
    ["--child", "--threads", String(CONFIG.threads)],
    "Deno side",
  );
  const out = await new Deno.Command("node", {
    args: [new URL("./node_side.mjs", import.meta.url).pathname, JSON.stringify(CONFIG)],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error("Node side failed (build the npm package first: deno run -A scripts/build_npm.ts)");
  const node = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").pop()!);
  report(`Node (koffi) against Deno (Deno.dlopen), threads=${CONFIG.threads}; ratio = Node / Deno`, [
    ["trivial native call, µs", node.trivial_us, deno.trivial_us],
    ["tiny add + free, µs", node.add_free_us, deno.add_free_us],
    ["UNet training step (small), ms", node.step_ms, deno.step_ms],
  ], ["node", "deno"]);
}
