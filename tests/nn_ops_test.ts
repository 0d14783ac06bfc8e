// The functional nn ops against PyTorch (Debian's torch 1.13, the libtorch build mdm links) on
// seeded inputs, with gradients where the op is differentiable (tests/helpers/op_harness.ts). Every
// case runs in one Python process; each compares with a stated tolerance.
import { F, manualSeed, ones, rand, randint, randn, type Tensor, tidy, zeros } from "../mod.ts";
import { type Arg, call, dt, EXACT, type OpCase, OpSuite, type Tol } from "./helpers/op_harness.ts";
import { assertClose, DEVICE, refOf } from "./helpers/torch_ref.ts";
import { Conv1d } from "../src/nn/layers.ts";
import { rootBuilder } from "../src/nn/module.ts";

// Elementwise float32 math: a few ulps of slack for differently vectorised or CUDA kernels.
const ELEMENTWISE: Tol = { rtol: 1e-5, atol: 1e-6 };
// Sums of tens to hundreds of products (convolutions, normalisation statistics, weighted means).
const REDUCED: Tol = { rtol: 1e-4, atol: 1e-5 };
// Normalisation gradients sum cancelling terms: relative to the largest of each gradient.
const REDUCED_SCALED: Tol = { ...REDUCED, scaled: true };
// A bfloat16 result may differ by one unit in the last place (2^-7 relative) when a float32
// rounding difference lands on a bfloat16 rounding boundary.
const BF16: Tol = { rtol: 2 ** -7, atol: 1e-6 };
// cuDNN convolutions run in TF32 by default, in libtorch as in PyTorch (cudnn.allow_tf32): operands
// keep 10 mantissa bits (2^-11 rounding), so against the CPU float32 reference the error is about
// 1e-3 of the outputs' scale. Wrong strides, paddings or groups still miss by the whole scale.
const CONV: Tol = DEVICE === "cpu" ? REDUCED : { rtol: 1e-2, atol: 0, scaled: true };

// Every case states its tolerance.
const suite = new OpSuite();

const op = (name: string, args: Arg[], kwargs: OpCase["kwargs"], tol: Tol): OpCase => ({ op: name, args, kwargs, tol });

manualSeed(20240611);
const r = (...shape: number[]) => randn(shape);

// ---- convolutions
const x1 = r(2, 4, 12), w1 = r(6, 4, 3), b1 = r(6), w1g = r(6, 2, 3), w1dw = r(4, 1, 5), b1dw = r(4);
const x2 = r(2, 4, 9, 9), w2 = r(6, 4, 3, 3), b2 = r(6), w2pw = r(6, 4, 1, 1), w2g = r(6, 2, 3, 3);
const w2dw = r(4, 1, 3, 3), b2dw = r(4), w2dw2 = r(8, 1, 3, 3), w2rect = r(6, 4, 3, 2);
const xt = r(2, 4, 5, 5), wt4 = r(4, 3, 4, 4), wt3 = r(4, 3, 3, 3), bt = r(3), btg = r(6);

