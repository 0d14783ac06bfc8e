// The op table of the op tests: each row says how mdm calls an op and how PyTorch does, so that a
// case (tests/helpers/op_harness.ts) is written once, as data. A new op is one row here plus cases.
import { arange, cat, F, full, linspace, ones, stack, tensor, where, zeros } from "../../mod.ts";

// Values reaching a call are whatever the cases wrote; each row is the one place that knows
// what its op takes, so it is typed there, in the mdm call.
// deno-lint-ignore no-explicit-any
export type Val = any;
export type Kwargs = Record<string, Val>;

export interface OpRow {
  /** The PyTorch callable, as Python source: `torch.sum`, `F.conv2d`, `torch.Tensor.masked_fill`, a lambda. */
  torch: string;
  /**
   * The mdm call: the case's positional args, then its kwargs (if it has any) as an options object.
   * PyTorch gets the same positional args and the kwargs by name, camelCase turned to snake_case.
   */
  mdm: (args: Val[], kw?: Kwargs) => Val;
  /** Not differentiable: no gradient check for cases of this op. */
  grad?: false;
  /** The differentiable args (positions) and kwargs (names); by default every floating-point tensor. */
  diff?: readonly (number | string)[];
}

/** Python helpers the rows (and the harness: `_grads`) call, by name; a case gets those its code uses. */
export const PY_HELPERS: Record<string, string> = {
  _tensor: `
def _tensor(data, dtype=None, shape=None):
    t = data.to(dtype or data.dtype) if isinstance(data, torch.Tensor) else torch.tensor(data, dtype=dtype)
    return t if shape is None else t.reshape(shape)`,
  _reduce: `
def _reduce(f, t, dim=None, keepdim=False):
    if dim is None:
        return f(t, tuple(range(t.dim())), keepdim) if keepdim else f(t)
    return f(t, dim, keepdim)`,
  _all_any: `
def _all_any(op, t, dim=None, keepdim=False):
    if isinstance(dim, int) or (dim is None and not keepdim):
        return getattr(t, op)() if dim is None else getattr(t, op)(dim, keepdim)
    # 1.13 reduces one dim at a time: over several, count the non-zeros instead
    dims = tuple(range(t.dim())) if dim is None else tuple(dim)
    count = (t != 0).sum(dims, keepdim=keepdim)
    size = int(np.prod([t.shape[i] for i in dims]))
    return count == size if op == "all" else count > 0`,
  _batch_norm: `
def _batch_norm(x, running_mean=None, running_var=None, **k):
    y = F.batch_norm(x, running_mean, running_var, **k)
    return y if running_mean is None else [y, running_mean, running_var]`,
  _grads: `
def _grads(out, leaves, g):
    # backward of sum(out * w) for a seeded random cotangent w per floating-point output
    outs = list(out) if isinstance(out, (list, tuple)) else [out]
    floats = [o for o in outs if o.is_floating_point()]
    ws = [torch.randn(o.shape, generator=g).to(o.dtype) for o in floats]
    parts = [(o.float() * w.float()).sum() for o, w in zip(floats, ws) if o.requires_grad]
    if not parts:
        return [out, ws, None]
    return [out, ws, list(torch.autograd.grad(sum(parts), leaves, allow_unused=True))]`,
};

export function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase());
}

const withKw = (args: Val[], kw?: Kwargs) => (kw ? [...args, kw] : args);

/** `x.name(...rest)` in mdm; `torch.Tensor.<snake name>(x, ...rest)` unless told. */
function method(name: string, torch = `torch.Tensor.${snake(name)}`, extra: Partial<OpRow> = {}): OpRow {
  return { torch, mdm: ([x, ...rest], kw) => x[name](...withKw(rest, kw)), ...extra };
}

/** A function of mod.ts or F. */
function fn(f: (...a: Val[]) => Val, torch: string, extra: Partial<OpRow> = {}): OpRow {
  return { torch, mdm: (args, kw) => f(...withKw(args, kw)), ...extra };
}

/** An in-place method on a clone of the first argument, so that the input stays as other cases see it. */
function inplace(name: string): OpRow {
  return { torch: `lambda x, *a: x.clone().${name}(*a)`, mdm: ([x, ...rest]) => x.clone()[name](...rest) };
}

const NO_GRAD = { grad: false } as const;

const UNARY = [
  "neg",
  "exp",
  "expm1",
  "log",
  "log1p",
  "sqrt",
  "rsqrt",
  "abs",
  "sin",
  "cos",
  "tanh",
  "sigmoid",
  "floor",
  "ceil",
  "round",
  "sign",
  "square",
  "reciprocal",
  "erf",
];

