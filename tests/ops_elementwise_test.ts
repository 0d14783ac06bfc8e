// Creation, host round trips, elementwise arithmetic, comparisons, in-place updates and dtype
// conversion, each checked against Debian's PyTorch (the same libtorch build) on the same inputs.
import assert from "node:assert/strict";
import {
  arange,
  type DType,
  full,
  linspace,
  manualSeed,
  ones,
  rand,
  randint,
  randn,
  Tensor,
  tensor,
  tidy,
  where,
  zeros,
} from "../mod.ts";
import { isFloat } from "../src/dtype.ts";
import { assertClose, type RefCase, type RefValue, type Tolerance, torchRef } from "./helpers/torch_ref.ts";

// ---- harness: every case of the file goes to PyTorch in one batch (one Python start)

type Out = Tensor | readonly Tensor[];
interface Case extends RefCase {
  mdm: () => Out;
  /** Tolerance for floating-point results; integer and bool results must match exactly. */
  tol?: Tolerance;
}

// Same kernels on both sides, so results are mostly bit-identical; the slack covers mdm running
// on several threads (the reference runs on one) and vectorised versus scalar loop tails.
const DEFAULT_TOL: Record<string, Tolerance> = {
  float32: { rtol: 1e-5, atol: 1e-6 },
  float64: { rtol: 1e-12, atol: 1e-12 },
  float16: { rtol: 1e-3, atol: 1e-3 },
  bfloat16: { rtol: 1e-2, atol: 1e-2 },
};
const EXACT: Tolerance = { rtol: 0, atol: 0 };

const groups = new Map<string, Record<string, Case>>();
let refs: Promise<Record<string, RefValue>> | undefined;

function allRefs(): Promise<Record<string, RefValue>> {
  refs ??= torchRef(
    Object.fromEntries([...groups].flatMap(([g, cases]) => Object.entries(cases).map(([n, c]) => [`${g}/${n}`, c]))),
  );
  return refs;
}

function compare(out: Out, ref: RefValue, tol: Tolerance | undefined, what: string): void {
  const one = (t: Tensor, r: RefValue, w: string) =>
    assertClose(t, r, isFloat(t.dtype) ? tol ?? DEFAULT_TOL[t.dtype] : EXACT, w);
  if (out instanceof Tensor) return one(out, ref, what);
  if (!Array.isArray(ref) || ref.length !== out.length) throw new Error(`${what}: PyTorch gave ${JSON.stringify(ref)}`);
  out.forEach((t, i) => one(t, ref[i], `${what}[${i}]`));
}

/** Registers a group of cases as one test with a step per case. */
function opTest(group: string, cases: Record<string, Case>): void {
  groups.set(group, cases);
  Deno.test(group, async (t) => {
    const ref = await allRefs();
    for (const [name, c] of Object.entries(cases)) {
      await t.step(name, () => tidy(() => compare(c.mdm(), ref[`${group}/${name}`], c.tol, name)));
    }
  });
}

/** A Python literal for a JS value; integral numbers become Python ints, as mdm passes them. */
function py(v: unknown): string {
  if (Array.isArray(v) || ArrayBuffer.isView(v)) return `[${Array.from(v as ArrayLike<unknown>, py).join(", ")}]`;
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "bigint") return String(v);
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "float('nan')";
    if (!Number.isFinite(v)) return v > 0 ? "float('inf')" : "float('-inf')";
    return String(v);
  }
  throw new TypeError(`no Python literal for ${String(v)}`);
}

const DTYPES: DType[] = ["float32", "float64", "float16", "bfloat16", "int64", "int32", "uint8", "bool"];

// ---- inputs (seeded; PyTorch receives their values, not the seed)

manualSeed(20240601);
const a = randn([3, 4]);
const b = randn([3, 4]);
const row = randn([4]);
const col = randn([3, 1]);
const pos = rand([3, 4]).add(0.5); // domain of log, sqrt, rsqrt
const a64 = randn([3, 4], { dtype: "float64" });
const a16 = randn([3, 4]).to("float16");
const abf = randn([3, 4]).to("bfloat16");
const i64 = randint(-6, 7, [3, 4]);
const j64 = randint(1, 5, [3, 4]); // non-zero divisors
const i32 = randint(-6, 7, [3, 4], { dtype: "int32" });
const u8 = randint(0, 200, [3, 4], { dtype: "uint8" });
const m1 = a.gt(0);
const m2 = b.gt(0);
const scalar0d = tensor(2.5); // a 0-dim float tensor does not raise the result's float width
const big = a.mul(3); // float -> int conversion truncates toward zero
const huge = a.mul(1e5); // beyond float16's range
const special = tensor([NaN, Infinity, -Infinity, 0, 1, -1, 0.5, -0.5, 1.5, 2.5, -2.5, 3.7]);

// ---- creation