suite.test("conv1d, conv2d and convTranspose2d agree with PyTorch", {
  "conv1d": op("conv1d", [x1, w1, b1], undefined, CONV),
  "conv1d stride 2, padding 1, dilation 2": op("conv1d", [x1, w1, b1], { stride: 2, padding: 1, dilation: 2 }, CONV),
  "conv1d groups 2, no bias": op("conv1d", [x1, w1g, null], { padding: 1, groups: 2 }, CONV),
  "conv1d depthwise": op("conv1d", [x1, w1dw, b1dw], { padding: 2, groups: 4 }, CONV),
  "conv2d 3x3 padding 1 (guided-diffusion's conv)": op("conv2d", [x2, w2, b2], { padding: 1 }, CONV),
  "conv2d 1x1, no bias (skip connection)": op("conv2d", [x2, w2pw], undefined, CONV),
  "conv2d stride 2, padding 1 (guided-diffusion's downsample)": op(
    "conv2d",
    [x2, w2, b2],
    { stride: 2, padding: 1 },
    CONV,
  ),
  "conv2d dilation 2, padding 2": op("conv2d", [x2, w2, b2], { padding: 2, dilation: 2 }, CONV),
  "conv2d groups 2, no bias": op("conv2d", [x2, w2g, null], { padding: 1, groups: 2 }, CONV),
  "conv2d depthwise": op("conv2d", [x2, w2dw, b2dw], { padding: 1, groups: 4 }, CONV),
  "conv2d depthwise, channel multiplier 2": op("conv2d", [x2, w2dw2, null], { groups: 4 }, CONV),
  "conv2d per-axis stride, padding, dilation and a 3x2 kernel": op(
    "conv2d",
    [x2, w2rect, b2],
    { stride: [2, 1], padding: [1, 0], dilation: [1, 2] },
    CONV,
  ),
  "convTranspose2d 4x4 stride 2 padding 1 (exact 2x upsampling)": op(
    "convTranspose2d",
    [xt, wt4, bt],
    { stride: 2, padding: 1 },
    CONV,
  ),
  "convTranspose2d 3x3 stride 2 padding 1 output padding 1": op(
    "convTranspose2d",
    [xt, wt3, bt],
    { stride: 2, padding: 1, outputPadding: 1 },
    CONV,
  ),
  "convTranspose2d groups 2": op("convTranspose2d", [xt, wt3, btg], { stride: 2, groups: 2 }, CONV),
  "convTranspose2d dilation 2, per-axis output padding, no bias": op(
    "convTranspose2d",
    [xt, wt3, null],
    { stride: [2, 3], outputPadding: [1, 2], dilation: 2 },
    CONV,
  ),
});

// ---- normalisation
const xg = r(2, 64, 6, 6), gw = r(64), gb = r(64), xg1 = r(2, 64, 10);
const xgb = r(2, 64, 4, 4).mul(3).add(1).to("bfloat16");
const xbn = r(4, 3, 5, 5).mul(2).add(0.5), bnw = r(3), bnb = r(3), bnx2 = r(8, 3);
const rm = r(3).mul(0.1), rv = rand([3]).add(0.5);
const xln = r(2, 5, 8), lnw = r(8), lnb = r(8);

// The fused norm-activation: the fused kernel (float32, the default layout) and the separate ops it
// falls back to (another dtype, channels-last, a transposed view), each with every gradient.
const gx = r(3, 64, 9, 7), gsc = r(3, 64).mul(0.5), gsh = r(3, 64), gx1 = r(2, 32, 20);
const gxl = r(2, 64, 5, 6).toMemoryFormat("channelsLast"), gxt = r(2, 6, 64, 5).transpose(1, 2);
const gsh2 = r(2, 64);

suite.test("groupNormSilu agrees with silu(groupNorm(x)·(1 + scale) + shift)", {
  "32 groups, weight and bias, no scale-shift": op("groupNormSilu", [gx, 32], { weight: gw, bias: gb }, REDUCED),
  "32 groups with the timestep's scale and shift": op(
    "groupNormSilu",
    [gx, 32],
    { weight: gw, bias: gb, scale: gsc, shift: gsh },
    REDUCED,
  ),
  "8 groups, scale only, eps 1e-6": op("groupNormSilu", [gx, 8], { weight: gw, scale: gsc, eps: 1e-6 }, REDUCED),
  "one group, no affine, on [N, C, L]": op("groupNormSilu", [gx1, 1], undefined, REDUCED),
  "float64 (the separate ops)": op(
    "groupNormSilu",
    [call("to", gx, dt("float64")), 32],
    { weight: call("to", gw, dt("float64")), scale: call("to", gsc, dt("float64")) },
    REDUCED,
  ),
  "channels-last input (the separate ops)": op(
    "groupNormSilu",
    [gxl, 32],
    // (PyTorch 1.13's group_norm backward fails with a bias but no weight on channels-last input.)
    { weight: gw, bias: gb, shift: gsh2 },
    REDUCED,
  ),
  "a transposed view (the separate ops)": op("groupNormSilu", [gxt, 16], { weight: gw }, REDUCED),
});

