// Node side of bench/node.ts: the same three measurements through the npm build (build/npm/package),
// whose native calls go through koffi. Prints one JSON object.
import process from "node:process";
import { perCall } from "./per_call.mjs";

const { AdamW, F, liveTensors, manualSeed, ones, randint, randn, setNumThreads, tidy } = await import(
  new URL("../build/npm/package/dist/mod.js", import.meta.url).href
);
const { UNet } = await import(new URL("../build/npm/package/dist/api/unet.js", import.meta.url).href);
const cfg = JSON.parse(process.argv[2]);

setNumThreads(cfg.threads);
const trivial = perCall(() => liveTensors(), cfg.calls) * 1e3;
const a = ones([4]), b = ones([4]);
const addFree = perCall(() => a.add(b).dispose(), cfg.calls) * 1e3;
manualSeed(0);
const model = new UNet(cfg.unet);
const opt = new AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0 });
const x = randn([cfg.batch, 3, cfg.unet.imageSize, cfg.unet.imageSize]);
const t = randint(0, 1000, [cfg.batch]);
const step = () =>
  tidy(() => {
    opt.zeroGrad();
    F.mseLoss(model.forward(x, t).output, x).backward();
    opt.step();
  });
const stepMs = perCall(step, cfg.steps, 3);
console.log(JSON.stringify({ trivial_us: trivial, add_free_us: addFree, step_ms: stepMs }));