const OPERATORS: Record<string, string> = { add: "+", sub: "-", mul: "*", div: "/", pow: "**", remainder: "%" };
const COMPARISONS: Record<string, string> = { eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">", ge: ">=" };

export const OPS: Record<string, OpRow> = {
  // ---- creation (no tensor inputs, so no gradients)
  // Typed arrays reach PyTorch as tensors of their own dtype, then converted, as mdm converts them;
  // nested arrays go through torch.tensor, whose inference agrees with mdm's for non-integral
  // numbers, booleans and bigints (all-integral numbers would need a dtype).
  tensor: { torch: "_tensor", mdm: ([data], kw) => tensor(data, kw) },
  zeros: fn(zeros, "torch.zeros"),
  ones: fn(ones, "torch.ones"),
  // mdm's full is float32 unless told, whatever the fill; PyTorch infers the dtype from the fill.
  full: fn(full, "lambda size, fill, dtype=None: torch.full(size, fill, dtype=dtype or torch.float32)"),
  arange: fn(arange, "torch.arange"),
  linspace: fn(linspace, "torch.linspace"),

  // ---- elementwise
  ...Object.fromEntries(UNARY.map((op) => [op, method(op, `torch.${op}`)])),
  relu: method("relu", "torch.relu"),
  silu: method("silu", "F.silu"),
  gelu: { torch: "F.gelu", mdm: ([x], kw) => x.gelu(kw?.approximate) },
  isnan: method("isnan", "torch.isnan", NO_GRAD),
  logicalNot: method("logicalNot", "torch.logical_not", NO_GRAD),
  ...Object.fromEntries(Object.entries(OPERATORS).map(([op, o]) => [op, method(op, `lambda x, y: x ${o} y`)])),
  // With a number, mdm's maximum and minimum act like PyTorch's with a 0-dim tensor of that value.
  maximum: method("maximum", "lambda x, y: torch.maximum(x, y if isinstance(y, torch.Tensor) else torch.tensor(y))"),
  minimum: method("minimum", "lambda x, y: torch.minimum(x, y if isinstance(y, torch.Tensor) else torch.tensor(y))"),
  atan2: method("atan2", "torch.atan2"),
  rsub: method("rsub", "lambda x, v: v - x"),
  rdiv: method("rdiv", "lambda x, v: v / x"),
  ...Object.fromEntries(
    Object.entries(COMPARISONS).map(([op, o]) => [op, method(op, `lambda x, y: x ${o} y`, NO_GRAD)]),
  ),
  logicalAnd: method("logicalAnd", "torch.logical_and", NO_GRAD),
  logicalOr: method("logicalOr", "torch.logical_or", NO_GRAD),
  where: fn(where, "torch.where"),
  "Tensor.where": { torch: "lambda x, c, y: torch.where(c, x, y)", mdm: ([x, c, y]) => x.where(c, y) },
  clamp: method("clamp", "torch.clamp"),
  maskedFill: method("maskedFill"),
  ...Object.fromEntries(
    ["add_", "sub_", "mul_", "div_", "copy_", "fill_", "zero_", "lerp_"].map((op) => [op, inplace(op)]),
  ),
  to: { torch: "lambda x, *a, **k: x.to(*a, **k)", mdm: ([x, target], kw) => x.to(target ?? kw) },
  float: method("float"),
  long: method("long"),

  // ---- reductions, sorting, linear algebra
  ...Object.fromEntries(
    ["sum", "mean", "amax", "amin"].map((op) => [op, method(op, `lambda t, *a: _reduce(torch.${op}, t, *a)`)]),
  ),
  logsumexp: method("logsumexp", "torch.logsumexp"),
  all: method("all", "lambda t, *a: _all_any('all', t, *a)", NO_GRAD),
  any: method("any", "lambda t, *a: _all_any('any', t, *a)", NO_GRAD),
  var: method("var", "torch.var"),
  std: method("std", "torch.std"),
  max: method("max", "torch.max"),
  min: method("min", "torch.min"),
  argmax: method("argmax", "torch.argmax", NO_GRAD),
  argmin: method("argmin", "torch.argmin", NO_GRAD),
  argsort: method("argsort", "torch.argsort", NO_GRAD),
  sort: method("sort", "torch.sort"),
  topk: method("topk", "torch.topk"),
  cumsum: method("cumsum", "torch.cumsum"),
  matmul: method("matmul", "torch.matmul"),
  bmm: method("bmm", "torch.bmm"),
  linear: fn(F.linear, "F.linear"),
  einsum: fn(F.einsum, "torch.einsum"),

  // ---- shape, layout, indexing
  ...Object.fromEntries(
    [
      "reshape",
      "view",
      "permute",
      "transpose",
      "contiguous",
      "expand",
      "repeat",
      "squeeze",
      "unsqueeze",
      "flatten",
      "flip",
      "clone",
      "narrow",
      "select",
      "indexSelect",
      "gather",
      "scatter",
      "scatterAdd",
      "maskedSelect",
    ].map((op) => [op, method(op)]),
  ),
  slice: method(
    "slice",
    "lambda x, dim, start, end, step=1: x[(slice(None),) * (dim % x.dim()) + (slice(start, end, step),)]",
  ),
  nonzero: method("nonzero", "torch.Tensor.nonzero", NO_GRAD),
  oneHot: method("oneHot", "F.one_hot", NO_GRAD),
  detach: method("detach", "torch.Tensor.detach", NO_GRAD),
  split: method("split", "torch.split"),
  chunk: method("chunk", "torch.chunk"),
  cat: fn(cat, "torch.cat"),
  stack: fn(stack, "torch.stack"),

  // ---- nn functional
  conv1d: fn(F.conv1d, "F.conv1d"),
  conv2d: fn(F.conv2d, "F.conv2d"),
  convTranspose2d: fn(F.convTranspose2d, "F.conv_transpose2d"),
  groupNorm: fn(F.groupNorm, "F.group_norm"),
  // Written out as the UNet's separate ops: silu(group_norm(x)·(1 + scale) + shift), scale and shift [N, C].
  groupNormSilu: {
    torch: "lambda x, groups, weight=None, bias=None, scale=None, shift=None, eps=1e-5: F.silu(" +
      "F.group_norm(x, groups, weight, bias, eps)" +
      " * (1 if scale is None else (1 + scale).reshape(*scale.shape, *([1] * (x.dim() - 2))))" +
      " + (0 if shift is None else shift.reshape(*shift.shape, *([1] * (x.dim() - 2)))))",
    mdm: ([x, groups], kw) => F.groupNormSilu(x, groups, kw),
  },
  layerNorm: fn(F.layerNorm, "F.layer_norm"),
  // With running statistics the result is [y, runningMean, runningVar] after the in-place update;
  // mdm updates clones, so the inputs stay as other cases see them (PyTorch gets fresh copies).
  batchNorm: {
    torch: "_batch_norm",
    mdm: ([x], kw = {}) => {
      const o = { ...kw, runningMean: kw.runningMean?.clone(), runningVar: kw.runningVar?.clone() };
      const y = F.batchNorm(x, o);
      return o.runningMean ? [y, o.runningMean, o.runningVar] : y;
    },
    diff: [0, "weight", "bias"],
  },
  softmax: { torch: "F.softmax", mdm: ([x, dim], kw) => F.softmax(x, dim, kw?.dtype) },
  logSoftmax: { torch: "F.log_softmax", mdm: ([x, dim], kw) => F.logSoftmax(x, dim, kw?.dtype) },
  "Tensor.softmax": { torch: "torch.Tensor.softmax", mdm: ([x, dim], kw) => x.softmax(dim, kw?.dtype) },
  // Written out, so that it holds for every PyTorch (1.13 has no F.scaled_dot_product_attention):
  // guided-diffusion's attention, q and k each scaled by sqrt(scale), the softmax in float32.
  scaledDotProductAttention: {
    torch: "lambda q, k, v, scale=None: torch.softmax(" +
      "(q * (scale or q.shape[-1] ** -0.5) ** 0.5) @ (k * (scale or q.shape[-1] ** -0.5) ** 0.5).transpose(-1, -2)," +
      " -1, dtype=torch.float32).to(q.dtype) @ v",
    mdm: ([q, k, v], kw) => F.scaledDotProductAttention(q, k, v, kw),
  },
  dropout: fn(F.dropout, "F.dropout"),
  avgPool2d: fn(F.avgPool2d, "F.avg_pool2d"),
  maxPool2d: fn(F.maxPool2d, "F.max_pool2d"),
  interpolate: fn(F.interpolate, "F.interpolate"),
  pad: fn(F.pad, "F.pad"),
  // PyTorch has no derivative for the class weights.
  crossEntropy: fn(F.crossEntropy, "F.cross_entropy", { diff: [0] }),
  mseLoss: { torch: "F.mse_loss", mdm: ([a, b], kw) => F.mseLoss(a, b, kw?.reduction) },
  l1Loss: { torch: "F.l1_loss", mdm: ([a, b], kw) => F.l1Loss(a, b, kw?.reduction) },
};