suite.test("groupNorm, batchNorm and layerNorm agree with PyTorch", {
  "groupNorm 32 groups on 64 channels": op("groupNorm", [xg, 32, gw, gb], undefined, REDUCED),
  "groupNorm without affine, on [N, C, L] (the attention block's norm)": op("groupNorm", [xg1, 32], undefined, REDUCED),
  "groupNorm 8 groups, eps 1e-6": op("groupNorm", [xg, 8, gw, gb, 1e-6], undefined, REDUCED),
  "groupNorm of bfloat16 in float32, as GroupNorm32 does": op(
    "to",
    [call("groupNorm", call("float", xgb), 32, gw, gb), dt("bfloat16")],
    undefined,
    BF16,
  ),
  // With running statistics the result is [y, runningMean, runningVar] after the update.
  "batchNorm training: output and in-place running statistics": op(
    "batchNorm",
    [xbn],
    { runningMean: rm, runningVar: rv, weight: bnw, bias: bnb, training: true, momentum: 0.2 },
    REDUCED,
  ),
  "batchNorm training on [N, C], default momentum": op(
    "batchNorm",
    [bnx2],
    { runningMean: rm, runningVar: rv, training: true },
    REDUCED,
  ),
  "batchNorm training without running statistics": op(
    "batchNorm",
    [xbn],
    { weight: bnw, bias: bnb, training: true },
    REDUCED,
  ),
  "batchNorm eval: running statistics used and left alone": op(
    "batchNorm",
    [xbn],
    { runningMean: rm, runningVar: rv, weight: bnw, bias: bnb, training: false, eps: 1e-3 },
    REDUCED,
  ),
  "layerNorm over the last dimension": op("layerNorm", [xln, [8], lnw, lnb], undefined, REDUCED),
  "layerNorm over two dimensions, no affine, eps 1e-6": op(
    "layerNorm",
    [xln, [5, 8], null, null, 1e-6],
    undefined,
    REDUCED,
  ),
});

// ---- softmax and activations
const xs = r(3, 7, 5), xsBig = r(4, 9).mul(50), xsb = r(4, 10).mul(4).to("bfloat16");
const xa = randn([4, 50]).mul(3);
const f32 = { dtype: dt("float32") };

suite.test("softmax and logSoftmax agree with PyTorch", {
  "softmax dim 1": op("softmax", [xs, 1], undefined, ELEMENTWISE),
  "softmax dim -1": op("softmax", [xs, -1], undefined, ELEMENTWISE),
  "logSoftmax dim 0": op("logSoftmax", [xs, 0], undefined, ELEMENTWISE),
  "softmax of large logits (no overflow)": op("softmax", [xsBig, -1], undefined, ELEMENTWISE),
  "logSoftmax of large logits (no overflow)": op("logSoftmax", [xsBig, -1], undefined, ELEMENTWISE),
  "softmax of bfloat16 computed in float32": op("softmax", [xsb, -1], f32, ELEMENTWISE),
  "logSoftmax of bfloat16 computed in float32": op("logSoftmax", [xsb, -1], f32, ELEMENTWISE),
  "Tensor.softmax with a dtype": op("Tensor.softmax", [xsb, 0], f32, ELEMENTWISE),
  "softmax in bfloat16": op("softmax", [xsb, -1], undefined, BF16),
});

// Attention: [N·heads, L, ch], one length against another, transposed views; and as the UNet calls
// it, [N, heads, L, ch] views of its [N, L, heads, 3, ch] qkv product.
const aq = r(6, 16, 8), ak = r(6, 20, 8), av = r(6, 20, 8), aqkv = r(4, 24, 64);
const [tq, tk, tv] = aqkv.split(8, 1).map((t) => t.transpose(1, 2)); // [4, 64, 8] views of [4, 8, 64]
const hqkv = r(2, 64, 3, 3, 8); // [N, L, heads, 3, ch]
const [hq, hk, hv] = [0, 1, 2].map((i) => hqkv.select(3, i).transpose(1, 2)); // [2, 3, 64, 8]