// Literal values per dtype, picked to expose rounding through a narrower intermediate type.
const LITERALS: Record<DType, number[]> = {
  float32: [0.1, -2.5, 3.75, 1e-7],
  float64: [0.1, -2.5, 1 / 3, 1e-300],
  float16: [0.1, -2.5, 65504, 1e-4],
  bfloat16: [0.1, -2.5, 3.140625, 1e30],
  int64: [0, -7, 16777217, 2 ** 40 + 1],
  int32: [0, -7, 16777217, 2 ** 31 - 1],
  uint8: [0, 7, 200, 255],
  bool: [0, 1, 2.5, -1],
};

const nestedCases = Object.fromEntries(DTYPES.map((d) => [
  `nested numbers as ${d}`,
  {
    code: `torch.tensor(${py(LITERALS[d])}, dtype=torch.${d})`,
    mdm: () => tensor(LITERALS[d], { dtype: d }),
    tol: EXACT,
  },
]));

opTest("creation", {
  "nested numbers default to float32": {
    code: "torch.tensor([[1, 2.5, -3], [0.1, 1e-07, 10000000]], dtype=torch.float32)",
    mdm: () => tensor([[1, 2.5, -3], [0.1, 1e-7, 1e7]]),
    tol: EXACT,
  },
  ...nestedCases,
  "nested fractions truncate to int64": {
    code: "torch.tensor([1.9, -1.9, 0.5], dtype=torch.int64)",
    mdm: () => tensor([1.9, -1.9, 0.5], { dtype: "int64" }),
  },
  "nested booleans are bool": {
    code: "torch.tensor([[True, False], [False, True]])",
    mdm: () => tensor([[true, false], [false, true]]),
  },
  "nested bigints are int64": {
    code: "torch.tensor([[1, -2], [1099511627777, 3]])",
    mdm: () => tensor([[1n, -2n], [2n ** 40n + 1n, 3n]]),
  },
  "nested bigints as int32": {
    code: "torch.tensor([1, -2, 70000], dtype=torch.int32)",
    mdm: () => tensor([1n, -2n, 70000n], { dtype: "int32" }),
  },
  "nested bigints as float64": {
    code: "torch.tensor([1, -2, 9007199254740993], dtype=torch.float64)",
    mdm: () => tensor([1n, -2n, 9007199254740993n], { dtype: "float64" }),
    tol: EXACT,
  },
  "0-dim number": { code: "torch.tensor(2.5)", mdm: () => tensor(2.5), tol: EXACT },
  "0-dim boolean": { code: "torch.tensor(True)", mdm: () => tensor(true) },
  "empty": { code: "torch.tensor([], dtype=torch.float32)", mdm: () => tensor([]) },
  "Float32Array": {
    code: `torch.tensor(${py(Float32Array.of(0.1, -2.5, 1e-30))}, dtype=torch.float32)`,
    mdm: () => tensor(Float32Array.of(0.1, -2.5, 1e-30)),
    tol: EXACT,
  },
  "Float64Array": {
    code: `torch.tensor(${py([0.1, -2.5, 1e-300])}, dtype=torch.float64)`,
    mdm: () => tensor(Float64Array.of(0.1, -2.5, 1e-300)),
    tol: EXACT,
  },
  "Int32Array": {
    code: "torch.tensor([-2147483648, 0, 2147483647], dtype=torch.int32)",
    mdm: () => tensor(Int32Array.of(-(2 ** 31), 0, 2 ** 31 - 1)),
  },
  "BigInt64Array": {
    code: "torch.tensor([-9223372036854775808, 0, 9223372036854775807])",
    mdm: () => tensor(BigInt64Array.of(-(2n ** 63n), 0n, 2n ** 63n - 1n)),
  },
  "Uint8Array": {
    code: "torch.tensor([0, 1, 255], dtype=torch.uint8)",
    mdm: () => tensor(Uint8Array.of(0, 1, 255)),
  },
  "Uint8Array as bool": {
    code: "torch.tensor([0, 1, 255], dtype=torch.bool)",
    mdm: () => tensor(Uint8Array.of(0, 1, 255), { dtype: "bool" }),
  },
  "Float32Array as float16": {
    code: `torch.tensor(${py(Float32Array.of(0.1, 70000, 1e-8, -1 / 3))}, dtype=torch.float32).to(torch.float16)`,
    mdm: () => tensor(Float32Array.of(0.1, 70000, 1e-8, -1 / 3), { dtype: "float16" }),
    tol: EXACT,
  },
  "Float32Array as bfloat16": {
    code: `torch.tensor(${py(Float32Array.of(0.1, 1e38, 1e-8, -1 / 3))}, dtype=torch.float32).to(torch.bfloat16)`,
    mdm: () => tensor(Float32Array.of(0.1, 1e38, 1e-8, -1 / 3), { dtype: "bfloat16" }),
    tol: EXACT,
  },
  "Float64Array as float16": {
    code: `torch.tensor(${py([0.1, 1 / 3, 65519.99])}, dtype=torch.float16)`,
    mdm: () => tensor(Float64Array.of(0.1, 1 / 3, 65519.99), { dtype: "float16" }),
    tol: EXACT,
  },
  "Int32Array as float32": {
    code: "torch.tensor([16777217, -3], dtype=torch.float32)",
    mdm: () => tensor(Int32Array.of(16777217, -3), { dtype: "float32" }),
    tol: EXACT,
  },
  "typed array view at an offset": {
    code: "torch.tensor([1, 2, 3], dtype=torch.float32)",
    mdm: () => tensor(Float32Array.of(9, 1, 2, 3).subarray(1)),
    tol: EXACT,
  },
  "typed array with a shape": {
    code: "torch.arange(6, dtype=torch.float32).reshape(2, 3)",
    mdm: () => tensor(Float32Array.of(0, 1, 2, 3, 4, 5), { shape: [2, 3] }),
    tol: EXACT,
  },
  ...Object.fromEntries(DTYPES.flatMap((d) => [
    [`zeros ${d}`, { code: `torch.zeros(2, 3, dtype=torch.${d})`, mdm: () => zeros([2, 3], { dtype: d }), tol: EXACT }],
    [`ones ${d}`, { code: `torch.ones(2, 3, dtype=torch.${d})`, mdm: () => ones([2, 3], { dtype: d }), tol: EXACT }],
  ])),
  "zeros default float32": { code: "torch.zeros(4)", mdm: () => zeros([4]), tol: EXACT },
  "full float32": { code: "torch.full([2, 2], 2.5)", mdm: () => full([2, 2], 2.5), tol: EXACT },
  "full float64 keeps the double": {
    code: "torch.full([2], 0.1, dtype=torch.float64)",
    mdm: () => full([2], 0.1, { dtype: "float64" }),
    tol: EXACT,
  },
  "full int64 truncates": {
    code: "torch.full([2], 2.5, dtype=torch.int64)",
    mdm: () => full([2], 2.5, { dtype: "int64" }),
  },
  "full -inf": { code: "torch.full([3], float('-inf'))", mdm: () => full([3], -Infinity), tol: EXACT },
  "full bool": { code: "torch.full([2], 1, dtype=torch.bool)", mdm: () => full([2], 1, { dtype: "bool" }) },
  "full 0-dim": { code: "torch.full([], 7.0)", mdm: () => full([], 7), tol: EXACT },
  "arange(n)": { code: "torch.arange(5)", mdm: () => arange(5) },
  "arange with step": { code: "torch.arange(1, 10, 3)", mdm: () => arange(1, 10, 3) },
  "arange negative step": { code: "torch.arange(-1, -10, -2)", mdm: () => arange(-1, -10, -2) },
  "arange fractional step is float32": { code: "torch.arange(0, 1, 0.1)", mdm: () => arange(0, 1, 0.1), tol: EXACT },
  "arange fractional start": { code: "torch.arange(0.5, 3)", mdm: () => arange(0.5, 3), tol: EXACT },
  "arange float64": {
    code: "torch.arange(0, 1, 0.25, dtype=torch.float64)",
    mdm: () => arange(0, 1, 0.25, { dtype: "float64" }),
    tol: EXACT,
  },
  "arange int32": { code: "torch.arange(0, 5, dtype=torch.int32)", mdm: () => arange(0, 5, 1, { dtype: "int32" }) },
  "linspace": { code: "torch.linspace(0, 1, 5)", mdm: () => linspace(0, 1, 5), tol: EXACT },
  "linspace float64": {
    code: "torch.linspace(-1, 1, 7, dtype=torch.float64)",
    mdm: () => linspace(-1, 1, 7, { dtype: "float64" }),
    tol: EXACT,
  },
  "linspace int64": {
    code: "torch.linspace(0, 10, 6, dtype=torch.int64)",
    mdm: () => linspace(0, 10, 6, { dtype: "int64" }),
  },
  "linspace one step": { code: "torch.linspace(3, 3, 1)", mdm: () => linspace(3, 3, 1), tol: EXACT },
  "linspace no steps": { code: "torch.linspace(0, 1, 0)", mdm: () => linspace(0, 1, 0), tol: EXACT },
});

