// guided-diffusion's UNet in TypeScript against tests/unet_ref.py, an independent PyTorch port of
// guided-diffusion's layout (Debian's torch 1.13): state-dict keys and shapes, weights moved both ways, forward
// outputs, captured decoder features, every gradient, the bfloat16 torso, the paper's parameter
// counts, config and input validation, the Module utilities and memory.
import assert from "node:assert/strict";
import { liveTensors, manualSeed, noGrad, randn, type Tensor, tensor, tidy } from "../mod.ts";
import { defaultChannelsLast, FFHQ_256, MEDICAL_256, resolveConfig } from "../src/models/unet/config.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { rootBuilder, StateDictError } from "../src/nn/module.ts";
import {
  assertClose,
  DEVICE,
  type RefCase,
  type RefTensor,
  refTensor,
  type RefValue,
  torchRef,
} from "./helpers/torch_ref.ts";
import { type Config, pyModel, randomize } from "./helpers/unet_port.ts";

// Tolerances are relative to a tensor's scale: max|ours - ref| <= rel · max|ref| (a per-element
// relative error would be ill-defined near the zeros of outputs and gradients).
// Both sides run the same libtorch CPU kernels; they differ only in rounding (bmm against einsum in
// attention, the embedding's frequencies), which ~40 layers amplify to about 3e-6 of the output's
// scale and 1e-5 of a gradient's here. On CUDA, cuDNN convolutions run in TF32 (2^-11 rounding).
const FORWARD = DEVICE === "cpu" ? 1e-5 : 1e-2;
const GRAD = DEVICE === "cpu" ? 1e-4 : 1e-2;
// Gradients below this fraction of the model's largest are exact zeros plus rounding (see below).
const ZERO_GRAD = 1e-6;
// bfloat16 keeps 8 mantissa bits (2^-9 rounding) at every layer of a ~20-layer torso. The port's
// bfloat16 torso rounds at other places (einsum against bmm), so it is as far from ours as float32 is.
const BF16 = 5e-2;

const A = "a (scale-shift, ResBlock up/down, legacy attention, 16 channels per head)";
const B = "b (additive embedding, conv up/down, new attention order, 2 heads)";
const CASES: Record<string, { cfg: Config; capture: number[] }> = {
  [A]: {
    cfg: {
      imageSize: 32,
      modelChannels: 32,
      channelMult: [1, 2],
      attentionResolutions: [16],
      numResBlocks: 2,
      useScaleShiftNorm: true,
      resblockUpdown: true,
      useNewAttentionOrder: false,
      numHeadChannels: 16,
    },
    capture: [1, 3, 4],
  },
  [B]: {
    cfg: {
      imageSize: 32,
      modelChannels: 32,
      channelMult: [1, 2, 2],
      attentionResolutions: [16, 8],
      numResBlocks: 2,
      useScaleShiftNorm: false,
      resblockUpdown: false,
      useNewAttentionOrder: true,
      numHeads: 2,
    },
    // Out of order on purpose: features come back in the order asked for.
    capture: [7, 2, 5],
  },
};

const newUNet = (cfg: Config) => new UNet(cfg, rootBuilder({ device: DEVICE }));

function fromRef(v: RefValue | undefined, what: string): Tensor {
  const r = refTensor(v, what);
  return tensor(r.data as Float32Array, { shape: r.shape, device: DEVICE });
}

function maxAbs(r: RefTensor): number {
  let m = 0;
  for (const x of r.data) m = Math.max(m, Math.abs(Number(x)));
  return m;
}

/** max|ours - ref| <= rel · max|ref|, with a non-zero reference (zeros would compare trivially). */
function assertScaled(ours: Tensor | null, ref: RefValue | undefined, rel: number, what: string): void {
  assert.ok(ours !== null, `${what}: ours is null`);
  const r = refTensor(ref, what);
  const scale = maxAbs(r);
  assert.ok(scale > 0, `${what}: the reference is all zeros`);
  assertClose(ours, r, { rtol: 0, atol: rel * scale }, what);
}