suite.test("scaledDotProductAttention agrees with softmax(q kᵀ · scale) v", {
  "default scale": op("scaledDotProductAttention", [aq, ak, av], undefined, REDUCED),
  "scale 0.1": op("scaledDotProductAttention", [aq, ak, av], { scale: 0.1 }, REDUCED),
  "transposed views of one qkv tensor": op("scaledDotProductAttention", [tq, tk, tv], undefined, REDUCED),
  "[N, heads, L, ch] views of one qkv tensor": op("scaledDotProductAttention", [hq, hk, hv], undefined, REDUCED),
});

suite.test("relu, silu and gelu agree with PyTorch", {
  "relu": op("relu", [xa], undefined, EXACT),
  "silu": op("silu", [xa], undefined, ELEMENTWISE),
  "gelu exact": op("gelu", [xa], undefined, ELEMENTWISE),
  "gelu tanh": op("gelu", [xa], { approximate: "tanh" }, ELEMENTWISE),
});

// ---- dropout: at::dropout on the CPU draws from the global CPU generator, so equal seeds give
// equal masks (CUDA draws differ, so these inputs stay on the CPU whatever the default device).
const xd = randn([16, 32], { device: "cpu" });

suite.test("dropout agree with PyTorch", {
  "dropout p=0.5 under manualSeed matches PyTorch's mask": { ...op("dropout", [xd, 0.5], undefined, EXACT), seed: 7 },
  "dropout p=0.2 under manualSeed matches PyTorch's mask": { ...op("dropout", [xd, 0.2], undefined, EXACT), seed: 11 },
});

// ---- pooling and resampling
const xp = r(2, 3, 8, 8), xpo = r(2, 3, 7, 9);
const xi = r(2, 3, 5, 5), xi7 = r(1, 2, 7, 7), xi9 = r(1, 2, 9, 9);

suite.test("avgPool2d, maxPool2d and interpolate agree with PyTorch", {
  "avgPool2d 2x2 (guided-diffusion's downsample)": op("avgPool2d", [xp, 2], undefined, ELEMENTWISE),
  "avgPool2d 3x3 stride 2 padding 1, padding counted": op("avgPool2d", [xp, 3], { stride: 2, padding: 1 }, ELEMENTWISE),
  "avgPool2d 3x3 stride 2 padding 1, padding not counted": op(
    "avgPool2d",
    [xp, 3],
    { stride: 2, padding: 1, countIncludePad: false },
    ELEMENTWISE,
  ),
  "avgPool2d 2x3 kernel, stride (1, 2), ceil mode on an odd size": op(
    "avgPool2d",
    [xpo, [2, 3]],
    { stride: [1, 2], ceilMode: true },
    ELEMENTWISE,
  ),
  "maxPool2d 2x2": op("maxPool2d", [xp, 2], undefined, EXACT),
  "maxPool2d 3x3 stride 2 padding 1": op("maxPool2d", [xp, 3], { stride: 2, padding: 1 }, EXACT),
  "maxPool2d ceil mode on an odd size": op("maxPool2d", [xpo, 2], { ceilMode: true }, EXACT),
  "interpolate nearest, scaleFactor 2 (guided-diffusion's upsample)": op(
    "interpolate",
    [xi],
    { scaleFactor: 2 },
    EXACT,
  ),
  "interpolate nearest to a size": op("interpolate", [xi], { size: [7, 11], mode: "nearest" }, EXACT),
  // With a non-integer factor PyTorch maps indices by 1/scale, not by in/out size: 5 * 1.7 = 8.5.
  "interpolate nearest, scaleFactor 1.7": op("interpolate", [xi], { scaleFactor: 1.7 }, EXACT),
  "interpolate nearest, per-axis scaleFactor": op("interpolate", [xi], { scaleFactor: [2, 3] }, EXACT),
  "interpolate bilinear 7x7 -> 20x20, alignCorners false": op(
    "interpolate",
    [xi7],
    { size: [20, 20], mode: "bilinear", alignCorners: false },
    ELEMENTWISE,
  ),
  // Without alignCorners, as PyTorch's default (False).
  "interpolate bilinear down 9x9 -> 4x5, alignCorners false": op(
    "interpolate",
    [xi9],
    { size: [4, 5], mode: "bilinear" },
    ELEMENTWISE,
  ),
  "interpolate bilinear, scaleFactor 1.5": op(
    "interpolate",
    [xi7],
    { scaleFactor: 1.5, mode: "bilinear" },
    ELEMENTWISE,
  ),
  "interpolate bilinear 7x7 -> 20x20, alignCorners true": op(
    "interpolate",
    [xi7],
    { size: [20, 20], mode: "bilinear", alignCorners: true },
    ELEMENTWISE,
  ),
});

