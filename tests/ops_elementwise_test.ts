// Creation, host round trips, elementwise arithmetic, comparisons, in-place updates and dtype
// conversion, each checked against Debian's PyTorch (the same libtorch build) on the same inputs,
// with gradients where the op is differentiable (tests/helpers/op_harness.ts).
import assert from "node:assert/strict";
import { type DType, manualSeed, rand, randint, randn, type Tensor, tensor, tidy, zeros } from "../mod.ts";
import { call, dt, EXACT, type OpCase, OpSuite } from "./helpers/op_harness.ts";

// Same kernels on both sides, so results are mostly bit-identical; the slack covers mdm running
// on several threads (the reference runs on one) and vectorised versus scalar loop tails.
const suite = new OpSuite({
  float32: { rtol: 1e-5, atol: 1e-6 },
  float64: { rtol: 1e-12, atol: 1e-12 },
  float16: { rtol: 1e-3, atol: 1e-3 },
  bfloat16: { rtol: 1e-2, atol: 1e-2 },
});

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

const create = (op: string, args: OpCase["args"], kwargs?: OpCase["kwargs"], tol?: OpCase["tol"]): OpCase => ({
  op,
  args,
  kwargs,
  tol,
});

suite.test("creation", {
  "nested numbers default to float32": create("tensor", [[[1, 2.5, -3], [0.1, 1e-7, 1e7]]], undefined, EXACT),
  ...Object.fromEntries(
    DTYPES.map((d) => [`nested numbers as ${d}`, create("tensor", [LITERALS[d]], { dtype: dt(d) }, EXACT)]),
  ),
  "nested fractions truncate to int64": create("tensor", [[1.9, -1.9, 0.5]], { dtype: dt("int64") }),
  "nested booleans are bool": create("tensor", [[[true, false], [false, true]]]),
  "nested bigints are int64": create("tensor", [[[1n, -2n], [2n ** 40n + 1n, 3n]]]),
  "nested bigints as int32": create("tensor", [[1n, -2n, 70000n]], { dtype: dt("int32") }),
  "nested bigints as float64": create("tensor", [[1n, -2n, 9007199254740993n]], { dtype: dt("float64") }, EXACT),
  "0-dim number": create("tensor", [2.5], undefined, EXACT),
  "0-dim boolean": create("tensor", [true]),
  "empty": create("tensor", [[]]),
  "Float32Array": create("tensor", [Float32Array.of(0.1, -2.5, 1e-30)], undefined, EXACT),
  "Float64Array": create("tensor", [Float64Array.of(0.1, -2.5, 1e-300)], undefined, EXACT),
  "Int32Array": create("tensor", [Int32Array.of(-(2 ** 31), 0, 2 ** 31 - 1)]),
  "BigInt64Array": create("tensor", [BigInt64Array.of(-(2n ** 63n), 0n, 2n ** 63n - 1n)]),
  "Uint8Array": create("tensor", [Uint8Array.of(0, 1, 255)]),
  "Uint8Array as bool": create("tensor", [Uint8Array.of(0, 1, 255)], { dtype: dt("bool") }),
  "Float32Array as float16": create(
    "tensor",
    [Float32Array.of(0.1, 70000, 1e-8, -1 / 3)],
    { dtype: dt("float16") },
    EXACT,
  ),
  "Float32Array as bfloat16": create(
    "tensor",
    [Float32Array.of(0.1, 1e38, 1e-8, -1 / 3)],
    { dtype: dt("bfloat16") },
    EXACT,
  ),
  "Float64Array as float16": create("tensor", [Float64Array.of(0.1, 1 / 3, 65519.99)], { dtype: dt("float16") }, EXACT),
  "Int32Array as float32": create("tensor", [Int32Array.of(16777217, -3)], { dtype: dt("float32") }, EXACT),
  "typed array view at an offset": create("tensor", [Float32Array.of(9, 1, 2, 3).subarray(1)], undefined, EXACT),
  "typed array with a shape": create("tensor", [Float32Array.of(0, 1, 2, 3, 4, 5)], { shape: [2, 3] }, EXACT),
  ...Object.fromEntries(DTYPES.flatMap((d) => [
    [`zeros ${d}`, create("zeros", [[2, 3]], { dtype: dt(d) }, EXACT)],
    [`ones ${d}`, create("ones", [[2, 3]], { dtype: dt(d) }, EXACT)],
  ])),
  "zeros default float32": create("zeros", [[4]], undefined, EXACT),
  "full float32": create("full", [[2, 2], 2.5], undefined, EXACT),
  "full float64 keeps the double": create("full", [[2], 0.1], { dtype: dt("float64") }, EXACT),
  "full int64 truncates": create("full", [[2], 2.5], { dtype: dt("int64") }),
  "full -inf": create("full", [[3], -Infinity], undefined, EXACT),
  "full bool": create("full", [[2], 1], { dtype: dt("bool") }),
  "full 0-dim": create("full", [[], 7], undefined, EXACT),
  "arange(n)": create("arange", [5]),
  "arange with step": create("arange", [1, 10, 3]),
  "arange negative step": create("arange", [-1, -10, -2]),
  "arange fractional step is float32": create("arange", [0, 1, 0.1], undefined, EXACT),
  "arange fractional start": create("arange", [0.5, 3], undefined, EXACT),
  "arange float64": create("arange", [0, 1, 0.25], { dtype: dt("float64") }, EXACT),
  "arange int32": create("arange", [0, 5, 1], { dtype: dt("int32") }),
  "linspace": create("linspace", [0, 1, 5], undefined, EXACT),
  "linspace float64": create("linspace", [-1, 1, 7], { dtype: dt("float64") }, EXACT),
  "linspace int64": create("linspace", [0, 10, 6], { dtype: dt("int64") }),
  "linspace one step": create("linspace", [3, 3, 1], undefined, EXACT),
  "linspace no steps": create("linspace", [0, 1, 0], undefined, EXACT),
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

const ALL_UNARY = [
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
const NEEDS_POSITIVE = new Set(["log", "log1p", "sqrt", "rsqrt"]);

const unary = (op: string, x: Tensor): OpCase => ({ op, args: [x] });
const gelu = (x: Tensor, approximate?: string): OpCase => ({
  op: "gelu",
  args: [x],
  kwargs: approximate ? { approximate } : undefined,
});

suite.test("unary", {
  ...Object.fromEntries(ALL_UNARY.map((op) => [`${op} float32`, unary(op, NEEDS_POSITIVE.has(op) ? pos : a)])),
  ...Object.fromEntries(ALL_UNARY.map((op) => [`${op} special values`, unary(op, special)])),
  "gelu": gelu(a),
  "gelu tanh": gelu(a, "tanh"),
  ...Object.fromEntries(
    ["exp", "tanh", "sigmoid", "log", "erf"].map((op) => [`${op} float64`, unary(op, op === "log" ? a64.abs() : a64)]),
  ),
  "gelu float64": gelu(a64),
  // PyTorch 1.13 has no CPU float16 kernels for exp, tanh, sigmoid, sqrt or clamp; bfloat16 has them.
  ...Object.fromEntries(["neg", "abs", "square", "isnan"].map((op) => [`${op} float16`, unary(op, a16)])),
  ...Object.fromEntries(["exp", "sigmoid", "tanh", "neg", "abs"].map((op) => [`${op} bfloat16`, unary(op, abf)])),
  "silu bfloat16": unary("silu", abf),
  "gelu bfloat16": gelu(abf),
  // Integer inputs: sign-like ops stay integral, transcendental ones promote to float32.
  ...Object.fromEntries(
    ["neg", "abs", "sign", "square", "relu", "floor", "exp", "sqrt", "sigmoid", "reciprocal"]
      .map((op) => [`${op} int64`, unary(op, i64)]),
  ),
  "neg int32": unary("neg", i32),
  "logicalNot int64": unary("logicalNot", i64),
  "logicalNot bool": unary("logicalNot", m1),
  "isnan int64": unary("isnan", i64),
});

// ---- binary ops (PyTorch's operators +, -, *, /, **, % and functions, with Python ints for
// integral numbers, as mdm passes them)

const bin = (op: string, x: Tensor, y: Tensor | number): OpCase => ({ op, args: [x, y] });
const ARITH = ["add", "sub", "mul", "div", "maximum", "minimum", "remainder", "atan2"];

suite.test("binary with tensors", {
  ...Object.fromEntries(ARITH.map((op) => [`${op} same shape`, bin(op, a, b)])),
  ...Object.fromEntries(ARITH.map((op) => [`${op} broadcast row`, bin(op, a, row)])),
  ...Object.fromEntries(ARITH.map((op) => [`${op} broadcast col x row`, bin(op, col, row)])),
  "pow": bin("pow", pos, b),
  "pow broadcast": bin("pow", pos, row),
  "maximum with NaN": bin("maximum", special, special.flip(0)),
  "add float64": bin("add", a64, a64),
  "mul float16": bin("mul", a16, a16),
  "div bfloat16": bin("div", abf, abf.add(3)),
  // Type promotion follows PyTorch's categories and widths.
  "int64 + float32 -> float32": bin("add", i64, a),
  "int32 + int64 -> int64": bin("add", i32, i64),
  "uint8 + int32 -> int32": bin("add", u8, i32),
  "bool + bool -> bool": bin("add", m1, m2),
  "bool * float32": bin("mul", m1, a),
  "float16 + bfloat16 -> float32": bin("add", a16, abf),
  "float16 * float32 -> float32": bin("mul", a16, a),
  "float32 + float64 -> float64": bin("add", a, a64),
  "int64 / int64 -> float32": bin("div", i64, j64),
  "int64 % int64 (sign of divisor)": bin("remainder", i64, j64.neg()),
  "int64 ** int64 stays int64": bin("pow", i64, j64),
  "maximum int64 int32": bin("maximum", i64, i32),
  "float32 * 0-dim": bin("mul", a, scalar0d),
  "int64 + 0-dim float -> float32": bin("add", i64, scalar0d),
  "float16 + 0-dim float32 stays float16": bin("add", a16, scalar0d),
});

suite.test("binary with scalars", {
  "float32 + 1.5": bin("add", a, 1.5),
  "float32 - 2": bin("sub", a, 2),
  "float32 * -3": bin("mul", a, -3),
  "float32 / 4": bin("div", a, 4),
  "float32 ** 2": bin("pow", a, 2),
  "float32 ** 0.5": bin("pow", pos, 0.5),
  "float32 ** -1.5": bin("pow", pos, -1.5),
  "float32 % 0.7": bin("remainder", a, 0.7),
  "float32 % -0.7": bin("remainder", a, -0.7),
  "float64 + 0.1 keeps the double": bin("add", a64, 0.1),
  "float16 + 1 stays float16": bin("add", a16, 1),
  "bfloat16 * 2.5 stays bfloat16": bin("mul", abf, 2.5),
  "int64 + 1 stays int64": bin("add", i64, 1),
  "int64 + 1.5 -> float32": bin("add", i64, 1.5),
  "int64 - -3": bin("sub", i64, -3),
  "int64 * 2": bin("mul", i64, 2),
  "int64 * 0.5 -> float32": bin("mul", i64, 0.5),
  "int64 / 2 -> float32": bin("div", i64, 2),
  "int64 ** 2 stays int64": bin("pow", i64, 2),
  "int64 ** 0.5 -> float32": bin("pow", i64, 0.5),
  "int64 % 3": bin("remainder", i64, 3),
  "int64 % -3": bin("remainder", i64, -3),
  "int32 + 1 stays int32": bin("add", i32, 1),
  "uint8 + 1 stays uint8": bin("add", u8, 1),
  "bool + 1 -> int64": bin("add", m1, 1),
  "bool * 1.5 -> float32": bin("mul", m1, 1.5),
  // maximum/minimum with a number act like PyTorch's maximum with a 0-dim tensor of that value.
  "maximum float32": bin("maximum", a, 0.2),
  "minimum float32": bin("minimum", a, -0.2),
  "maximum int64 with 1": bin("maximum", i64, 1),
  "maximum int64 with 1.5 -> float32": bin("maximum", i64, 1.5),
  "minimum int32 with -2": bin("minimum", i32, -2),
  "rsub float32": bin("rsub", a, 1),
  "rsub int64 stays int64": bin("rsub", i64, 10),
  "rsub int64 with 0.5 -> float32": bin("rsub", i64, 0.5),
  "rdiv float32": bin("rdiv", pos, 2),
  "rdiv int64 -> float32": bin("rdiv", j64, 1),
  "rdiv float64": bin("rdiv", a64, 3),
  "rdiv by zero": bin("rdiv", special, 1),
});

// ---- comparisons and logic

suite.test("comparisons and logic", {
  ...Object.fromEntries(["eq", "ne", "lt", "le", "gt", "ge"].flatMap((op) => [
    [`${op} tensors`, bin(op, a, b)],
    [`${op} broadcast`, bin(op, a, row)],
    [`${op} scalar`, bin(op, a, 0.25)],
    [`${op} int64 scalar`, bin(op, i64, 2)],
    [`${op} int64 vs fraction`, bin(op, i64, 1.5)],
    [`${op} NaN`, bin(op, special, special)],
  ])),
  "eq int64 vs int32": bin("eq", i64, i32),
  "lt int64 vs float32": bin("lt", i64, a),
  "eq bool vs 1": bin("eq", m1, 1),
  "logicalAnd": bin("logicalAnd", m1, m2),
  "logicalOr": bin("logicalOr", m1, m2),
  "logicalAnd of numbers (non-zero is true)": bin("logicalAnd", a, i64),
  "logicalOr broadcast": bin("logicalOr", m1, row.gt(0)),
  "logicalNot": unary("logicalNot", m1),
});

// ---- selection: where, clamp, maskedFill

const clamp = (x: Tensor, ...bounds: (number | null | undefined)[]): OpCase => ({ op: "clamp", args: [x, ...bounds] });
const maskedFill = (x: Tensor, m: Tensor, v: number): OpCase => ({ op: "maskedFill", args: [x, m, v] });

suite.test("where, clamp, maskedFill", {
  "where method": { op: "Tensor.where", args: [a, m1, b] },
  "where function": { op: "where", args: [m1, a, b] },
  "where broadcast": { op: "where", args: [col.gt(0), a, row] },
  "where promotes int64 with float32": { op: "Tensor.where", args: [i64, m1, a] },
  "clamp both": clamp(a, -0.5, 0.5),
  "clamp min only": clamp(a, -0.5),
  "clamp max only (null min)": clamp(a, null, 0.3),
  "clamp max only (undefined min)": clamp(a, undefined, 0.3),
  "clamp NaN and infinities": clamp(special, -1, 1),
  "clamp int64 stays int64": clamp(i64, -2, 3),
  "clamp int64 with fractions -> float32": clamp(i64, -1.5, 2.5),
  "clamp bfloat16": clamp(abf, 0),
  "maskedFill 0": maskedFill(a, m1, 0),
  "maskedFill -inf": maskedFill(a, m1, -Infinity),
  "maskedFill broadcast mask": maskedFill(a, row.gt(0), 9.5),
  "maskedFill int64": maskedFill(i64, m1, 7),
  "maskedFill int64 with a fraction": maskedFill(i64, m1, 2.5),
  "maskedFill bool": maskedFill(m1, m2, 1),
});

// ---- in place (the op table runs them on a clone, so that other cases see the inputs unchanged)

const inplace = (op: string, ...args: OpCase["args"]): OpCase => ({ op, args });

suite.test("in place", {
  "add_ tensor": inplace("add_", a, b),
  "add_ broadcast": inplace("add_", a, row),
  "add_ int64 into float32": inplace("add_", a, i64),
  "add_ scalar int64 stays int64": inplace("add_", i64, 2),
  "sub_ scalar": inplace("sub_", a, 1.5),
  "sub_ tensor": inplace("sub_", a, b),
  "mul_ broadcast column": inplace("mul_", a, col),
  "mul_ int64 scalar": inplace("mul_", i64, -3),
  "div_ tensor": inplace("div_", a, pos),
  "div_ scalar": inplace("div_", a, 4),
  "div_ float16": inplace("div_", a16, 3),
  "copy_": inplace("copy_", zeros([3, 4]), a),
  "copy_ broadcast": inplace("copy_", zeros([3, 4]), row),
  "copy_ float into int64 truncates": inplace("copy_", zeros([3, 4], { dtype: "int64" }), big),
  "copy_ into float16 rounds": inplace("copy_", zeros([3, 4], { dtype: "float16" }), a),
  "copy_ int64 into float32": inplace("copy_", a, i64),
  "fill_": inplace("fill_", a, 2.5),
  "fill_ int64": inplace("fill_", i64, 3),
  "fill_ int64 with a fraction truncates": inplace("fill_", i64, 2.7),
  "fill_ bool": inplace("fill_", m1, 0),
  "zero_": inplace("zero_", a),
  "zero_ int32": inplace("zero_", i32),
  "lerp_": inplace("lerp_", a, b, 0.25),
  "lerp_ broadcast end": inplace("lerp_", a, row, 0.9),
  "lerp_ float64": inplace("lerp_", a64, a64.mul(2), 0.001),
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

const to = (x: Tensor, d: DType): OpCase => ({ op: "to", args: [x, dt(d)], tol: EXACT });

suite.test("to", {
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
  "float()": { op: "float", args: [i64], tol: EXACT },
  "long()": { op: "long", args: [big] },
  "to({dtype})": { op: "to", args: [a], kwargs: { dtype: dt("float16") }, tol: EXACT },
  "round trip through bfloat16": { op: "to", args: [call("to", a, dt("bfloat16")), dt("float32")], tol: EXACT },
  "round trip through float16": { op: "to", args: [call("to", a, dt("float16")), dt("float32")], tol: EXACT },
});
