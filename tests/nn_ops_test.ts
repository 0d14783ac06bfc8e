// The functional nn ops against PyTorch (Debian's torch 1.13, the libtorch build mdm links) on
// seeded inputs. Every case runs in one Python process; each compares with a stated tolerance.
import { F, manualSeed, ones, rand, randint, randn, type Tensor } from "../mod.ts";
import {
  assertClose,
  DEVICE,
  type RefCase,
  refTensor,
  type RefValue,
  type Tolerance,
  torchRef,
} from "./helpers/torch_ref.ts";

/** With `scaled`, atol also gets rtol × the largest |reference|. */
type Tol = Tolerance & { scaled?: boolean };

interface OpCase {
  /** PyTorch: an expression, or statements assigning `result`. */
  py: string;
  inputs: Record<string, Tensor>;
  /** mdm's side; a list compares item by item with the list PyTorch returns. */
  ours: () => Tensor | Tensor[];
  tol: Tol;
  seed?: number;
}

// Ops that only move, select or copy values must agree bit for bit.
const EXACT: Tolerance = { rtol: 0, atol: 0 };
// Elementwise float32 math: a few ulps of slack for differently vectorised or CUDA kernels.
const ELEMENTWISE: Tolerance = { rtol: 1e-5, atol: 1e-6 };
// Sums of tens to hundreds of products (convolutions, normalisation statistics, weighted means).
const REDUCED: Tolerance = { rtol: 1e-4, atol: 1e-5 };
// A bfloat16 result may differ by one unit in the last place (2^-7 relative) when a float32
// rounding difference lands on a bfloat16 rounding boundary.
const BF16: Tolerance = { rtol: 2 ** -7, atol: 1e-6 };
// cuDNN convolutions run in TF32 by default, in libtorch as in PyTorch (cudnn.allow_tf32): operands
// keep 10 mantissa bits (2^-11 rounding), so against the CPU float32 reference the error is about
// 1e-3 of the outputs' scale. Wrong strides, paddings or groups still miss by the whole scale.
const CONV: Tol = DEVICE === "cpu" ? REDUCED : { rtol: 1e-2, atol: 0, scaled: true };

manualSeed(20240611);
const r = (...shape: number[]) => randn(shape);

// ---- convolutions
const x1 = r(2, 4, 12), w1 = r(6, 4, 3), b1 = r(6), w1g = r(6, 2, 3), w1dw = r(4, 1, 5), b1dw = r(4);
const x2 = r(2, 4, 9, 9), w2 = r(6, 4, 3, 3), b2 = r(6), w2pw = r(6, 4, 1, 1), w2g = r(6, 2, 3, 3);
const w2dw = r(4, 1, 3, 3), b2dw = r(4), w2dw2 = r(8, 1, 3, 3), w2rect = r(6, 4, 3, 2);
const xt = r(2, 4, 5, 5), wt4 = r(4, 3, 4, 4), wt3 = r(4, 3, 3, 3), bt = r(3), btg = r(6);

