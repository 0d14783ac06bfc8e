// Building models on loaded weights (VarBuilder with a store that holds them): loaded keys take the
// loaded tensor itself (the initialiser never runs, no copy is made), missing and mis-shaped keys
// are initialised and reported, unexpected keys stay with the caller, dtypes are converted once and
// a non-float parameter is refused by name; loadModel builds a UNet from a checkpoint that way and
// leaves no tensor behind, strict or not.
import assert from "node:assert/strict";
import { full, liveTensors, manualSeed, tensor, zeros } from "../mod.ts";
import type { Tensor } from "../src/tensor.ts";
import { loadModel } from "../src/io/weights.ts";
import { saveSafetensors } from "../src/io/safetensors.ts";
import { UNet } from "../src/models/unet/unet.ts";
import type { Init, VarBuilder } from "../src/nn/builder.ts";
import { BatchNorm1d } from "../src/nn/layers.ts";
import { Module, rootBuilder, StateDictError } from "../src/nn/module.ts";
import { DEVICE } from "./helpers/torch_ref.ts";

/** An initialiser that counts its calls and fills with 7. */
function counting(): { init: Init; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    init: (shape, opts) => {
      calls.push(shape.join("x"));
      return full(shape, 7, opts);
    },
  };
}

/** Three parameters a [2, 3], b [3], c [4] under "m", all from one initialiser. */
class Three extends Module {
  readonly a: Tensor;
  readonly b: Tensor;
  readonly c: Tensor;
  constructor(vb: VarBuilder, init: Init) {
    super(vb);
    this.a = vb.param("a", [2, 3], init);
    this.b = vb.param("b", [3], init);
    this.c = vb.param("c", [4], init);
  }
}

const values = (t: Tensor) => Array.from(t.toArray() as ArrayLike<number | bigint>, Number);

Deno.test("builder: loaded keys are the loaded tensors, only missing ones are initialised", () => {
  const { init, calls } = counting();
  const a = tensor(Float32Array.from([1, 2, 3, 4, 5, 6]), { device: DEVICE }).reshape(2, 3);
  const b = tensor(Float32Array.from([8, 9, 10]), { device: DEVICE });
  const extra = zeros([5], { device: DEVICE });
  const weights = new Map<string, Tensor>([["m.a", a], ["m.b", b], ["m.unused", extra]]);
  const vb = rootBuilder({ device: DEVICE, weights });
  const model = new Three(vb.pp("m"), init);

  assert.deepEqual(calls, ["4"], "the initialiser ran for m.c alone");
  assert.equal(model.a, a, "m.a is the loaded tensor itself, not a copy");
  assert.equal(model.b, b);
  assert.ok(model.a.requiresGrad && model.b.requiresGrad, "loaded parameters are trainable");
  assert.deepEqual(values(model.c), [7, 7, 7, 7]);
  assert.deepEqual(vb.store.loadReport(), {
    loaded: ["m.a", "m.b"],
    missing: ["m.c"],
    unexpected: ["m.unused"],
    mismatched: [],
  });
  assert.deepEqual([...weights.keys()], ["m.unused"], "the store took what it used; the rest is the caller's");
  extra.dispose();
  for (const t of model.parameters()) t.dispose();
});

Deno.test("builder: without weights every initialiser runs and the report is empty", () => {
  const { init, calls } = counting();
  const vb = rootBuilder({ device: DEVICE });
  const model = new Three(vb, init);
  assert.deepEqual(calls, ["2x3", "3", "4"]);
  assert.deepEqual(vb.store.loadReport(), { loaded: [], missing: [], unexpected: [], mismatched: [] });
  for (const t of model.parameters()) t.dispose();
});

