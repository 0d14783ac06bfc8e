// Reductions, sorting and linear algebra, each checked against Debian's PyTorch (the same libtorch
// build) on the same inputs.
import assert from "node:assert/strict";
import { F, manualSeed, randint, randn, Tensor, tensor, tidy } from "../mod.ts";
import { isFloat } from "../src/dtype.ts";
import { assertClose, type RefCase, type RefValue, type Tolerance, torchRef } from "./helpers/torch_ref.ts";

// ---- harness: every case of the file goes to PyTorch in one batch (one Python start)

type Out = Tensor | readonly Tensor[];
interface Case extends RefCase {
  mdm: () => Out;
  /** Tolerance for floating-point results; integer and bool results must match exactly. */
  tol?: Tolerance;
  checkDtype?: boolean;
}

// Same kernels on both sides; the slack covers mdm running on several threads (the reference on
// one), which can change summation order and BLAS blocking.
const DEFAULT_TOL: Record<string, Tolerance> = {
  float32: { rtol: 1e-5, atol: 1e-5 },
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

function compare(out: Out, ref: RefValue, c: Case, what: string): void {
  const one = (t: Tensor, r: RefValue, w: string) =>
    assertClose(t, r, { ...(isFloat(t.dtype) ? c.tol ?? DEFAULT_TOL[t.dtype] : EXACT), checkDtype: c.checkDtype }, w);
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
      await t.step(name, () => tidy(() => compare(c.mdm(), ref[`${group}/${name}`], c, name)));
    }
  });
}

const pyDims = (d: number | readonly number[]) => (typeof d === "number" ? String(d) : `(${d.join(", ")},)`);

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

type Reducer = "sum" | "mean" | "amax" | "amin";
// Dims lists in every order and sign: a reduction must not depend on how they are spelled.
const DIMS: (number | number[])[] = [1, -1, [0, 2], [2, 0], [-1, 0], [1, 0]];

function reduce(op: Reducer, t: Tensor, dim?: number | number[], keepdim = false): Case {
  const args = dim === undefined
    ? (keepdim ? `dim=(0, 1, 2), keepdim=True` : "")
    : `${pyDims(dim)}, keepdim=${keepdim ? "True" : "False"}`;
  return { code: `torch.${op}(t${args ? ", " + args : ""})`, inputs: { t }, mdm: () => t[op](dim, keepdim) };
}

const reducerCases = (op: Reducer): Record<string, Case> => ({
  [`${op} all`]: reduce(op, x),
  [`${op} all keepdim`]: reduce(op, x, undefined, true),
  ...Object.fromEntries(DIMS.flatMap((d) => [
    [`${op} dim ${d}`, reduce(op, x, d)],
    [`${op} dim ${d} keepdim`, reduce(op, x, d, true)],
  ])),
  [`${op} float64 dim 1`]: reduce(op, x64, 1),
  [`${op} float16 dims [0, 2]`]: reduce(op, x16, [0, 2]),
});