const conv: Record<string, OpCase> = {
  "conv1d": { py: "F.conv1d(x, w, b)", inputs: { x: x1, w: w1, b: b1 }, ours: () => F.conv1d(x1, w1, b1), tol: CONV },
  "conv1d stride 2, padding 1, dilation 2": {
    py: "F.conv1d(x, w, b, stride=2, padding=1, dilation=2)",
    inputs: { x: x1, w: w1, b: b1 },
    ours: () => F.conv1d(x1, w1, b1, { stride: 2, padding: 1, dilation: 2 }),
    tol: CONV,
  },
  "conv1d groups 2, no bias": {
    py: "F.conv1d(x, w, padding=1, groups=2)",
    inputs: { x: x1, w: w1g },
    ours: () => F.conv1d(x1, w1g, null, { padding: 1, groups: 2 }),
    tol: CONV,
  },
  "conv1d depthwise": {
    py: "F.conv1d(x, w, b, padding=2, groups=4)",
    inputs: { x: x1, w: w1dw, b: b1dw },
    ours: () => F.conv1d(x1, w1dw, b1dw, { padding: 2, groups: 4 }),
    tol: CONV,
  },
  "conv2d 3x3 padding 1 (guided-diffusion's conv)": {
    py: "F.conv2d(x, w, b, padding=1)",
    inputs: { x: x2, w: w2, b: b2 },
    ours: () => F.conv2d(x2, w2, b2, { padding: 1 }),
    tol: CONV,
  },
  "conv2d 1x1, no bias (skip connection)": {
    py: "F.conv2d(x, w)",
    inputs: { x: x2, w: w2pw },
    ours: () => F.conv2d(x2, w2pw),
    tol: CONV,
  },
  "conv2d stride 2, padding 1 (guided-diffusion's downsample)": {
    py: "F.conv2d(x, w, b, stride=2, padding=1)",
    inputs: { x: x2, w: w2, b: b2 },
    ours: () => F.conv2d(x2, w2, b2, { stride: 2, padding: 1 }),
    tol: CONV,
  },
  "conv2d dilation 2, padding 2": {
    py: "F.conv2d(x, w, b, padding=2, dilation=2)",
    inputs: { x: x2, w: w2, b: b2 },
    ours: () => F.conv2d(x2, w2, b2, { padding: 2, dilation: 2 }),
    tol: CONV,
  },
  "conv2d groups 2, no bias": {
    py: "F.conv2d(x, w, padding=1, groups=2)",
    inputs: { x: x2, w: w2g },
    ours: () => F.conv2d(x2, w2g, null, { padding: 1, groups: 2 }),
    tol: CONV,
  },
  "conv2d depthwise": {
    py: "F.conv2d(x, w, b, padding=1, groups=4)",
    inputs: { x: x2, w: w2dw, b: b2dw },
    ours: () => F.conv2d(x2, w2dw, b2dw, { padding: 1, groups: 4 }),
    tol: CONV,
  },
  "conv2d depthwise, channel multiplier 2": {
    py: "F.conv2d(x, w, groups=4)",
    inputs: { x: x2, w: w2dw2 },
    ours: () => F.conv2d(x2, w2dw2, null, { groups: 4 }),
    tol: CONV,
  },
  "conv2d per-axis stride, padding, dilation and a 3x2 kernel": {
    py: "F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0), dilation=(1, 2))",
    inputs: { x: x2, w: w2rect, b: b2 },
    ours: () => F.conv2d(x2, w2rect, b2, { stride: [2, 1], padding: [1, 0], dilation: [1, 2] }),
    tol: CONV,
  },
  "convTranspose2d 4x4 stride 2 padding 1 (exact 2x upsampling)": {
    py: "F.conv_transpose2d(x, w, b, stride=2, padding=1)",
    inputs: { x: xt, w: wt4, b: bt },
    ours: () => F.convTranspose2d(xt, wt4, bt, { stride: 2, padding: 1 }),
    tol: CONV,
  },
  "convTranspose2d 3x3 stride 2 padding 1 output padding 1": {
    py: "F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1)",
    inputs: { x: xt, w: wt3, b: bt },
    ours: () => F.convTranspose2d(xt, wt3, bt, { stride: 2, padding: 1, outputPadding: 1 }),
    tol: CONV,
  },
  "convTranspose2d groups 2": {
    py: "F.conv_transpose2d(x, w, b, stride=2, groups=2)",
    inputs: { x: xt, w: wt3, b: btg },
    ours: () => F.convTranspose2d(xt, wt3, btg, { stride: 2, groups: 2 }),
    tol: CONV,
  },
  "convTranspose2d dilation 2, per-axis output padding, no bias": {
    py: "F.conv_transpose2d(x, w, stride=(2, 3), output_padding=(1, 2), dilation=2)",
    inputs: { x: xt, w: wt3 },
    ours: () => F.convTranspose2d(xt, wt3, null, { stride: [2, 3], outputPadding: [1, 2], dilation: 2 }),
    tol: CONV,
  },
};

