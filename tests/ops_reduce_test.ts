// Reductions, sorting and linear algebra, each checked against Debian's PyTorch (the same libtorch
// build) on the same inputs, with gradients where the op is differentiable
// (tests/helpers/op_harness.ts).
import assert from "node:assert/strict";
import { manualSeed, randint, randn, type Tensor, tensor, tidy } from "../mod.ts";
import { type OpCase, OpSuite } from "./helpers/op_harness.ts";
import { assertClose } from "./helpers/torch_ref.ts";

// Same kernels on both sides; the slack covers mdm running on several threads (the reference on
// one), which can change summation order and BLAS blocking.
const suite = new OpSuite({
  float32: { rtol: 1e-5, atol: 1e-5 },
  float64: { rtol: 1e-12, atol: 1e-12 },
  float16: { rtol: 1e-3, atol: 1e-3 },
  bfloat16: { rtol: 1e-2, atol: 1e-2 },
});

type Dims = number | number[] | undefined;

// ---- inputs (seeded; PyTorch receives their values, not the seed)

manualSeed(7);
const x = randn([2, 3, 4]);
const x64 = randn([2, 3, 4], { dtype: "float64" });
const x16 = randn([2, 3, 4]).to("float16");
const xi = randint(-5, 6, [2, 3, 4]);
const xi32 = randint(-5, 6, [2, 3, 4], { dtype: "int32" });
const sparse = randint(0, 3, [2, 3, 4]); // zeros in most slices, so all() and any() both vary
const xb = x.gt(0);
const wide = x.mul(50); // logsumexp must not overflow

// ---- sum, mean, amax, amin, logsumexp

// Dims lists in every order and sign: a reduction must not depend on how they are spelled.
const DIMS: (number | number[])[] = [1, -1, [0, 2], [2, 0], [-1, 0], [1, 0]];

/** `t.op(dim, keepdim)`; without a dim, a reduction over everything. */
const reduce = (op: string, t: Tensor, dim?: Dims, keepdim = false): OpCase => ({
  op,
  args: keepdim ? [t, dim, true] : dim === undefined ? [t] : [t, dim],
});

const reducerCases = (op: string): Record<string, OpCase> => ({
  [`${op} all`]: reduce(op, x),
  [`${op} all keepdim`]: reduce(op, x, undefined, true),
  ...Object.fromEntries(DIMS.flatMap((d) => [
    [`${op} dim ${d}`, reduce(op, x, d)],
    [`${op} dim ${d} keepdim`, reduce(op, x, d, true)],
  ])),
  [`${op} float64 dim 1`]: reduce(op, x64, 1),
  [`${op} float16 dims [0, 2]`]: reduce(op, x16, [0, 2]),
});

suite.test("sum mean amax amin", {
  ...reducerCases("sum"),
  ...reducerCases("mean"),
  ...reducerCases("amax"),
  ...reducerCases("amin"),
  "sum int64": reduce("sum", xi),
  "sum int32 -> int64": reduce("sum", xi32, 1),
  "sum bool counts": reduce("sum", xb, [0, 2]),
  "amax int64": reduce("amax", xi, [0, 1]),
  "amin int32 keepdim": reduce("amin", xi32, 2, true),
});

suite.test("logsumexp", {
  "dim 1": reduce("logsumexp", wide, 1),
  "dim -1 keepdim": reduce("logsumexp", wide, -1, true),
  "dims [0, 2]": reduce("logsumexp", wide, [0, 2]),
  "dims [2, 0] keepdim": reduce("logsumexp", x, [2, 0], true),
  "float64": reduce("logsumexp", x64, 0),
});

// ---- all, any (1.13 reduces one dim at a time, so over several dims the reference counts
// non-zeros instead: see the op table)

suite.test("all any", {
  ...Object.fromEntries(["all", "any"].flatMap((op) => [
    [`${op} everything`, reduce(op, sparse)],
    [`${op} everything keepdim`, reduce(op, sparse, undefined, true)],
    ...DIMS.flatMap((d) => [
      [`${op} dim ${d}`, reduce(op, sparse, d)],
      [`${op} dim ${d} keepdim`, reduce(op, sparse, d, true)],
    ]),
    [`${op} bool`, reduce(op, xb, 2)],
    [`${op} float`, reduce(op, x.relu(), [1, 2])],
  ])),
  "all builtin one dim": reduce("all", xb, 1),
  "any builtin everything": reduce("any", xb),
  // PyTorch keeps uint8 for uint8 inputs; mdm always answers bool (the values agree).
  "all uint8 values": { ...reduce("all", sparse.to("uint8"), 1), checkDtype: false },
});

// ---- var, std

const moment = (op: string, t: Tensor, dim: Dims, unbiased: boolean, keepdim: boolean): OpCase => ({
  op,
  args: [t, dim],
  kwargs: { unbiased, keepdim },
});

suite.test("var std", {
  ...Object.fromEntries(
    ["var", "std"].flatMap((op) =>
      [undefined, 1, -1, [0, 2], [2, 0]].flatMap((d) =>
        [true, false].flatMap((unbiased) =>
          [false, true].map((keepdim) => [
            `${op} dim ${d ?? "all"} ${unbiased ? "unbiased" : "biased"}${keepdim ? " keepdim" : ""}`,
            moment(op, x, d, unbiased, keepdim),
          ])
        )
      )
    ),
  ),
  "var default is unbiased": { op: "var", args: [x] },
  "std default is unbiased": { op: "std", args: [x, 1] },
  "var float64": moment("var", x64, 2, true, false),
  "std of one element is NaN": { op: "std", args: [x.narrow(2, 0, 1), 2] },
});

