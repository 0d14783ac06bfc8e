// Per-op dispatch cost and a conv2d forward + backward: mdm against Python PyTorch on the same
// libtorch build with the same thread count, in one run.
//
//   deno run -A bench/ops.ts [--threads N]
//
// "dispatch" is the time a binding adds to a tiny add on top of libtorch's own cost, which a C++
// loop over at::add measures (bench/add_floor.cpp, compiled on first use).
import { F, manualSeed, ones, randn, setNumThreads, tidy } from "../mod.ts";
import { libtorchFlags, perCall, pythonJson, report } from "./util.ts";

const threads = Number(Deno.args[Deno.args.indexOf("--threads") + 1] || 2);
const ADD_N = 200_000, CONV_N = 20;

async function cppFloor(): Promise<number> {
  const { includes, libs, tag } = libtorchFlags();
  const exe = new URL(`../build/add_floor-${tag}`, import.meta.url).pathname;
  const src = new URL("./add_floor.cpp", import.meta.url).pathname;
  try {
    await Deno.stat(exe);
  } catch {
    const c = await new Deno.Command("g++", { args: ["-O2", ...includes, src, "-o", exe, ...libs] }).output();
    if (!c.success) throw new Error(new TextDecoder().decode(c.stderr));
  }
  const out = await new Deno.Command(exe, { args: [String(ADD_N)] }).output();
  return Number(new TextDecoder().decode(out.stdout));
}

setNumThreads(threads);
const a = ones([4]), b = ones([4]);
const addOwned = perCall(() => a.add(b).dispose(), ADD_N) * 1e3;
// The training-loop pattern: ops inside tidy scopes of a realistic size.
const addTidy = perCall(() =>
  tidy(() => {
    for (let i = 0; i < 100; i++) a.add(b);
  }), ADD_N / 100) * 1e3 / 100;

manualSeed(0);
const x = randn([8, 64, 32, 32], { requiresGrad: true });
const w = randn([64, 64, 3, 3], { requiresGrad: true });
const bias = randn([64], { requiresGrad: true });
const up = ones([8, 64, 32, 32]);
const conv = perCall(() =>
  tidy(() => {
    for (const p of [x, w, bias]) p.zeroGrad(true);
    F.conv2d(x, w, bias, { padding: 1 }).backward(up);
  }), CONV_N);

const py = await pythonJson(new URL("./ops_torch.py", import.meta.url).pathname, [threads, ADD_N, CONV_N]);
const floor = await cppFloor();

const pyDispatch = py.add_us - floor;
report(`ops (threads=${threads})`, [
  ["tiny add, total µs/op", addOwned, py.add_us],
  ["tiny add in tidy, total µs/op", addTidy, py.add_us],
  [`dispatch over C++ at::add (${floor.toFixed(3)} µs), µs`, addOwned - floor, pyDispatch],
  ["dispatch in tidy over C++ at::add, µs", addTidy - floor, pyDispatch],
  ["conv2d 8x64x32x32 fwd+bwd, ms", conv, py.conv_ms],
]);