// ---- normalisation
const xg = r(2, 64, 6, 6), gw = r(64), gb = r(64), xg1 = r(2, 64, 10);
const xgb = r(2, 64, 4, 4).mul(3).add(1).to("bfloat16");
const xbn = r(4, 3, 5, 5).mul(2).add(0.5), bnw = r(3), bnb = r(3), bnx2 = r(8, 3);
const rm = r(3).mul(0.1), rv = rand([3]).add(0.5);
const xln = r(2, 5, 8), lnw = r(8), lnb = r(8);

const norm: Record<string, OpCase> = {
  "groupNorm 32 groups on 64 channels": {
    py: "F.group_norm(x, 32, w, b)",
    inputs: { x: xg, w: gw, b: gb },
    ours: () => F.groupNorm(xg, 32, gw, gb),
    tol: REDUCED,
  },
  "groupNorm without affine, on [N, C, L] (the attention block's norm)": {
    py: "F.group_norm(x, 32)",
    inputs: { x: xg1 },
    ours: () => F.groupNorm(xg1, 32),
    tol: REDUCED,
  },
  "groupNorm 8 groups, eps 1e-6": {
    py: "F.group_norm(x, 8, w, b, eps=1e-6)",
    inputs: { x: xg, w: gw, b: gb },
    ours: () => F.groupNorm(xg, 8, gw, gb, 1e-6),
    tol: REDUCED,
  },
  "groupNorm of bfloat16 in float32, as GroupNorm32 does": {
    py: "F.group_norm(x.float(), 32, w, b).type(x.dtype)",
    inputs: { x: xgb, w: gw, b: gb },
    ours: () => F.groupNorm(xgb.float(), 32, gw, gb).to("bfloat16"),
    tol: BF16,
  },
  "batchNorm training: output and in-place running statistics": {
    py: "y = F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2); result = [y, rm, rv]",
    inputs: { x: xbn, rm, rv, w: bnw, b: bnb },
    ours: () => {
      const m = rm.clone(), v = rv.clone();
      const y = F.batchNorm(xbn, {
        weight: bnw,
        bias: bnb,
        runningMean: m,
        runningVar: v,
        momentum: 0.2,
        training: true,
      });
      return [y, m, v];
    },
    tol: REDUCED,
  },
  "batchNorm training on [N, C], default momentum": {
    py: "y = F.batch_norm(x, rm, rv, training=True); result = [y, rm, rv]",
    inputs: { x: bnx2, rm, rv },
    ours: () => {
      const m = rm.clone(), v = rv.clone();
      return [F.batchNorm(bnx2, { runningMean: m, runningVar: v, training: true }), m, v];
    },
    tol: REDUCED,
  },
  "batchNorm training without running statistics": {
    py: "F.batch_norm(x, None, None, w, b, training=True)",
    inputs: { x: xbn, w: bnw, b: bnb },
    ours: () => F.batchNorm(xbn, { weight: bnw, bias: bnb, training: true }),
    tol: REDUCED,
  },
  "batchNorm eval: running statistics used and left alone": {
    py: "y = F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3); result = [y, rm, rv]",
    inputs: { x: xbn, rm, rv, w: bnw, b: bnb },
    ours: () => {
      const m = rm.clone(), v = rv.clone();
      const y = F.batchNorm(xbn, { weight: bnw, bias: bnb, runningMean: m, runningVar: v, training: false, eps: 1e-3 });
      return [y, m, v];
    },
    tol: REDUCED,
  },
  "layerNorm over the last dimension": {
    py: "F.layer_norm(x, [8], w, b)",
    inputs: { x: xln, w: lnw, b: lnb },
    ours: () => F.layerNorm(xln, [8], lnw, lnb),
    tol: REDUCED,
  },
  "layerNorm over two dimensions, no affine, eps 1e-6": {
    py: "F.layer_norm(x, [5, 8], eps=1e-6)",
    inputs: { x: xln },
    ours: () => F.layerNorm(xln, [5, 8], null, null, 1e-6),
    tol: REDUCED,
  },
};