Deno.test("toArray round trips", async (t) => {
  // Values each dtype represents exactly come back unchanged, in the documented host array type.
  const cases: [DType, ArrayLike<number | bigint> & Iterable<number | bigint>, new (n: number) => unknown][] = [
    ["float32", Float32Array.of(0.1, -1e30, 1e-40, Infinity, -0), Float32Array],
    ["float64", Float64Array.of(0.1, -1e300, Math.PI, 5e-324, -Infinity), Float64Array],
    ["float16", Float32Array.of(0.5, -2, 65504, 2 ** -14, 2 ** -24), Float32Array],
    ["bfloat16", Float32Array.of(1.5, -(2 ** 100), 2 ** -126, 3.140625), Float32Array],
    ["int64", BigInt64Array.of(-(2n ** 63n), 2n ** 53n + 1n, 0n), BigInt64Array],
    ["int32", Int32Array.of(-(2 ** 31), 2 ** 31 - 1, 0), Int32Array],
    ["uint8", Uint8Array.of(0, 128, 255), Uint8Array],
    ["bool", Uint8Array.of(1, 0, 1), Uint8Array],
  ];
  for (const [dtype, values, type] of cases) {
    await t.step(dtype, () =>
      tidy(() => {
        const x = tensor(values as Float32Array, { dtype });
        assert.equal(x.dtype, dtype);
        assert.deepEqual(x.shape, [values.length]);
        const back = x.toArray();
        assert.ok(back instanceof type, `${dtype}: toArray gave ${back.constructor.name}`);
        assert.deepEqual([...back], [...values]);
      }));
  }
  await t.step("NaN survives float32", () => {
    using x = tensor(Float32Array.of(NaN));
    assert.ok(Number.isNaN(x.toArray()[0]));
  });
  await t.step("item() of 0-dim tensors", () => {
    using f = tensor(2.5);
    using i = tensor(BigInt64Array.of(-7n), { shape: [] });
    using h = tensor(Float32Array.of(0.1), { dtype: "float16", shape: [1] });
    assert.equal(f.item(), 2.5);
    assert.equal(i.item(), -7);
    assert.equal(h.item(), 0.0999755859375); // float16 nearest to 0.1
  });
});