// ---- padding
const xpad = r(2, 3, 4, 5), xpad1 = r(2, 3, 6);

suite.test("pad agree with PyTorch", {
  "constant, last dimension only": op("pad", [xpad, [1, 2]], undefined, EXACT),
  "constant with a value": op("pad", [xpad, [1, 2, 3, 0], "constant", -1.5], undefined, EXACT),
  "reflect": op("pad", [xpad, [2, 1, 1, 2], "reflect"], undefined, EXACT),
  "reflect on [N, C, L]": op("pad", [xpad1, [3, 2], "reflect"], undefined, EXACT),
  "replicate": op("pad", [xpad, [1, 3, 2, 0], "replicate"], undefined, EXACT),
  "circular": op("pad", [xpad, [2, 1, 1, 2], "circular"], undefined, EXACT),
});

// ---- losses
const K = 5;
const ce2 = r(6, K), t2 = randint(0, K, [6]);
const ce4 = r(2, K, 4, 4), t4 = randint(0, K, [2, 4, 4]);
const t4ign = t4.maskedFill(rand([2, 4, 4]).lt(0.3), 255);
const t4all = t4.mul(0).add(255);
const cw = rand([K]).add(0.5);
const la = r(3, 4, 5), lb = r(3, 4, 5);
const lb5 = lb.select(0, 0).select(0, 0);

const losses: Record<string, OpCase> = {};
for (const reduction of ["mean", "sum", "none"] as const) {
  losses[`crossEntropy [N, K], ${reduction}`] = op("crossEntropy", [ce2, t2], { reduction }, ELEMENTWISE);
  losses[`crossEntropy [N, K, H, W], ignoreIndex 255, ${reduction}`] = op(
    "crossEntropy",
    [ce4, t4ign],
    { ignoreIndex: 255, reduction },
    ELEMENTWISE,
  );
  losses[`crossEntropy class weights, ignoreIndex 255, ${reduction}`] = op(
    "crossEntropy",
    [ce4, t4ign],
    { weight: cw, ignoreIndex: 255, reduction },
    ELEMENTWISE,
  );
  losses[`crossEntropy label smoothing 0.1, class weights, ignoreIndex 255, ${reduction}`] = op(
    "crossEntropy",
    [ce4, t4ign],
    { weight: cw, ignoreIndex: 255, labelSmoothing: 0.1, reduction },
    ELEMENTWISE,
  );
  losses[`mseLoss ${reduction}`] = op("mseLoss", [la, lb], { reduction }, ELEMENTWISE);
  losses[`l1Loss ${reduction}`] = op("l1Loss", [la, lb], { reduction }, ELEMENTWISE);
}
losses["crossEntropy label smoothing 0.2 without weights"] = op(
  "crossEntropy",
  [ce4, t4ign],
  { ignoreIndex: 255, labelSmoothing: 0.2 },
  ELEMENTWISE,
);
// Mean over zero counted pixels is 0/0: NaN in PyTorch, and so here.
losses["crossEntropy with every pixel ignored, mean"] = op("crossEntropy", [ce4, t4all], { ignoreIndex: 255 }, EXACT);
// PyTorch warns that the target's shape differs from the input's. The target's gradient sums over
// the 60 broadcast elements: at::mse_loss on the unbroadcast shapes divided it by the target's 5.
losses["mseLoss broadcasting [3, 4, 5] against [5]"] = op("mseLoss", [la, lb5], undefined, ELEMENTWISE);
losses["l1Loss broadcasting [3, 4, 5] against [5]"] = op("l1Loss", [la, lb5], undefined, ELEMENTWISE);

suite.test("crossEntropy, mseLoss and l1Loss agree with PyTorch", losses);