// ---- max/min along a dim, argmax/argmin, sort, topk, cumsum

const op = (name: string, ...args: OpCase["args"]): OpCase => ({ op: name, args });

suite.test("max min arg sort topk cumsum", {
  "max dim 1": op("max", x, 1),
  "max dim -1 keepdim": op("max", x, -1, true),
  "min dim 0": op("min", x, 0),
  "min dim 2 keepdim": op("min", x, 2, true),
  "max int64": op("max", xi, 1),
  "min float64": op("min", x64, 1),
  "argmax flat": op("argmax", x),
  "argmin flat": op("argmin", x),
  "argmax flat keepdim": op("argmax", x, undefined, true),
  "argmax dim 1": op("argmax", x, 1),
  "argmin dim -1 keepdim": op("argmin", x, -1, true),
  "argmax int32": op("argmax", xi32, 2),
  "argsort default": op("argsort", x),
  "argsort dim 0 descending": op("argsort", x, 0, true),
  "sort default": op("sort", x),
  "sort dim 1 descending": op("sort", x, 1, true),
  "sort float64": op("sort", x64, -1),
  "topk 2 largest": op("topk", x, 2),
  "topk 2 smallest dim 1": op("topk", x, 2, 1, false),
  "topk 1 dim 0": op("topk", x, 1, 0),
  "topk all of a dim": op("topk", x, 4, -1),
  "cumsum dim 0": op("cumsum", x, 0),
  "cumsum dim -1": op("cumsum", x, -1),
  "cumsum int32 -> int64": op("cumsum", xi32, 1),
  "cumsum bool -> int64": op("cumsum", xb, 2),
  "cumsum float64": op("cumsum", x64, 1),
});

// ---- linear algebra

manualSeed(8);
const m34 = randn([3, 4]);
const m45 = randn([4, 5]);
const v4 = randn([4]);
const b234 = randn([2, 3, 4]);
const b245 = randn([2, 4, 5]);
const b2134 = randn([2, 1, 3, 4]);
const m542 = randn([5, 4, 2]);
const w54 = randn([5, 4]);
const bias5 = randn([5]);
const sq = randn([4, 4]);
const q = randn([2, 2, 3, 4]);
const k = randn([2, 2, 5, 4]);
const i34 = randint(-3, 4, [3, 4]);
const i45 = randint(-3, 4, [4, 5]);
const d34 = m34.to("float64");
const d45 = m45.to("float64");

suite.test("matmul bmm linear einsum", {
  "matmul 2-D": op("matmul", m34, m45),
  "matmul vector @ matrix": op("matmul", v4, m45),
  "matmul matrix @ vector": op("matmul", m34, v4),
  "matmul vector @ vector": op("matmul", v4, v4),
  "matmul batched": op("matmul", b234, b245),
  "matmul batched @ 2-D": op("matmul", b234, m45),
  "matmul broadcast batch dims": op("matmul", b2134, m542),
  "matmul float64": op("matmul", d34, d45),
  "matmul int64": op("matmul", i34, i45),
  "bmm": op("bmm", b234, b245),
  "linear with bias": op("linear", m34, w54, bias5),
  "linear without bias": op("linear", m34, w54),
  "linear batched input": op("linear", b234, w54, bias5),
  "linear vector input": op("linear", v4, w54, bias5),
  "einsum matmul": op("einsum", "ij,jk->ik", m34, m45),
  "einsum batched": op("einsum", "bij,bjk->bik", b234, b245),
  "einsum attention scores": op("einsum", "bhqd,bhkd->bhqk", q, k),
  "einsum outer": op("einsum", "i,j->ij", v4, bias5),
  "einsum diagonal": op("einsum", "ii->i", sq),
  "einsum trace": op("einsum", "ii", sq),
  "einsum transpose": op("einsum", "ij->ji", m34),
  "einsum sum over all": op("einsum", "ijk->", b234),
  "einsum implicit output": op("einsum", "ij,jk", m34, m45),
});

Deno.test("reductions of hand-computed cases", () =>
  tidy(() => {
    // Independent of PyTorch: small integer cases worked out by hand.
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    assertClose(t.sum(), { dtype: "float32", shape: [], data: Float32Array.of(21) });
    assertClose(t.sum(0), { dtype: "float32", shape: [3], data: Float32Array.of(5, 7, 9) });
    assertClose(t.mean(1, true), { dtype: "float32", shape: [2, 1], data: Float32Array.of(2, 5) });
    assertClose(t.var(1), { dtype: "float32", shape: [2], data: Float32Array.of(1, 1) });
    assertClose(t.var(1, { unbiased: false }), { dtype: "float32", shape: [2], data: Float32Array.of(2 / 3, 2 / 3) });
    assertClose(t.cumsum(1), { dtype: "float32", shape: [2, 3], data: Float32Array.of(1, 3, 6, 4, 9, 15) });
    assertClose(t.argmax(), { dtype: "int64", shape: [], data: BigInt64Array.of(5n) });
    assertClose(t.matmul(t.transpose(0, 1)), {
      dtype: "float32",
      shape: [2, 2],
      data: Float32Array.of(14, 32, 32, 77),
    });
    // A dimension named twice (1 and -1 of a 2-D tensor) is an error in PyTorch, for all() too.
    assert.throws(() => t.sum([1, -1]));
    assert.throws(() => t.all([1, -1]));
    assert.throws(() => t.any([0, 0]));
  }));