// ---- unary ops

type UnaryName =
  | "neg"
  | "exp"
  | "expm1"
  | "log"
  | "log1p"
  | "sqrt"
  | "rsqrt"
  | "abs"
  | "sin"
  | "cos"
  | "tanh"
  | "sigmoid"
  | "relu"
  | "silu"
  | "floor"
  | "ceil"
  | "round"
  | "sign"
  | "square"
  | "reciprocal"
  | "erf"
  | "logicalNot"
  | "isnan";
// The PyTorch spelling of each method where it differs.
const PY_UNARY: Partial<Record<UnaryName, string>> = {
  silu: "F.silu",
  logicalNot: "torch.logical_not",
  relu: "torch.relu",
};
const ALL_UNARY: UnaryName[] = [
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
  "relu",
  "silu",
  "floor",
  "ceil",
  "round",
  "sign",
  "square",
  "reciprocal",
  "erf",
  "logicalNot",
  "isnan",
];
const NEEDS_POSITIVE = new Set<UnaryName>(["log", "log1p", "sqrt", "rsqrt"]);

function unary(op: UnaryName, x: Tensor, name: string): Case {
  const fn = PY_UNARY[op] ?? `torch.${op}`;
  return { code: `${fn}(${name})`, inputs: { [name]: x }, mdm: () => (x[op] as () => Tensor).call(x) };
}

opTest("unary", {
  ...Object.fromEntries(ALL_UNARY.map((op) => [`${op} float32`, unary(op, NEEDS_POSITIVE.has(op) ? pos : a, "x")])),
  ...Object.fromEntries(ALL_UNARY.map((op) => [`${op} special values`, unary(op, special, "s")])),
  "gelu": { code: "F.gelu(x)", inputs: { x: a }, mdm: () => a.gelu() },
  "gelu tanh": { code: "F.gelu(x, approximate='tanh')", inputs: { x: a }, mdm: () => a.gelu("tanh") },
  ...Object.fromEntries((["exp", "tanh", "sigmoid", "log", "erf"] as const).map((op) => [
    `${op} float64`,
    unary(op, op === "log" ? a64.abs() : a64, "x"),
  ])),
  "gelu float64": { code: "F.gelu(x)", inputs: { x: a64 }, mdm: () => a64.gelu() },
  // PyTorch 1.13 has no CPU float16 kernels for exp, tanh, sigmoid, sqrt or clamp; bfloat16 has them.
  ...Object.fromEntries(
    (["neg", "abs", "square", "isnan"] as const).map((op) => [`${op} float16`, unary(op, a16, "x")]),
  ),
  ...Object.fromEntries(
    (["exp", "sigmoid", "tanh", "neg", "abs"] as const).map((op) => [`${op} bfloat16`, unary(op, abf, "x")]),
  ),
  "silu bfloat16": unary("silu", abf, "x"),
  "gelu bfloat16": { code: "F.gelu(x)", inputs: { x: abf }, mdm: () => abf.gelu() },
  // Integer inputs: sign-like ops stay integral, transcendental ones promote to float32.
  ...Object.fromEntries(
    (["neg", "abs", "sign", "square", "relu", "floor", "exp", "sqrt", "sigmoid", "reciprocal"] as const)
      .map((op) => [`${op} int64`, unary(op, i64, "x")]),
  ),
  "neg int32": unary("neg", i32, "x"),
  "logicalNot int64": unary("logicalNot", i64, "x"),
  "logicalNot bool": unary("logicalNot", m1, "x"),
  "isnan int64": unary("isnan", i64, "x"),
});