// ---- gradients in the configurations the guided-diffusion UNet uses (every case above checks
// gradients too; these are the UNet's shapes, groups and strides)
manualSeed(31337);
const g = (...shape: number[]) => randn(shape);
const ga = g(2, 3, 4), gbmm = g(2, 4, 5), gbig = g(4, 24, 20), gbig2 = g(4, 24, 16);
const gce = g(2, 5, 4, 4), gce2 = g(2, 5, 4, 4);
const gtarget = randint(0, 5, [2, 4, 4]).maskedFill(rand([2, 4, 4]).lt(0.3), 255), gcw = rand([5]).add(0.5);
const gpos = rand([3, 4]).add(0.5), gexp = rand([3, 4]).add(0.5);

suite.test("gradients of the UNet's ops agree with PyTorch", {
  "conv2d stride 2 padding 1: x, w, b": op(
    "conv2d",
    [g(2, 4, 7, 7), g(6, 4, 3, 3), g(6)],
    { stride: 2, padding: 1 },
    CONV,
  ),
  "conv1d groups 2, stride 2: x, w, b": op("conv1d", [g(2, 4, 9), g(4, 2, 3), g(4)], { stride: 2, groups: 2 }, CONV),
  "linear: x, w, b": op("linear", [g(3, 5, 8), g(6, 8), g(6)], undefined, REDUCED),
  "groupNorm 32 groups: x, weight, bias": op(
    "groupNorm",
    [g(2, 64, 4, 4), 32, g(64), g(64)],
    undefined,
    REDUCED_SCALED,
  ),
  "batchNorm training: x, weight, bias": op(
    "batchNorm",
    [g(4, 6, 3, 3)],
    { weight: g(6), bias: g(6), runningMean: zeros([6]), runningVar: ones([6]), training: true },
    REDUCED_SCALED,
  ),
  "layerNorm: x, weight, bias": op("layerNorm", [g(3, 4, 10), [10], g(10), g(10)], undefined, REDUCED_SCALED),
  "silu": op("silu", [g(4, 30)], undefined, ELEMENTWISE),
  "softmax": op("softmax", [g(3, 4, 9), -1], undefined, ELEMENTWISE),
  "bmm": op("bmm", [ga, gbmm], undefined, REDUCED),
  // Large enough for bmm's batch to be split over the threads (native/bmm.cpp), with a transposed
  // operand as the attention passes it.
  "bmm split over threads: aᵀ·b": op("bmm", [call("transpose", gbig, 1, 2), gbig2], undefined, REDUCED),
  "avgPool2d 2x2": op("avgPool2d", [g(2, 3, 6, 6), 2], undefined, ELEMENTWISE),
  "interpolate nearest, scaleFactor 2": op("interpolate", [g(2, 3, 4, 4)], { scaleFactor: 2 }, ELEMENTWISE),
  "cat along channels (the UNet's skip connections)": op("cat", [[ga, g(2, 5, 4)], 1], undefined, ELEMENTWISE),
  "chunk": op("chunk", [g(2, 6, 5), 3, 1], undefined, ELEMENTWISE),
  "mul and add with broadcasting": op("add", [call("mul", ga, g(3, 1)), g(4)], undefined, REDUCED),
  "mean over some dimensions, keepdim": op("mean", [g(2, 3, 4, 5), [2, 3], true], undefined, ELEMENTWISE),
  "mseLoss mean: both sides": op("mseLoss", [g(3, 4, 5), g(3, 4, 5)], undefined, ELEMENTWISE),
  "crossEntropy ignoreIndex 255 (ignored pixels get zero gradient)": op(
    "crossEntropy",
    [gce, gtarget],
    { ignoreIndex: 255 },
    ELEMENTWISE,
  ),
  "crossEntropy class weights, label smoothing, ignoreIndex 255": op(
    "crossEntropy",
    [gce2, gtarget],
    { weight: gcw, ignoreIndex: 255, labelSmoothing: 0.1 },
    ELEMENTWISE,
  ),
  "pow, sqrt and exp": op(
    "add",
    [call("add", call("add", call("pow", gpos, 3), call("sqrt", gpos)), call("exp", gpos)), call("pow", gpos, gexp)],
    undefined,
    ELEMENTWISE,
  ),
});