// ---- softmax and activations
const xs = r(3, 7, 5), xsBig = r(4, 9).mul(50), xsb = r(4, 10).mul(4).to("bfloat16");
const xa = randn([4, 50]).mul(3);

const softmax: Record<string, OpCase> = {
  "softmax dim 1": { py: "F.softmax(x, 1)", inputs: { x: xs }, ours: () => F.softmax(xs, 1), tol: ELEMENTWISE },
  "softmax dim -1": { py: "F.softmax(x, -1)", inputs: { x: xs }, ours: () => F.softmax(xs, -1), tol: ELEMENTWISE },
  "logSoftmax dim 0": {
    py: "F.log_softmax(x, 0)",
    inputs: { x: xs },
    ours: () => F.logSoftmax(xs, 0),
    tol: ELEMENTWISE,
  },
  "softmax and logSoftmax of large logits (no overflow)": {
    py: "[F.softmax(x, -1), F.log_softmax(x, -1)]",
    inputs: { x: xsBig },
    ours: () => [F.softmax(xsBig, -1), F.logSoftmax(xsBig, -1)],
    tol: ELEMENTWISE,
  },
  "softmax and logSoftmax of bfloat16 computed in float32": {
    py: "[F.softmax(x, -1, dtype=torch.float32), F.log_softmax(x, -1, dtype=torch.float32)]",
    inputs: { x: xsb },
    ours: () => {
      const p: Tensor<"float32"> = F.softmax(xsb, -1, "float32");
      const lp: Tensor<"float32"> = F.logSoftmax(xsb, -1, "float32");
      return [p, lp];
    },
    tol: ELEMENTWISE,
  },
  "Tensor.softmax with a dtype": {
    py: "x.softmax(0, dtype=torch.float32)",
    inputs: { x: xsb },
    ours: () => xsb.softmax(0, "float32"),
    tol: ELEMENTWISE,
  },
  "softmax in bfloat16": { py: "F.softmax(x, -1)", inputs: { x: xsb }, ours: () => F.softmax(xsb, -1), tol: BF16 },
};

const activations: Record<string, OpCase> = {
  "relu": { py: "F.relu(x)", inputs: { x: xa }, ours: () => xa.relu(), tol: EXACT },
  "silu": { py: "F.silu(x)", inputs: { x: xa }, ours: () => xa.silu(), tol: ELEMENTWISE },
  "gelu exact": { py: "F.gelu(x)", inputs: { x: xa }, ours: () => xa.gelu(), tol: ELEMENTWISE },
  "gelu tanh": {
    py: "F.gelu(x, approximate='tanh')",
    inputs: { x: xa },
    ours: () => xa.gelu("tanh"),
    tol: ELEMENTWISE,
  },
};

// ---- dropout: at::dropout on the CPU draws from the global CPU generator, so equal seeds give
// equal masks (CUDA draws differ, so these inputs stay on the CPU whatever the default device).
const xd = randn([16, 32], { device: "cpu" });
const dropout: Record<string, OpCase> = {
  "dropout p=0.5 under manualSeed matches PyTorch's mask": {
    py: "F.dropout(x, 0.5)",
    inputs: { x: xd },
    seed: 7,
    ours: () => {
      manualSeed(7);
      return F.dropout(xd, 0.5);
    },
    tol: EXACT,
  },
  "dropout p=0.2 under manualSeed matches PyTorch's mask": {
    py: "F.dropout(x, 0.2)",
    inputs: { x: xd },
    seed: 11,
    ours: () => {
      manualSeed(11);
      return F.dropout(xd, 0.2);
    },
    tol: EXACT,
  },
};

// ---- pooling and resampling
const xp = r(2, 3, 8, 8), xpo = r(2, 3, 7, 9);
const xi = r(2, 3, 5, 5), xi7 = r(1, 2, 7, 7), xi9 = r(1, 2, 9, 9);