// ---- binary ops

type BinaryName = "add" | "sub" | "mul" | "div" | "pow" | "maximum" | "minimum" | "remainder" | "atan2";
const PY_OP: Record<string, string> = { add: "+", sub: "-", mul: "*", div: "/", pow: "**", remainder: "%" };

/** `x.op(y)` against PyTorch's operator (or function) on the same tensors. */
function binary(op: BinaryName, x: Tensor, y: Tensor): Case {
  const code = PY_OP[op] ? `x ${PY_OP[op]} y` : `torch.${op}(x, y)`;
  return { code, inputs: { x, y }, mdm: () => (x[op] as (o: Tensor) => Tensor).call(x, y) };
}

/** `x.op(v)` against `x <op> v` with v a Python int when integral, as mdm passes it. */
function withScalar(op: Exclude<BinaryName, "atan2">, x: Tensor, v: number, code = `x ${PY_OP[op]} ${py(v)}`): Case {
  return { code, inputs: { x }, mdm: () => (x[op] as (o: number) => Tensor).call(x, v) };
}

const ARITH: BinaryName[] = ["add", "sub", "mul", "div", "maximum", "minimum", "remainder", "atan2"];

opTest("binary with tensors", {
  ...Object.fromEntries(ARITH.map((op) => [`${op} same shape`, binary(op, a, b)])),
  ...Object.fromEntries(ARITH.map((op) => [`${op} broadcast row`, binary(op, a, row)])),
  ...Object.fromEntries(ARITH.map((op) => [`${op} broadcast col x row`, binary(op, col, row)])),
  "pow": binary("pow", pos, b),
  "pow broadcast": binary("pow", pos, row),
  "maximum with NaN": binary("maximum", special, special.flip(0)),
  "add float64": binary("add", a64, a64),
  "mul float16": binary("mul", a16, a16),
  "div bfloat16": binary("div", abf, abf.add(3)),
  // Type promotion follows PyTorch's categories and widths.
  "int64 + float32 -> float32": binary("add", i64, a),
  "int32 + int64 -> int64": binary("add", i32, i64),
  "uint8 + int32 -> int32": binary("add", u8, i32),
  "bool + bool -> bool": binary("add", m1, m2),
  "bool * float32": binary("mul", m1, a),
  "float16 + bfloat16 -> float32": binary("add", a16, abf),
  "float16 * float32 -> float32": binary("mul", a16, a),
  "float32 + float64 -> float64": binary("add", a, a64),
  "int64 / int64 -> float32": binary("div", i64, j64),
  "int64 % int64 (sign of divisor)": binary("remainder", i64, j64.neg()),
  "int64 ** int64 stays int64": binary("pow", i64, j64),
  "maximum int64 int32": binary("maximum", i64, i32),
  "float32 * 0-dim": binary("mul", a, scalar0d),
  "int64 + 0-dim float -> float32": binary("add", i64, scalar0d),
  "float16 + 0-dim float32 stays float16": binary("add", a16, scalar0d),
});