function assert(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

Deno.test("softmax with a dtype is typed and computed as that dtype", () =>
  tidy(() => {
    const p: Tensor<"float32"> = F.softmax(xsb, -1, "float32");
    const lp: Tensor<"float32"> = F.logSoftmax(xsb, -1, "float32");
    assert(p.dtype === "float32" && lp.dtype === "float32", `softmax gave ${p.dtype}, logSoftmax ${lp.dtype}`);
  }));

Deno.test("dropout properties", async (t) => {
  const x = randn([64, 64]);
  const xs = x.toArray();
  await t.step("p = 0 is the identity", () => {
    assertClose(F.dropout(x, 0), { dtype: "float32", shape: [64, 64], data: xs }, EXACT);
  });
  await t.step("training = false is the identity", () => {
    assertClose(F.dropout(x, 0.5, false), { dtype: "float32", shape: [64, 64], data: xs }, EXACT);
  });
  await t.step("p = 0.5 zeroes about half and doubles the rest", () => {
    manualSeed(3);
    const y = F.dropout(ones([64, 64]), 0.5).toArray();
    let zeros = 0;
    for (const v of y) {
      if (v === 0) zeros++;
      else assert(v === 2, `a kept element is ${v}, expected 1 / (1 - 0.5) = 2`);
    }
    // 4096 draws: the zero fraction's standard deviation is 0.008, so +-0.05 is over 6 sigma.
    const frac = zeros / y.length;
    assert(Math.abs(frac - 0.5) < 0.05, `zeroed fraction ${frac}, expected about 0.5`);
  });
  await t.step("p = 1 zeroes everything", () => {
    assert(F.dropout(x, 1).toArray().every((v) => v === 0), "dropout(p=1) left non-zero values");
  });
  await t.step("p outside [0, 1] is a RangeError", () => {
    for (const p of [-0.1, 1.5, NaN]) {
      let threw = false;
      try {
        F.dropout(x, p);
      } catch (e) {
        threw = e instanceof RangeError;
      }
      assert(threw, `dropout(p=${p}) did not throw a RangeError`);
    }
  });
});

// The attention block's 1×1 convolutions on channels-last maps: against F.conv1d (checked against
// PyTorch above) on the same values flattened to [N, C, H·W], forward and gradients.
Deno.test("Conv1d.forward2d is conv1d at every position of the map", async (t) => {
  manualSeed(11);
  const conv = new Conv1d(rootBuilder({ device: DEVICE }).pp("qkv"), 6, 9, 1);
  const x = randn([2, 6, 3, 4], { device: DEVICE }).toMemoryFormat("channelsLast"); // [N, C_in, H, W]
  await t.step("forward, layout and the weight's and bias's gradients", () => {
    const y = conv.forward2d(x);
    assert(y.isMemoryFormat("channelsLast"), "a channels-last input gave an output in another layout");
    y.square().sum().backward();
    const [gw, gb] = [conv.weight.grad!, conv.bias!.grad!].map((g) => g.clone());
    conv.weight.zeroGrad(true), conv.bias!.zeroGrad(true);
    const ref = F.conv1d(x.reshape(2, 6, 12), conv.weight, conv.bias).reshape(2, 9, 3, 4);
    ref.square().sum().backward();
    assertClose(y, refOf(ref), REDUCED, "output");
    assertClose(gw, refOf(conv.weight.grad!), REDUCED, "weight gradient [9, 6, 1]");
    assertClose(gb, refOf(conv.bias!.grad!), REDUCED, "bias gradient");
  });
  await t.step("a wider kernel is a RangeError naming the layer", () => {
    const wide = new Conv1d(rootBuilder({ device: DEVICE }).pp("wide"), 6, 9, 3);
    let message = "";
    try {
      wide.forward2d(x);
    } catch (e) {
      message = e instanceof RangeError ? e.message : `not a RangeError: ${e}`;
    }
    assert(message.startsWith("Conv1d wide: forward2d needs kernel 1"), `got "${message}"`);
  });
});