Deno.test("builder: another shape is initialised and reported; another dtype is converted; ints are refused", () => {
  const { init, calls } = counting();
  const wrong = zeros([3, 2], { device: DEVICE });
  const wide = tensor(Float64Array.from([0.5, 1.5, 2.5]), { device: DEVICE });
  const weights = new Map<string, Tensor>([["a", wrong], ["b", wide], ["c", zeros([4], { device: DEVICE })]]);
  const vb = rootBuilder({ device: DEVICE, weights });
  const model = new Three(vb, init);
  assert.deepEqual(calls, ["2x3"], "m.a's [3, 2] does not fit [2, 3]: initialised instead");
  assert.equal(model.b.dtype, "float32");
  assert.deepEqual(values(model.b), [0.5, 1.5, 2.5]);
  const report = vb.store.loadReport();
  assert.deepEqual(report.mismatched, [{ key: "a", expected: [2, 3], got: [3, 2] }]);
  assert.deepEqual([report.loaded, report.missing, report.unexpected], [["b", "c"], [], []]);
  assert.deepEqual([...weights.keys()], ["a"], "the mis-shaped tensor stays the caller's");
  wrong.dispose();
  for (const t of model.parameters()) t.dispose();

  const ints = new Map<string, Tensor>([["a", zeros([2, 3], { dtype: "int64", device: DEVICE })]]);
  assert.throws(
    () => new Three(rootBuilder({ device: DEVICE, weights: ints }), init),
    /weights: a is int64; a parameter needs a floating-point tensor/,
  );
  for (const t of ints.values()) t.dispose();
});

Deno.test("builder: buffers are loaded too, in their own dtype", () => {
  const weights = new Map<string, Tensor>([
    ["running_mean", tensor(Float32Array.from([1, 2]), { device: DEVICE })],
    ["num_batches_tracked", tensor(Int32Array.from([5]), { device: DEVICE }).reshape([])],
  ]);
  const vb = rootBuilder({ device: DEVICE, weights });
  const bn = new BatchNorm1d(vb, 2);
  assert.deepEqual(values(bn.runningMean), [1, 2]);
  assert.equal(bn.numBatchesTracked.dtype, "int64");
  assert.deepEqual(values(bn.numBatchesTracked), [5]);
  assert.deepEqual(values(bn.runningVar), [1, 1], "running_var missing: the layer's own value");
  assert.deepEqual(vb.store.loadReport().missing, ["weight", "bias", "running_var"]);
  for (const t of bn.stateDict().values()) t.dispose();
});

Deno.test("loadModel: a UNet from safetensors holds the file's values and nothing else stays alive", () => {
  const dir = Deno.makeTempDirSync({ prefix: "mdm_builder_test_" });
  try {
    const config = {
      imageSize: 16,
      modelChannels: 32,
      channelMult: [1, 2],
      attentionResolutions: [8],
      numResBlocks: 1,
    };
    manualSeed(3);
    const source = new UNet(config, rootBuilder({ device: DEVICE }));
    const path = `${dir}/unet.safetensors`;
    saveSafetensors(path, source.stateDict());
    const expected = new Map([...source.stateDict()].map(([k, t]) => [k, values(t)]));
    const count = expected.size;
    for (const t of source.stateDict().values()) t.dispose();

    const before = liveTensors();
    const { model, report } = loadModel(path, (vb) => new UNet(config, vb), { device: DEVICE });
    assert.deepEqual([report.missing, report.unexpected, report.mismatched], [[], [], []]);
    assert.equal(report.loaded.length, count);
    for (const [k, t] of model.stateDict()) assert.deepEqual(values(t), expected.get(k), k);
    // One tensor per state-dict entry: no initialised copy, no loaded copy left over.
    assert.equal(liveTensors() - before, count);

    // A model with learned sigma (6 output channels): strict refuses naming the keys and keeps
    // nothing; non-strict initialises the two output tensors.
    const sigma = { ...config, learnSigma: true };
    assert.throws(() => loadModel(path, (vb) => new UNet(sigma, vb), { device: DEVICE }), (e: unknown) => {
      assert.ok(e instanceof StateDictError);
      assert.match(e.message, /shape mismatches: out\.2\.weight \(model \[6, 32, 3, 3\], file \[3, 32, 3, 3\]\)/);
      return true;
    });
    assert.equal(liveTensors() - before, count, "a refused load leaves no tensor behind");
    const loose = loadModel(path, (vb) => new UNet(sigma, vb), { device: DEVICE, strict: false });
    assert.deepEqual(loose.report.mismatched.map((m) => m.key), ["out.2.weight", "out.2.bias"]);
    assert.equal(loose.report.loaded.length, count - 2);
    for (const m of [model, loose.model]) for (const t of m.stateDict().values()) t.dispose();
    assert.equal(liveTensors(), before);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