opTest("sum mean amax amin", {
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

opTest("logsumexp", {
  "dim 1": { code: "torch.logsumexp(t, 1)", inputs: { t: wide }, mdm: () => wide.logsumexp(1) },
  "dim -1 keepdim": {
    code: "torch.logsumexp(t, -1, keepdim=True)",
    inputs: { t: wide },
    mdm: () => wide.logsumexp(-1, true),
  },
  "dims [0, 2]": { code: "torch.logsumexp(t, (0, 2))", inputs: { t: wide }, mdm: () => wide.logsumexp([0, 2]) },
  "dims [2, 0] keepdim": {
    code: "torch.logsumexp(t, (2, 0), keepdim=True)",
    inputs: { t: x },
    mdm: () => x.logsumexp([2, 0], true),
  },
  "float64": { code: "torch.logsumexp(t, 0)", inputs: { t: x64 }, mdm: () => x64.logsumexp(0) },
});

// ---- all, any (1.13 reduces one dim at a time, so the reference counts non-zeros instead)

function allAny(op: "all" | "any", t: Tensor, dim?: number | number[], keepdim = false): Case {
  const d = dim === undefined ? "(0, 1, 2)" : pyDims(dim);
  const count = `(t != 0).sum(${d}, keepdim=${keepdim ? "True" : "False"})`;
  const size = dim === undefined
    ? "t.numel()"
    : `np.prod([t.shape[i] for i in ${typeof dim === "number" ? `[${dim}]` : d}])`;
  return {
    code: op === "all" ? `${count} == ${size}` : `${count} > 0`,
    inputs: { t },
    mdm: () => t[op](dim, keepdim),
  };
}

opTest("all any", {
  ...Object.fromEntries((["all", "any"] as const).flatMap((op) => [
    [`${op} everything`, allAny(op, sparse)],
    [`${op} everything keepdim`, allAny(op, sparse, undefined, true)],
    ...DIMS.flatMap((d) => [
      [`${op} dim ${d}`, allAny(op, sparse, d)],
      [`${op} dim ${d} keepdim`, allAny(op, sparse, d, true)],
    ]),
    [`${op} bool`, allAny(op, xb, 2)],
    [`${op} float`, allAny(op, x.relu(), [1, 2])],
  ])),
  "all builtin one dim": { code: "t.all(1)", inputs: { t: xb }, mdm: () => xb.all(1) },
  "any builtin everything": { code: "t.any()", inputs: { t: xb }, mdm: () => xb.any() },
  // PyTorch keeps uint8 for uint8 inputs; mdm always answers bool (the values agree).
  "all uint8 values": {
    code: "t.to(torch.uint8).all(1)",
    inputs: { t: sparse },
    mdm: () => sparse.to("uint8").all(1),
    checkDtype: false,
  },
});

// ---- var, std

function moment(op: "var" | "std", t: Tensor, dim: number | number[] | undefined, unbiased: boolean, keepdim: boolean) {
  const d = dim === undefined ? "None" : pyDims(dim);
  return {
    code: `torch.${op}(t, ${d}, unbiased=${unbiased ? "True" : "False"}, keepdim=${keepdim ? "True" : "False"})`,
    inputs: { t },
    mdm: () => t[op](dim, { unbiased, keepdim }),
  };
}

opTest("var std", {
  ...Object.fromEntries(
    (["var", "std"] as const).flatMap((op) =>
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
  "var default is unbiased": { code: "torch.var(t)", inputs: { t: x }, mdm: () => x.var() },
  "std default is unbiased": { code: "torch.std(t, 1)", inputs: { t: x }, mdm: () => x.std(1) },
  "var float64": moment("var", x64, 2, true, false),
  "std of one element is NaN": {
    code: "torch.std(t[:, :, :1], 2)",
    inputs: { t: x },
    mdm: () => x.narrow(2, 0, 1).std(2),
  },
});

// ---- max/min along a dim, argmax/argmin, sort, topk, cumsum

opTest("max min arg sort topk cumsum", {
  "max dim 1": { code: "torch.max(t, 1)", inputs: { t: x }, mdm: () => x.max(1) },
  "max dim -1 keepdim": { code: "torch.max(t, -1, keepdim=True)", inputs: { t: x }, mdm: () => x.max(-1, true) },
  "min dim 0": { code: "torch.min(t, 0)", inputs: { t: x }, mdm: () => x.min(0) },
  "min dim 2 keepdim": { code: "torch.min(t, 2, keepdim=True)", inputs: { t: x }, mdm: () => x.min(2, true) },
  "max int64": { code: "torch.max(t, 1)", inputs: { t: xi }, mdm: () => xi.max(1) },
  "min float64": { code: "torch.min(t, 1)", inputs: { t: x64 }, mdm: () => x64.min(1) },
  "argmax flat": { code: "torch.argmax(t)", inputs: { t: x }, mdm: () => x.argmax() },
  "argmin flat": { code: "torch.argmin(t)", inputs: { t: x }, mdm: () => x.argmin() },
  "argmax flat keepdim": {
    code: "torch.argmax(t, keepdim=True)",
    inputs: { t: x },
    mdm: () => x.argmax(undefined, true),
  },
  "argmax dim 1": { code: "torch.argmax(t, 1)", inputs: { t: x }, mdm: () => x.argmax(1) },
  "argmin dim -1 keepdim": {
    code: "torch.argmin(t, -1, keepdim=True)",
    inputs: { t: x },
    mdm: () => x.argmin(-1, true),
  },
  "argmax int32": { code: "torch.argmax(t, 2)", inputs: { t: xi32 }, mdm: () => xi32.argmax(2) },
  "argsort default": { code: "torch.argsort(t)", inputs: { t: x }, mdm: () => x.argsort() },
  "argsort dim 0 descending": {
    code: "torch.argsort(t, 0, descending=True)",
    inputs: { t: x },
    mdm: () => x.argsort(0, true),
  },
  "sort default": { code: "torch.sort(t)", inputs: { t: x }, mdm: () => x.sort() },
  "sort dim 1 descending": { code: "torch.sort(t, 1, descending=True)", inputs: { t: x }, mdm: () => x.sort(1, true) },
  "sort float64": { code: "torch.sort(t, -1)", inputs: { t: x64 }, mdm: () => x64.sort(-1) },
  "topk 2 largest": { code: "torch.topk(t, 2)", inputs: { t: x }, mdm: () => x.topk(2) },
  "topk 2 smallest dim 1": {
    code: "torch.topk(t, 2, 1, largest=False)",
    inputs: { t: x },
    mdm: () => x.topk(2, 1, false),
  },
  "topk 1 dim 0": { code: "torch.topk(t, 1, 0)", inputs: { t: x }, mdm: () => x.topk(1, 0) },
  "topk all of a dim": { code: "torch.topk(t, 4, -1)", inputs: { t: x }, mdm: () => x.topk(4, -1) },
  "cumsum dim 0": { code: "torch.cumsum(t, 0)", inputs: { t: x }, mdm: () => x.cumsum(0) },
  "cumsum dim -1": { code: "torch.cumsum(t, -1)", inputs: { t: x }, mdm: () => x.cumsum(-1) },
  "cumsum int32 -> int64": { code: "torch.cumsum(t, 1)", inputs: { t: xi32 }, mdm: () => xi32.cumsum(1) },
  "cumsum bool -> int64": { code: "torch.cumsum(t, 2)", inputs: { t: xb }, mdm: () => xb.cumsum(2) },
  "cumsum float64": { code: "torch.cumsum(t, 1)", inputs: { t: x64 }, mdm: () => x64.cumsum(1) },
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

const mm = (a: Tensor, b: Tensor): Case => ({ code: "torch.matmul(a, b)", inputs: { a, b }, mdm: () => a.matmul(b) });
const ein = (eq: string, ...ts: Tensor[]): Case => {
  const names = ts.map((_, i) => `t${i}`);
  return {
    code: `torch.einsum('${eq}', ${names.join(", ")})`,
    inputs: Object.fromEntries(ts.map((t, i) => [names[i], t])),
    mdm: () => F.einsum(eq, ...ts),
  };
};

opTest("matmul bmm linear einsum", {
  "matmul 2-D": mm(m34, m45),
  "matmul vector @ matrix": mm(v4, m45),
  "matmul matrix @ vector": mm(m34, v4),
  "matmul vector @ vector": mm(v4, v4),
  "matmul batched": mm(b234, b245),
  "matmul batched @ 2-D": mm(b234, m45),
  "matmul broadcast batch dims": mm(b2134, m542),
  "matmul float64": mm(d34, d45),
  "matmul int64": mm(i34, i45),
  "bmm": { code: "torch.bmm(a, b)", inputs: { a: b234, b: b245 }, mdm: () => b234.bmm(b245) },
  "linear with bias": {
    code: "F.linear(x, w, b)",
    inputs: { x: m34, w: w54, b: bias5 },
    mdm: () => F.linear(m34, w54, bias5),
  },
  "linear without bias": { code: "F.linear(x, w)", inputs: { x: m34, w: w54 }, mdm: () => F.linear(m34, w54) },
  "linear batched input": {
    code: "F.linear(x, w, b)",
    inputs: { x: b234, w: w54, b: bias5 },
    mdm: () => F.linear(b234, w54, bias5),
  },
  "linear vector input": {
    code: "F.linear(x, w, b)",
    inputs: { x: v4, w: w54, b: bias5 },
    mdm: () => F.linear(v4, w54, bias5),
  },
  "einsum matmul": ein("ij,jk->ik", m34, m45),
  "einsum batched": ein("bij,bjk->bik", b234, b245),
  "einsum attention scores": ein("bhqd,bhkd->bhqk", q, k),
  "einsum outer": ein("i,j->ij", v4, bias5),
  "einsum diagonal": ein("ii->i", sq),
  "einsum trace": ein("ii", sq),
  "einsum transpose": ein("ij->ji", m34),
  "einsum sum over all": ein("ijk->", b234),
  "einsum implicit output": ein("ij,jk", m34, m45),
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