opTest("binary with scalars", {
  "float32 + 1.5": withScalar("add", a, 1.5),
  "float32 - 2": withScalar("sub", a, 2),
  "float32 * -3": withScalar("mul", a, -3),
  "float32 / 4": withScalar("div", a, 4),
  "float32 ** 2": withScalar("pow", a, 2),
  "float32 ** 0.5": withScalar("pow", pos, 0.5),
  "float32 ** -1.5": withScalar("pow", pos, -1.5),
  "float32 % 0.7": withScalar("remainder", a, 0.7),
  "float32 % -0.7": withScalar("remainder", a, -0.7),
  "float64 + 0.1 keeps the double": withScalar("add", a64, 0.1),
  "float16 + 1 stays float16": withScalar("add", a16, 1),
  "bfloat16 * 2.5 stays bfloat16": withScalar("mul", abf, 2.5),
  "int64 + 1 stays int64": withScalar("add", i64, 1),
  "int64 + 1.5 -> float32": withScalar("add", i64, 1.5),
  "int64 - -3": withScalar("sub", i64, -3),
  "int64 * 2": withScalar("mul", i64, 2),
  "int64 * 0.5 -> float32": withScalar("mul", i64, 0.5),
  "int64 / 2 -> float32": withScalar("div", i64, 2),
  "int64 ** 2 stays int64": withScalar("pow", i64, 2),
  "int64 ** 0.5 -> float32": withScalar("pow", i64, 0.5),
  "int64 % 3": withScalar("remainder", i64, 3),
  "int64 % -3": withScalar("remainder", i64, -3),
  "int32 + 1 stays int32": withScalar("add", i32, 1),
  "uint8 + 1 stays uint8": withScalar("add", u8, 1),
  "bool + 1 -> int64": withScalar("add", m1, 1),
  "bool * 1.5 -> float32": withScalar("mul", m1, 1.5),
  // maximum/minimum with a number act like PyTorch's maximum with a 0-dim tensor of that value.
  "maximum float32": withScalar("maximum", a, 0.2, "torch.maximum(x, torch.tensor(0.2))"),
  "minimum float32": withScalar("minimum", a, -0.2, "torch.minimum(x, torch.tensor(-0.2))"),
  "maximum int64 with 1": withScalar("maximum", i64, 1, "torch.maximum(x, torch.tensor(1))"),
  "maximum int64 with 1.5 -> float32": withScalar("maximum", i64, 1.5, "torch.maximum(x, torch.tensor(1.5))"),
  "minimum int32 with -2": withScalar("minimum", i32, -2, "torch.minimum(x, torch.tensor(-2))"),
  "rsub float32": { code: "1 - x", inputs: { x: a }, mdm: () => a.rsub(1) },
  "rsub int64 stays int64": { code: "10 - x", inputs: { x: i64 }, mdm: () => i64.rsub(10) },
  "rsub int64 with 0.5 -> float32": { code: "0.5 - x", inputs: { x: i64 }, mdm: () => i64.rsub(0.5) },
  "rdiv float32": { code: "2 / x", inputs: { x: pos }, mdm: () => pos.rdiv(2) },
  "rdiv int64 -> float32": { code: "1 / x", inputs: { x: j64 }, mdm: () => j64.rdiv(1) },
  "rdiv float64": { code: "3 / x", inputs: { x: a64 }, mdm: () => a64.rdiv(3) },
  "rdiv by zero": { code: "1 / x", inputs: { x: special }, mdm: () => special.rdiv(1) },
});

// ---- comparisons and logic

type CmpName = "eq" | "ne" | "lt" | "le" | "gt" | "ge";
const CMP: Record<CmpName, string> = { eq: "==", ne: "!=", lt: "<", le: "<=", gt: ">", ge: ">=" };
const cmp = (op: CmpName, x: Tensor, y: Tensor | number): Case =>
  typeof y === "number"
    ? { code: `x ${CMP[op]} ${py(y)}`, inputs: { x }, mdm: () => x[op](y) }
    : { code: `x ${CMP[op]} y`, inputs: { x, y }, mdm: () => x[op](y) };

opTest("comparisons and logic", {
  ...Object.fromEntries((Object.keys(CMP) as CmpName[]).flatMap((op) => [
    [`${op} tensors`, cmp(op, a, b)],
    [`${op} broadcast`, cmp(op, a, row)],
    [`${op} scalar`, cmp(op, a, 0.25)],
    [`${op} int64 scalar`, cmp(op, i64, 2)],
    [`${op} int64 vs fraction`, cmp(op, i64, 1.5)],
    [`${op} NaN`, cmp(op, special, special)],
  ])),
  "eq int64 vs int32": cmp("eq", i64, i32),
  "lt int64 vs float32": cmp("lt", i64, a),
  "eq bool vs 1": cmp("eq", m1, 1),
  "logicalAnd": { code: "torch.logical_and(x, y)", inputs: { x: m1, y: m2 }, mdm: () => m1.logicalAnd(m2) },
  "logicalOr": { code: "torch.logical_or(x, y)", inputs: { x: m1, y: m2 }, mdm: () => m1.logicalOr(m2) },
  "logicalAnd of numbers (non-zero is true)": {
    code: "torch.logical_and(x, y)",
    inputs: { x: a, y: i64 },
    mdm: () => a.logicalAnd(i64),
  },
  "logicalOr broadcast": {
    code: "torch.logical_or(x, y > 0)",
    inputs: { x: m1, y: row },
    mdm: () => m1.logicalOr(row.gt(0)),
  },
  "logicalNot": { code: "torch.logical_not(x)", inputs: { x: m1 }, mdm: () => m1.logicalNot() },
});

// ---- selection: where, clamp, maskedFill