/** Bit-for-bit equality of two mdm tensors (same kernels on the same values). */
function assertIdentical(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shapes differ`);
  assert.equal(a.dtype, b.dtype, `${what}: dtypes differ`);
  const [u, v] = [a.toArray() as Float32Array, b.toArray() as Float32Array];
  const i = u.findIndex((x, j) => !Object.is(x, v[j]));
  assert.equal(i, -1, `${what}: element ${i} is ${u[i]}, expected ${v[i]}`);
}

function shapesOf(model: UNet): [string, number[]][] {
  return [...model.stateDict()].map(([k, t]) => [k, [...t.shape]]);
}

/** TS's training step, as unet_ref.forward_backward: loss = mean((out - target)²), one backward. */
function forwardBackward(model: UNet, x: Tensor<"float32">, t: Tensor<"int64">, target: Tensor, capture: number[]) {
  for (const p of model.parameters()) p.zeroGrad(true);
  const xg = x.clone().requiresGrad_(true);
  const { output, features } = model.forward(xg, t, { capture });
  const loss = output!.sub(target).square().mean();
  loss.backward();
  const grads = new Map(model.namedParameters().map(([k, p]) => [k, p.grad]));
  return { output, features, loss, grads, xGrad: xg.grad };
}

/** Every parameter's gradient and the input's against the port's, after one backward pass. */
function assertGradients(
  ours: Pick<ReturnType<typeof forwardBackward>, "grads" | "xGrad">,
  py: Record<string, RefValue>,
) {
  const grads = py.grads as Record<string, RefValue>;
  assert.deepEqual([...ours.grads.keys()].sort(), Object.keys(grads).sort());
  // With 32 channels GroupNorm has one channel per group and removes any per-channel constant:
  // biases added just before such a norm (in_layers.2, the additive embedding, the last block's
  // output before out.0) get a gradient that is zero but for rounding. Those must be ~0 here
  // too; every other gradient is compared relative to its own scale.
  const zero = ZERO_GRAD * Math.max(...Object.values(grads).map((g) => maxAbs(refTensor(g))));
  for (const [k, g] of ours.grads) {
    const r = refTensor(grads[k], k);
    if (maxAbs(r) < zero) {
      assert.ok(g !== null && g.abs().amax().item() < zero, `gradient of ${k} should vanish, is not ~0`);
    } else assertScaled(g, r, GRAD, `gradient of ${k}`);
  }
  assertScaled(ours.xGrad, py.x_grad, GRAD, "gradient of x");
}

// ---- one PyTorch process for every comparison
manualSeed(20240612);
const x = randn([2, 3, 32, 32], { device: DEVICE });
const target = randn([2, 3, 32, 32], { device: DEVICE });
const steps = tensor([17, 803], { dtype: "int64", device: DEVICE }); // two different timesteps

const tsModels: Record<string, UNet> = {};
const request: Record<string, RefCase> = {};
for (const [name, { cfg, capture }] of Object.entries(CASES)) {
  const ts = tsModels[name] = randomize(newUNet(cfg));
  request[`keys ${name}`] = {
    code: pyModel(cfg) + "result = {k: list(v.shape) for k, v in model.state_dict().items()}",
  };
  // Python's random weights, its results with them, and its bfloat16 torso on a copy.
  request[`from python ${name}`] = {
    seed: 7,
    inputs: { x, t: steps, target },
    grad: ["x"],
    code: pyModel(cfg) + `U.randomize(model, g)
result = U.forward_backward(model, x, t, target, ${JSON.stringify(capture)})
result["state_dict"] = model.state_dict()
with torch.no_grad():
    result["out_bf16"] = copy.deepcopy(model).convert_torso(torch.bfloat16)(x, t)`,
  };
  // TS's random weights, loaded strictly into the port by their state-dict names.
  const sd = Object.fromEntries([...ts.stateDict()].map(([k, v]) => [`sd:${k}`, v]));
  request[`from ts ${name}`] = {
    inputs: { x, t: steps, target, ...sd },
    grad: ["x"],
    code: pyModel(cfg) + `model.load_state_dict({k[3:]: v for k, v in list(globals().items()) if k.startswith("sd:")})
r = U.forward_backward(model, x, t, target, ${JSON.stringify(capture)})
result = {k: r[k] for k in ("out", "features", "loss", "x_grad")}`,
  };
}
for (const [name, preset] of [["MEDICAL_256", MEDICAL_256], ["FFHQ_256", FFHQ_256]] as const) {
  // The meta device records shapes without allocating the ~1-2 GB of weights.
  request[`keys ${name}`] = {
    code: pyModel(preset, ', device="meta"') + "result = {k: list(v.shape) for k, v in model.state_dict().items()}",
  };
}
// The reference's own libtorch major version (the same library mdm runs on): channels-last's default.
request["torch major"] = { code: 'result = int(torch.__version__.split(".")[0])' };
const ref = await torchRef(request);

/** The port's parameter count, from the shapes a `keys` case returned. */
function portCount(key: string): number {
  const keys = ref[key] as unknown as Record<string, number[]>;
  return Object.values(keys).reduce((n, s) => n + s.reduce((a, b) => a * b, 1), 0);
}

for (const [name, { cfg, capture }] of Object.entries(CASES)) {
  Deno.test(`UNet ${name} against the PyTorch port`, async (t) => {
    const ts = tsModels[name];

    await t.step("state-dict keys and shapes equal the port's, in the same order", () => {
      const keys = ref[`keys ${name}`] as unknown as Record<string, number[]>;
      assert.deepEqual(shapesOf(ts), Object.entries(keys));
      const { channelMult, numResBlocks } = resolveConfig(cfg);
      assert.equal(ts.numOutputBlocks, channelMult.length * (numResBlocks + 1));
    });

    const py = ref[`from python ${name}`] as Record<string, RefValue>;
    const pySd = py.state_dict as Record<string, RefValue>;
    const fromPy = newUNet(cfg).eval();
    let full: ReturnType<typeof forwardBackward> | null = null;

    await t.step("the port's weights load into TS (strict)", () => {
      const report = fromPy.loadStateDict(Object.fromEntries(Object.entries(pySd).map(([k, v]) => [k, fromRef(v, k)])));
      assert.equal(report.loaded.length, fromPy.parameters().length);
      for (const [k, p] of fromPy.namedParameters()) assertClose(p, pySd[k], { rtol: 0, atol: 0 }, k);
    });

    await t.step("output, loss and captured decoder features agree", () => {
      full = forwardBackward(fromPy, x, steps, target, capture);
      assertScaled(full.output, py.out, FORWARD, "output");
      assertScaled(full.loss, py.loss, FORWARD, "loss");
      const feats = py.features as RefValue[];
      assert.equal(full.features.length, capture.length);
      full.features.forEach((f, i) => assertScaled(f, feats[i], FORWARD, `output_blocks.${capture[i]}`));
    });

    await t.step("after one backward pass every parameter's gradient and the input's agree", () => {
      assert.ok(full, "the forward step failed");
      assertGradients(full, py);
    });

    await t.step("stopAfterCapture returns the same features and no output", () => {
      assert.ok(full, "the forward step failed");
      const early = noGrad(() => fromPy.forward(x, steps, { capture, stopAfterCapture: true }));
      assert.equal(early.output, null);
      assert.equal(early.features.length, capture.length);
      // The same kernels on the same values: bit for bit.
      early.features.forEach((f, i) => assertIdentical(f, full!.features[i], `feature ${i}`));
    });

    await t.step("TS's weights load into the port: output, features, loss and input gradient agree", () => {
      const fromTs = ref[`from ts ${name}`] as Record<string, RefValue>;
      const ours = forwardBackward(ts, x, steps, target, capture);
      assertScaled(ours.output, fromTs.out, FORWARD, "output");
      assertScaled(ours.loss, fromTs.loss, FORWARD, "loss");
      ours.features.forEach((f, i) => assertScaled(f, (fromTs.features as RefValue[])[i], FORWARD, `feature ${i}`));
      assertScaled(ours.xGrad, fromTs.x_grad, GRAD, "gradient of x");
    });

    await t.step("channels-last activations and weights give the port's output, features and gradients", () => {
      const cl = newUNet({ ...cfg, channelsLast: true }).eval();
      cl.loadStateDict(fromPy.stateDict());
      const ours = forwardBackward(cl, x, steps, target, capture);
      assert.ok(ours.features.every((f) => f.isMemoryFormat("channelsLast")), "features are not channels-last");
      assertScaled(ours.output, py.out, FORWARD, "output");
      assertScaled(ours.loss, py.loss, FORWARD, "loss");
      ours.features.forEach((f, i) => assertScaled(f, (py.features as RefValue[])[i], FORWARD, `feature ${i}`));
      assertGradients(ours, py);
    });

    await t.step("the bfloat16 torso runs and stays close to float32 and to the port's bfloat16 torso", () => {
      const bf = newUNet({ ...cfg, torsoDtype: "bfloat16" }).eval();
      bf.loadStateDict(fromPy.stateDict());
      const { output, features } = noGrad(() => bf.forward(x, steps, { capture }));
      assert.equal(output!.dtype, "float32"); // the out layers run in float32, like guided-diffusion's
      assert.equal(features[0].dtype, "bfloat16");
      assertScaled(output, py.out, BF16, "bfloat16 torso against float32");
      assertScaled(output, py.out_bf16, BF16, "bfloat16 torso against the port's");
    });
  });
}

Deno.test("the paper's presets: parameter counts, keys and shapes equal the port's", async (t) => {
  for (const [name, preset] of [["MEDICAL_256", MEDICAL_256], ["FFHQ_256", FFHQ_256]] as const) {
    await t.step(name, () => {
      const keys = ref[`keys ${name}`] as unknown as Record<string, number[]>;
      // Shapes do not depend on the dtype: bfloat16 halves the ~1.2 and ~2.2 GB to allocate.
      const model = new UNet(preset, rootBuilder({ dtype: "bfloat16", device: DEVICE }));
      try {
        assert.equal(model.numParameters(), portCount(`keys ${name}`));
        assert.deepEqual(shapesOf(model), Object.entries(keys));
        // 6 levels × 3 decoder blocks: the paper's "18 decoder blocks" (Appendix A.2).
        assert.equal(model.numOutputBlocks, 18);
      } finally {
        // Free the weights now rather than at exit.
        for (const p of model.parameters()) p.dispose();
      }
    });
  }
});

Deno.test("invalid configs and inputs give clear errors", async (t) => {
  const base = CASES[A].cfg;
  await t.step("channels that GroupNorm's 32 groups do not divide", () => {
    assert.throws(() => newUNet({ ...base, modelChannels: 48 }), {
      name: "RangeError",
      message: /48 .*multiple of 32/,
    });
    assert.throws(() => newUNet({ ...base, channelMult: [1, 1.5] }), { name: "RangeError", message: /multiple of 32/ });
  });
  await t.step("attention resolutions that do not divide the image size", () => {
    for (const r of [24, 64, 0]) {
      assert.throws(() => newUNet({ ...base, attentionResolutions: [r] }), {
        name: "RangeError",
        message: new RegExp(`attention resolution ${r} does not divide imageSize 32`),
      });
    }
  });
  await t.step("heads that do not split the channels", () => {
    assert.throws(() => newUNet({ ...base, numHeadChannels: 24 }), {
      name: "RangeError",
      message: /not divisible by 24/,
    });
    assert.throws(() => newUNet({ ...base, numHeadChannels: -1, numHeads: 3 }), {
      name: "RangeError",
      message: /do not split into 3 heads/,
    });
  });
  await t.step("inputs of the wrong shape or size, timesteps of the wrong length, bad capture indices", () => {
    const model = newUNet({ ...base, channelMult: [1, 2, 2] }); // two downsamplings: H, W multiples of 4
    const t2 = tensor([1, 2], { dtype: "int64", device: DEVICE });
    const bad = (xs: number[], t = t2) => () => model.forward(randn(xs, { device: DEVICE }), t);
    assert.throws(bad([3, 32, 32]), { name: "TypeError", message: /x must be \[N, 3, H, W\], got \[3, 32, 32\]/ });
    assert.throws(bad([2, 4, 32, 32]), { name: "TypeError", message: /x must be \[N, 3, H, W\]/ });
    assert.throws(bad([2, 3, 30, 32]), { name: "TypeError", message: /multiples of 4, got \[2, 3, 30, 32\]/ });
    assert.throws(bad([2, 3, 32, 32], tensor([1, 2, 3], { dtype: "int64", device: DEVICE })), {
      name: "TypeError",
      message: /t must be \[2\], got \[3\]/,
    });
    const x1 = randn([2, 3, 8, 8], { device: DEVICE });
    for (const i of [9, -1, 1.5]) {
      assert.throws(() => model.forward(x1, t2, { capture: [i] }), { name: "RangeError", message: /0\.\.8/ });
    }
  });
});

Deno.test("Module utilities on the UNet", async (t) => {
  const cfg = CASES[A].cfg;
  const x8 = randn([2, 3, 8, 8], { device: DEVICE });
  const t2 = tensor([3, 400], { dtype: "int64", device: DEVICE });

  await t.step("train() and eval() switch dropout", () => {
    const model = randomize(newUNet({ ...cfg, dropout: 0.5 }));
    assert.equal(model.training, true); // a new module trains, as in PyTorch
    const run = () => noGrad(() => model.forward(x8, t2).output!);
    const [a, b] = [run(), run()];
    assert.ok(a.sub(b).abs().amax().item() > 1e-3, "two training-mode forwards agree: dropout is off");
    model.eval();
    assert.equal(model.training, false);
    assertIdentical(run(), run(), "eval-mode forwards");
    model.train();
    assert.ok(run().sub(run()).abs().amax().item() > 1e-3, "train() did not turn dropout back on");
  });

  await t.step("parameters(), numParameters() and stateDict() see the same live tensors", () => {
    const model = newUNet(cfg);
    const named = model.namedParameters();
    const sd = model.stateDict();
    assert.equal(model.parameters().length, named.length);
    assert.equal(sd.size, named.length); // the UNet has no buffers
    assert.equal(model.numParameters(), named.reduce((n, [, p]) => n + p.numel, 0));
    for (const [k, p] of named) {
      assert.equal(sd.get(k), p, `${k}: stateDict() holds a copy, not the parameter`);
      assert.ok(p.requiresGrad, `${k} does not require grad`);
    }
    // The Python port's count for this config (see the keys comparison above).
    assert.equal(model.numParameters(), portCount(`keys ${A}`));
  });

  await t.step("loadStateDict: strict errors name the keys; non-strict loads the rest and reports", () => {
    const model = newUNet(cfg);
    const source = randomize(newUNet(cfg)).stateDict();
    const bad = new Map(source);
    bad.delete("out.2.bias");
    bad.set("extra.weight", randn([4], { device: DEVICE }));
    bad.set("out.0.weight", randn([33], { device: DEVICE }));
    const before = model.stateDict().get("input_blocks.0.0.weight")!.clone();

    const strictError = (dict: Map<string, Tensor>): StateDictError => {
      try {
        model.loadStateDict(dict);
      } catch (e) {
        if (e instanceof StateDictError) return e;
        throw e;
      }
      throw new Error("a strict load of a defective state dict did not throw");
    };
    const err = strictError(bad);
    assert.deepEqual(err.report.missing, ["out.2.bias"]);
    assert.match(err.message, /missing keys: out\.2\.bias/);
    assert.match(err.message, /unexpected keys: extra\.weight/);
    assert.match(err.message, /out\.0\.weight \(model \[32\], file \[33\]\)/);
    // Each defect alone is enough to fail.
    const only = (edit: (m: Map<string, Tensor>) => void) => {
      const m = new Map(source);
      edit(m);
      return m;
    };
    assert.match(strictError(only((m) => m.delete("out.2.bias"))).message, /^[^;]*missing keys: out\.2\.bias$/);
    assert.match(strictError(only((m) => m.set("extra.weight", bad.get("extra.weight")!))).message, /unexpected/);
    assert.match(strictError(only((m) => m.set("out.0.weight", bad.get("out.0.weight")!))).message, /shape mism/);
    // A strict failure loads nothing.
    assertIdentical(model.stateDict().get("input_blocks.0.0.weight")!, before, "after a failed strict load");

    const report = model.loadStateDict(bad, { strict: false });
    assert.deepEqual(report.missing, ["out.2.bias"]);
    assert.deepEqual(report.unexpected, ["extra.weight"]);
    assert.deepEqual(report.mismatched, [{ key: "out.0.weight", expected: [32], got: [33] }]);
    assert.equal(report.loaded.length, source.size - 2);
    const now = model.stateDict();
    for (const k of report.loaded) assertIdentical(now.get(k)!, source.get(k)!, k);
    // The keys it could not load keep their values: zero-initialised bias, GroupNorm's ones.
    assert.ok((now.get("out.2.bias")!.toArray() as Float32Array).every((v) => v === 0));
    assert.ok((now.get("out.0.weight")!.toArray() as Float32Array).every((v) => v === 1));
  });

  await t.step("to({dtype: 'float64'}) converts every parameter in place; handles stay valid", () => {
    const model = randomize(newUNet(cfg));
    const held = model.parameters();
    const values = held.map((p) => p.toArray() as Float32Array);
    const out32 = noGrad(() => model.forward(x8, t2).output!);
    model.to({ dtype: "float64" });
    held.forEach((p, i) => {
      assert.equal(p.dtype, "float64");
      assert.ok(p.requiresGrad && p.isLeaf, "the parameter lost its leaf status");
      assert.deepEqual(Array.from(p.toArray() as Float64Array), Array.from(values[i]));
    });
    assert.equal(model.stateDict().get("out.2.weight"), model.outConv.weight);
    assert.equal(model.outConv.weight.dtype, "float64");
    // float32 -> float64 -> float32 is exact: the model computes as before.
    model.to({ dtype: "float32" });
    assertIdentical(noGrad(() => model.forward(x8, t2).output!), out32, "output after the round trip");
  });
});

Deno.test("channels-last is the default on CPUs with libtorch 2, off with 1.x, and a config's choice wins", () => {
  const cfg = { imageSize: 8, modelChannels: 32, channelMult: [1], numResBlocks: 1, attentionResolutions: [] };
  const onCpu = (c: Partial<Config>) => new UNet({ ...cfg, ...c }, rootBuilder({ device: "cpu" })).config.channelsLast;
  assert.equal(onCpu({}), (ref["torch major"] as unknown as number) >= 2);
  assert.equal(onCpu({ channelsLast: false }), false);
  assert.equal(onCpu({ channelsLast: true }), true);
  assert.equal(defaultChannelsLast("cuda"), false);
  assert.equal(resolveConfig(cfg).channelsLast, false, "resolveConfig alone keeps guided-diffusion's layout");
});

Deno.test("forward and backward inside tidy leave no native handles behind", () => {
  const cfg = CASES[B].cfg;
  const model = randomize(newUNet(cfg));
  const x8 = randn([2, 3, 16, 16], { device: DEVICE });
  const t2 = tensor([3, 400], { dtype: "int64", device: DEVICE });
  const before = liveTensors();
  tidy(() => {
    const { output, features } = model.forward(x8.clone().requiresGrad_(true), t2, { capture: [2, 5] });
    output!.square().mean().add(features[0].mean()).backward();
  });
  tidy(() => { // (braces: a tidy keeps the tensors its callback returns)
    model.forward(x8, t2, { capture: [2, 5], stopAfterCapture: true });
  });
  assert.equal(liveTensors(), before);
  // The backward pass did reach the parameters.
  assert.ok(model.parameters().every((p) => tidy(() => p.grad !== null)));
});