const resampling: Record<string, OpCase> = {
  "avgPool2d 2x2 (guided-diffusion's downsample)": {
    py: "F.avg_pool2d(x, kernel_size=2, stride=2)",
    inputs: { x: xp },
    ours: () => F.avgPool2d(xp, 2),
    tol: ELEMENTWISE,
  },
  "avgPool2d 3x3 stride 2 padding 1, padding counted": {
    py: "F.avg_pool2d(x, 3, stride=2, padding=1)",
    inputs: { x: xp },
    ours: () => F.avgPool2d(xp, 3, { stride: 2, padding: 1 }),
    tol: ELEMENTWISE,
  },
  "avgPool2d 3x3 stride 2 padding 1, padding not counted": {
    py: "F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)",
    inputs: { x: xp },
    ours: () => F.avgPool2d(xp, 3, { stride: 2, padding: 1, countIncludePad: false }),
    tol: ELEMENTWISE,
  },
  "avgPool2d 2x3 kernel, stride (1, 2), ceil mode on an odd size": {
    py: "F.avg_pool2d(x, (2, 3), stride=(1, 2), ceil_mode=True)",
    inputs: { x: xpo },
    ours: () => F.avgPool2d(xpo, [2, 3], { stride: [1, 2], ceilMode: true }),
    tol: ELEMENTWISE,
  },
  "maxPool2d 2x2": { py: "F.max_pool2d(x, 2)", inputs: { x: xp }, ours: () => F.maxPool2d(xp, 2), tol: EXACT },
  "maxPool2d 3x3 stride 2 padding 1": {
    py: "F.max_pool2d(x, 3, stride=2, padding=1)",
    inputs: { x: xp },
    ours: () => F.maxPool2d(xp, 3, { stride: 2, padding: 1 }),
    tol: EXACT,
  },
  "maxPool2d ceil mode on an odd size": {
    py: "F.max_pool2d(x, 2, ceil_mode=True)",
    inputs: { x: xpo },
    ours: () => F.maxPool2d(xpo, 2, { ceilMode: true }),
    tol: EXACT,
  },
  "interpolate nearest, scaleFactor 2 (guided-diffusion's upsample)": {
    py: "F.interpolate(x, scale_factor=2, mode='nearest')",
    inputs: { x: xi },
    ours: () => F.interpolate(xi, { scaleFactor: 2 }),
    tol: EXACT,
  },
  "interpolate nearest to a size": {
    py: "F.interpolate(x, size=(7, 11), mode='nearest')",
    inputs: { x: xi },
    ours: () => F.interpolate(xi, { size: [7, 11], mode: "nearest" }),
    tol: EXACT,
  },
  // With a non-integer factor PyTorch maps indices by 1/scale, not by in/out size: 5 * 1.7 = 8.5.
  "interpolate nearest, scaleFactor 1.7": {
    py: "F.interpolate(x, scale_factor=1.7, mode='nearest')",
    inputs: { x: xi },
    ours: () => F.interpolate(xi, { scaleFactor: 1.7 }),
    tol: EXACT,
  },
  "interpolate nearest, per-axis scaleFactor": {
    py: "F.interpolate(x, scale_factor=(2, 3), mode='nearest')",
    inputs: { x: xi },
    ours: () => F.interpolate(xi, { scaleFactor: [2, 3] }),
    tol: EXACT,
  },
  "interpolate bilinear 7x7 -> 20x20, alignCorners false": {
    py: "F.interpolate(x, size=(20, 20), mode='bilinear', align_corners=False)",
    inputs: { x: xi7 },
    ours: () => F.interpolate(xi7, { size: [20, 20], mode: "bilinear", alignCorners: false }),
    tol: ELEMENTWISE,
  },
  "interpolate bilinear down 9x9 -> 4x5, alignCorners false": {
    py: "F.interpolate(x, size=(4, 5), mode='bilinear', align_corners=False)",
    inputs: { x: xi9 },
    ours: () => F.interpolate(xi9, { size: [4, 5], mode: "bilinear" }),
    tol: ELEMENTWISE,
  },
  "interpolate bilinear, scaleFactor 1.5": {
    py: "F.interpolate(x, scale_factor=1.5, mode='bilinear', align_corners=False)",
    inputs: { x: xi7 },
    ours: () => F.interpolate(xi7, { scaleFactor: 1.5, mode: "bilinear" }),
    tol: ELEMENTWISE,
  },
  "interpolate bilinear 7x7 -> 20x20, alignCorners true": {
    py: "F.interpolate(x, size=(20, 20), mode='bilinear', align_corners=True)",
    inputs: { x: xi7 },
    ours: () => F.interpolate(xi7, { size: [20, 20], mode: "bilinear", alignCorners: true }),
    tol: ELEMENTWISE,
  },
};