opTest("where, clamp, maskedFill", {
  "where method": { code: "torch.where(m, x, y)", inputs: { m: m1, x: a, y: b }, mdm: () => a.where(m1, b) },
  "where function": { code: "torch.where(m, x, y)", inputs: { m: m1, x: a, y: b }, mdm: () => where(m1, a, b) },
  "where broadcast": {
    code: "torch.where(m, x, y)",
    inputs: { m: col.gt(0), x: a, y: row },
    mdm: () => where(col.gt(0), a, row),
  },
  "where promotes int64 with float32": {
    code: "torch.where(m, x, y)",
    inputs: { m: m1, x: i64, y: a },
    mdm: () => i64.where(m1, a),
  },
  "clamp both": { code: "torch.clamp(x, -0.5, 0.5)", inputs: { x: a }, mdm: () => a.clamp(-0.5, 0.5) },
  "clamp min only": { code: "torch.clamp(x, min=-0.5)", inputs: { x: a }, mdm: () => a.clamp(-0.5) },
  "clamp max only (null min)": { code: "torch.clamp(x, max=0.3)", inputs: { x: a }, mdm: () => a.clamp(null, 0.3) },
  "clamp max only (undefined min)": {
    code: "torch.clamp(x, max=0.3)",
    inputs: { x: a },
    mdm: () => a.clamp(undefined, 0.3),
  },
  "clamp NaN and infinities": {
    code: "torch.clamp(x, -1, 1)",
    inputs: { x: special },
    mdm: () => special.clamp(-1, 1),
  },
  "clamp int64 stays int64": { code: "torch.clamp(x, -2, 3)", inputs: { x: i64 }, mdm: () => i64.clamp(-2, 3) },
  "clamp int64 with fractions -> float32": {
    code: "torch.clamp(x, -1.5, 2.5)",
    inputs: { x: i64 },
    mdm: () => i64.clamp(-1.5, 2.5),
  },
  "clamp bfloat16": { code: "torch.clamp(x, min=0)", inputs: { x: abf }, mdm: () => abf.clamp(0) },
  "maskedFill 0": { code: "x.masked_fill(m, 0)", inputs: { x: a, m: m1 }, mdm: () => a.maskedFill(m1, 0) },
  "maskedFill -inf": {
    code: "x.masked_fill(m, float('-inf'))",
    inputs: { x: a, m: m1 },
    mdm: () => a.maskedFill(m1, -Infinity),
  },
  "maskedFill broadcast mask": {
    code: "x.masked_fill(m, 9.5)",
    inputs: { x: a, m: row.gt(0) },
    mdm: () => a.maskedFill(row.gt(0), 9.5),
  },
  "maskedFill int64": { code: "x.masked_fill(m, 7)", inputs: { x: i64, m: m1 }, mdm: () => i64.maskedFill(m1, 7) },
  "maskedFill int64 with a fraction": {
    code: "x.masked_fill(m, 2.5)",
    inputs: { x: i64, m: m1 },
    mdm: () => i64.maskedFill(m1, 2.5),
  },
  "maskedFill bool": { code: "x.masked_fill(m, 1)", inputs: { x: m1, m: m2 }, mdm: () => m1.maskedFill(m2, 1) },
});

// ---- in place (inputs are cloned first so that other cases see them unchanged)

const inplace = (code: string, inputs: Record<string, Tensor>, mdm: () => Tensor): Case => ({ code, inputs, mdm });

opTest("in place", {
  "add_ tensor": inplace("x.clone().add_(y)", { x: a, y: b }, () => a.clone().add_(b)),
  "add_ broadcast": inplace("x.clone().add_(y)", { x: a, y: row }, () => a.clone().add_(row)),
  "add_ int64 into float32": inplace("x.clone().add_(y)", { x: a, y: i64 }, () => a.clone().add_(i64)),
  "add_ scalar int64 stays int64": inplace("x.clone().add_(2)", { x: i64 }, () => i64.clone().add_(2)),
  "sub_ scalar": inplace("x.clone().sub_(1.5)", { x: a }, () => a.clone().sub_(1.5)),
  "sub_ tensor": inplace("x.clone().sub_(y)", { x: a, y: b }, () => a.clone().sub_(b)),
  "mul_ broadcast column": inplace("x.clone().mul_(y)", { x: a, y: col }, () => a.clone().mul_(col)),
  "mul_ int64 scalar": inplace("x.clone().mul_(-3)", { x: i64 }, () => i64.clone().mul_(-3)),
  "div_ tensor": inplace("x.clone().div_(y)", { x: a, y: pos }, () => a.clone().div_(pos)),
  "div_ scalar": inplace("x.clone().div_(4)", { x: a }, () => a.clone().div_(4)),
  "div_ float16": inplace("x.clone().div_(3)", { x: a16 }, () => a16.clone().div_(3)),
  "copy_": inplace("torch.zeros(3, 4).copy_(x)", { x: a }, () => zeros([3, 4]).copy_(a)),
  "copy_ broadcast": inplace("torch.zeros(3, 4).copy_(x)", { x: row }, () => zeros([3, 4]).copy_(row)),
  "copy_ float into int64 truncates": inplace(
    "torch.zeros(3, 4, dtype=torch.int64).copy_(x)",
    { x: big },
    () => zeros([3, 4], { dtype: "int64" }).copy_(big),
  ),
  "copy_ into float16 rounds": inplace(
    "torch.zeros(3, 4, dtype=torch.float16).copy_(x)",
    { x: a },
    () => zeros([3, 4], { dtype: "float16" }).copy_(a),
  ),
  "copy_ int64 into float32": inplace("x.clone().copy_(y)", { x: a, y: i64 }, () => a.clone().copy_(i64)),
  "fill_": inplace("x.clone().fill_(2.5)", { x: a }, () => a.clone().fill_(2.5)),
  "fill_ int64": inplace("x.clone().fill_(3)", { x: i64 }, () => i64.clone().fill_(3)),
  "fill_ int64 with a fraction truncates": inplace("x.clone().fill_(2.7)", { x: i64 }, () => i64.clone().fill_(2.7)),
  "fill_ bool": inplace("x.clone().fill_(0)", { x: m1 }, () => m1.clone().fill_(0)),
  "zero_": inplace("x.clone().zero_()", { x: a }, () => a.clone().zero_()),
  "zero_ int32": inplace("x.clone().zero_()", { x: i32 }, () => i32.clone().zero_()),
  "lerp_": inplace("x.clone().lerp_(y, 0.25)", { x: a, y: b }, () => a.clone().lerp_(b, 0.25)),
  "lerp_ broadcast end": inplace("x.clone().lerp_(y, 0.9)", { x: a, y: row }, () => a.clone().lerp_(row, 0.9)),
  "lerp_ float64": inplace("x.clone().lerp_(x * 2, 0.001)", { x: a64 }, () => a64.clone().lerp_(a64.mul(2), 0.001)),
});

