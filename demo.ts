// A short tour of the tensor layer: fits a small classifier on a synthetic two-spirals problem with
// AdamW inside memory scopes, and writes a report to out/demo.json.
//
//   deno run -A demo.ts [--threads N] [--steps N]
import {
  AdamW,
  F,
  getNumThreads,
  liveTensors,
  manualSeed,
  noGrad,
  randn,
  setNumThreads,
  tensor,
  tidy,
  torchVersion,
  zeros,
} from "./mod.ts";

function flag(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  return i >= 0 ? Number(Deno.args[i + 1]) : fallback;
}

setNumThreads(flag("threads", 2));
const steps = flag("steps", 300);
manualSeed(0);

// Two interleaved spirals, 256 points each.
const n = 256, xs: number[][] = [], ys: bigint[] = [];
for (let c = 0; c < 2; c++) {
  for (let i = 0; i < n; i++) {
    const r = i / n * 3, a = r * 3 + c * Math.PI;
    xs.push([r * Math.cos(a), r * Math.sin(a)]);
    ys.push(BigInt(c));
  }
}
const x = tensor(xs), y = tensor(ys);
const init = (shape: number[]) => randn(shape).mul(Math.sqrt(2 / shape[1])).requiresGrad_();
const w1 = init([64, 2]), b1 = zeros([64]).requiresGrad_();
const w2 = init([64, 64]), b2 = zeros([64]).requiresGrad_();
const w3 = init([2, 64]), b3 = zeros([2]).requiresGrad_();
const params = [w1, b1, w2, b2, w3, b3];
const opt = new AdamW(params, { lr: 1e-2, weightDecay: 0 });
const forward = () => F.linear(F.linear(F.linear(x, w1, b1).silu(), w2, b2).silu(), w3, b3);

const startLive = liveTensors();
const losses: number[] = [];
const t0 = performance.now();
for (let step = 0; step < steps; step++) {
  const loss = tidy(() => {
    opt.zeroGrad();
    const l = F.crossEntropy(forward(), y);
    l.backward();
    opt.step();
    return l.item();
  });
  losses.push(loss);
  if (step % 50 === 0 || step === steps - 1) console.log(`step ${step}  loss ${loss.toFixed(4)}`);
}
const seconds = (performance.now() - t0) / 1000;
const accuracy = noGrad(() => tidy(() => forward().argmax(1).eq(y).float().mean().item()));

const report = {
  libtorch: torchVersion(),
  threads: getNumThreads(),
  steps,
  firstLoss: losses[0],
  finalLoss: losses[losses.length - 1],
  accuracy,
  stepsPerSecond: steps / seconds,
  leakedTensors: liveTensors() - startLive,
};
await Deno.mkdir("out", { recursive: true });
await Deno.writeTextFile("out/demo.json", JSON.stringify(report, null, 2) + "\n");
console.log(
  `accuracy ${(accuracy * 100).toFixed(1)}%, ${report.stepsPerSecond.toFixed(0)} steps/s, ` +
    `${report.leakedTensors} tensors leaked; report in out/demo.json`,
);