// ---- padding
const xpad = r(2, 3, 4, 5), xpad1 = r(2, 3, 6);
const padding: Record<string, OpCase> = {
  "constant, last dimension only": {
    py: "F.pad(x, (1, 2))",
    inputs: { x: xpad },
    ours: () => F.pad(xpad, [1, 2]),
    tol: EXACT,
  },
  "constant with a value": {
    py: "F.pad(x, (1, 2, 3, 0), value=-1.5)",
    inputs: { x: xpad },
    ours: () => F.pad(xpad, [1, 2, 3, 0], "constant", -1.5),
    tol: EXACT,
  },
  "reflect": {
    py: "F.pad(x, (2, 1, 1, 2), mode='reflect')",
    inputs: { x: xpad },
    ours: () => F.pad(xpad, [2, 1, 1, 2], "reflect"),
    tol: EXACT,
  },
  "reflect on [N, C, L]": {
    py: "F.pad(x, (3, 2), mode='reflect')",
    inputs: { x: xpad1 },
    ours: () => F.pad(xpad1, [3, 2], "reflect"),
    tol: EXACT,
  },
  "replicate": {
    py: "F.pad(x, (1, 3, 2, 0), mode='replicate')",
    inputs: { x: xpad },
    ours: () => F.pad(xpad, [1, 3, 2, 0], "replicate"),
    tol: EXACT,
  },
  "circular": {
    py: "F.pad(x, (2, 1, 1, 2), mode='circular')",
    inputs: { x: xpad },
    ours: () => F.pad(xpad, [2, 1, 1, 2], "circular"),
    tol: EXACT,
  },
};

// ---- losses
const K = 5;
const ce2 = r(6, K), t2 = randint(0, K, [6]);
const ce4 = r(2, K, 4, 4), t4 = randint(0, K, [2, 4, 4]);
const t4ign = t4.maskedFill(rand([2, 4, 4]).lt(0.3), 255);
const t4all = t4.mul(0).add(255);
const cw = rand([K]).add(0.5);
const la = r(3, 4, 5), lb = r(3, 4, 5);