Deno.test("in-place ops update and return the same tensor", () =>
  tidy(() => {
    const x = zeros([2]);
    assert.equal(x.add_(1), x);
    assert.equal(x.mul_(3).sub_(0.5).div_(2), x);
    assert.deepEqual([...x.toArray()], [1.25, 1.25]);
    assert.equal(x.fill_(4).lerp_(zeros([2]), 0.5), x);
    assert.deepEqual([...x.toArray()], [2, 2]);
    assert.equal(x.zero_(), x);
    assert.deepEqual([...x.toArray()], [0, 0]);
  }));

Deno.test("in-place ops refuse what PyTorch refuses", () =>
  tidy(() => {
    // PyTorch: "result type Float can't be cast to the desired output type Long".
    assert.throws(() => i64.clone().add_(1.5));
    assert.throws(() => i64.clone().add_(a));
    // True division of an integer tensor cannot be stored in it.
    assert.throws(() => i64.clone().div_(2));
    // The output cannot broadcast to a larger shape.
    assert.throws(() => row.clone().add_(a));
  }));

// ---- dtype conversion

const to = (x: Tensor, d: DType, name = "x"): Case => ({
  code: `${name}.to(torch.${d})`,
  inputs: { [name]: x },
  mdm: () => x.to(d),
  tol: EXACT,
});

opTest("to", {
  "float32 -> int64 truncates toward zero": to(big, "int64"),
  "float32 -> int32 truncates toward zero": to(big, "int32"),
  "float32 -> uint8": to(big.abs(), "uint8"),
  "float32 -> bool": to(a, "bool"),
  "special -> bool": to(special, "bool"),
  "float32 -> float16": to(a, "float16"),
  "float32 -> bfloat16": to(a, "bfloat16"),
  "float32 -> float16 overflows to inf": to(huge, "float16"),
  "float32 -> bfloat16 keeps the range": to(huge, "bfloat16"),
  "float16 -> float32": to(a16, "float32"),
  "bfloat16 -> float32": to(abf, "float32"),
  "float16 -> bfloat16": to(a16, "bfloat16"),
  "float32 -> float64": to(a, "float64"),
  "float64 -> float32": to(a64, "float32"),
  "int64 -> float32": to(i64, "float32"),
  "int64 -> bool": to(i64, "bool"),
  "int64 -> int32": to(i64, "int32"),
  "bool -> float32": to(m1, "float32"),
  "uint8 -> int64": to(u8, "int64"),
  "float32 -> float32 is the same values": to(a, "float32"),
  "float()": { code: "x.float()", inputs: { x: i64 }, mdm: () => i64.float(), tol: EXACT },
  "long()": { code: "x.long()", inputs: { x: big }, mdm: () => big.long() },
  "to({dtype})": { code: "x.to(torch.float16)", inputs: { x: a }, mdm: () => a.to({ dtype: "float16" }), tol: EXACT },
  "round trip through bfloat16": {
    code: "x.to(torch.bfloat16).to(torch.float32)",
    inputs: { x: a },
    mdm: () => a.to("bfloat16").to("float32"),
    tol: EXACT,
  },
  "round trip through float16": {
    code: "x.to(torch.float16).to(torch.float32)",
    inputs: { x: a },
    mdm: () => a.to("float16").to("float32"),
    tol: EXACT,
  },
});