const losses: Record<string, OpCase> = {};
for (const red of ["mean", "sum", "none"] as const) {
  losses[`crossEntropy [N, K], ${red}`] = {
    py: `F.cross_entropy(x, t, reduction='${red}')`,
    inputs: { x: ce2, t: t2 },
    ours: () => F.crossEntropy(ce2, t2, { reduction: red }),
    tol: ELEMENTWISE,
  };
  losses[`crossEntropy [N, K, H, W], ignoreIndex 255, ${red}`] = {
    py: `F.cross_entropy(x, t, ignore_index=255, reduction='${red}')`,
    inputs: { x: ce4, t: t4ign },
    ours: () => F.crossEntropy(ce4, t4ign, { ignoreIndex: 255, reduction: red }),
    tol: ELEMENTWISE,
  };
  losses[`crossEntropy class weights, ignoreIndex 255, ${red}`] = {
    py: `F.cross_entropy(x, t, weight=cw, ignore_index=255, reduction='${red}')`,
    inputs: { x: ce4, t: t4ign, cw },
    ours: () => F.crossEntropy(ce4, t4ign, { weight: cw, ignoreIndex: 255, reduction: red }),
    tol: ELEMENTWISE,
  };
  losses[`crossEntropy label smoothing 0.1, class weights, ignoreIndex 255, ${red}`] = {
    py: `F.cross_entropy(x, t, weight=cw, ignore_index=255, label_smoothing=0.1, reduction='${red}')`,
    inputs: { x: ce4, t: t4ign, cw },
    ours: () => F.crossEntropy(ce4, t4ign, { weight: cw, ignoreIndex: 255, labelSmoothing: 0.1, reduction: red }),
    tol: ELEMENTWISE,
  };
  losses[`mseLoss ${red}`] = {
    py: `F.mse_loss(a, b, reduction='${red}')`,
    inputs: { a: la, b: lb },
    ours: () => F.mseLoss(la, lb, red),
    tol: ELEMENTWISE,
  };
  losses[`l1Loss ${red}`] = {
    py: `F.l1_loss(a, b, reduction='${red}')`,
    inputs: { a: la, b: lb },
    ours: () => F.l1Loss(la, lb, red),
    tol: ELEMENTWISE,
  };
}
losses["crossEntropy label smoothing 0.2 without weights"] = {
  py: "F.cross_entropy(x, t, ignore_index=255, label_smoothing=0.2)",
  inputs: { x: ce4, t: t4ign },
  ours: () => F.crossEntropy(ce4, t4ign, { ignoreIndex: 255, labelSmoothing: 0.2 }),
  tol: ELEMENTWISE,
};
// Mean over zero counted pixels is 0/0: NaN in PyTorch, and so here.
losses["crossEntropy with every pixel ignored, mean"] = {
  py: "F.cross_entropy(x, t, ignore_index=255)",
  inputs: { x: ce4, t: t4all },
  ours: () => F.crossEntropy(ce4, t4all, { ignoreIndex: 255 }),
  tol: EXACT,
};
losses["mseLoss and l1Loss broadcasting [3, 4, 5] against [5]"] = {
  py: "import warnings\nwarnings.simplefilter('ignore')\nresult = [F.mse_loss(a, b[0, 0]), F.l1_loss(a, b[0, 0])]",
  inputs: { a: la, b: lb },
  ours: () => [F.mseLoss(la, lb.select(0, 0).select(0, 0)), F.l1Loss(la, lb.select(0, 0).select(0, 0))],
  tol: ELEMENTWISE,
};

const groups: Record<string, Record<string, OpCase>> = {
  "conv1d, conv2d and convTranspose2d": conv,
  "groupNorm, batchNorm and layerNorm": norm,
  "softmax and logSoftmax": softmax,
  "relu, silu and gelu": activations,
  "dropout": dropout,
  "avgPool2d, maxPool2d and interpolate": resampling,
  "pad": padding,
  "crossEntropy, mseLoss and l1Loss": losses,
};

const request: Record<string, RefCase> = {};
for (const [group, cases] of Object.entries(groups)) {
  for (const [name, c] of Object.entries(cases)) {
    request[`${group} / ${name}`] = { code: c.py, inputs: c.inputs, seed: c.seed };
  }
}
const ref = await torchRef(request);

function maxAbs(v: RefValue): number {
  let m = 0;
  for (const x of refTensor(v).data) m = Math.max(m, Math.abs(Number(x)));
  return m;
}

function compare(ours: Tensor | Tensor[], expected: RefValue, tol: Tol, what: string) {
  if (!Array.isArray(ours)) {
    const atol = (tol.atol ?? 0) + (tol.scaled ? (tol.rtol ?? 0) * maxAbs(expected) : 0);
    return assertClose(ours, expected, { rtol: tol.rtol, atol }, what);
  }
  if (!Array.isArray(expected) || expected.length !== ours.length) {
    throw new Error(`${what}: PyTorch returned ${JSON.stringify(expected)?.slice(0, 200)}, not ${ours.length} tensors`);
  }
  ours.forEach((t, i) => compare(t, expected[i], tol, `${what} [${i}]`));
}

for (const [group, cases] of Object.entries(groups)) {
  Deno.test(`${group} agree with PyTorch`, async (t) => {
    for (const [name, c] of Object.entries(cases)) {
      await t.step(name, () => compare(c.ours(), ref[`${group} / ${name}`], c.tol, name));
    }
  });
}

function assert(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

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
