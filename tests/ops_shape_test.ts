// Shape, layout, joining, splitting and indexing ops, checked against Debian's PyTorch (the same
// libtorch build) on the same inputs, with gradients where the op is differentiable
// (tests/helpers/op_harness.ts), including which results share storage with their input.
import assert from "node:assert/strict";
import { cat, type DType, manualSeed, randint, randn, stack, tensor, tidy } from "../mod.ts";
import { type Arg, type Call, call, dt, EXACT, type OpCase, OpSuite, type Probe } from "./helpers/op_harness.ts";

// Shape ops move values without arithmetic, so every result (and gradient) must match bit for bit.
const suite = new OpSuite(Object.fromEntries((["float32", "float64"] as DType[]).map((d) => [d, EXACT])));

// ---- inputs (seeded; PyTorch receives their values, not the seed)

manualSeed(11);
const x = randn([2, 3, 4]);
const xt = x.transpose(0, 2); // non-contiguous, shape [4, 3, 2]
const c31 = randn([3, 1]);
const s = randn([1, 3, 1, 4]);
const y = randn([2, 3, 4]);
const z = randn([2, 5, 4]);
const xi = randint(-3, 4, [2, 3, 4]);
const mask = x.gt(0);
const rowMask = randn([4]).gt(0); // broadcasts against x
const sel = tensor(BigInt64Array.of(2n, 0n, 2n));
const sel32 = tensor(Int32Array.of(3, 1));
const gidx = randint(0, 3, [2, 3, 4]); // gather/scatter indices along dim 1
const sidx = tensor(BigInt64Array.of(0n, 2n, 1n, 0n, 1n, 2n), { shape: [2, 3] }); // permutations: no collisions;
const dupIdx = tensor(BigInt64Array.of(0n, 1n, 0n, 1n, 1n, 1n, 0n, 0n), { shape: [2, 4] }); // collisions add up
const labels = tensor(BigInt64Array.of(0n, 4n, 2n, 2n, 1n, 3n), { shape: [2, 3] });
const five = randn([5, 3]);
const xi0 = xi.select(1, 0);

const op = (name: string, ...args: Arg[]): OpCase => ({ op: name, args });

suite.test("reshape and layout", {
  "reshape": op("reshape", x, 4, 6),
  "reshape array form": op("reshape", x, [4, 6]),
  "reshape -1": op("reshape", x, -1),
  "reshape inferred middle": op("reshape", x, 2, -1, 3),
  "reshape non-contiguous": op("reshape", xt, 4, 6),
  "reshape to 0-dim": op("reshape", x.narrow(2, 0, 1).select(0, 0).select(0, 0), []),
  "view": op("view", x, 6, 4),
  "view -1": op("view", x, -1),
  "view 4-D": op("view", x, [2, 3, 2, 2]),
  "permute": op("permute", x, 2, 0, 1),
  "permute array and negative dims": op("permute", x, [1, 0, -1]),
  "transpose": op("transpose", x, 0, 2),
  "transpose negative dims": op("transpose", x, -1, -2),
  "contiguous of a transpose": op("contiguous", xt),
  "expand": op("expand", c31, 3, 4),
  "expand new leading dim and -1": op("expand", c31, 2, -1, 5),
  "repeat": op("repeat", x, 2, 1, 3),
  "repeat adds dims": op("repeat", c31, [2, 1, 3]),
  "squeeze all": op("squeeze", s),
  "squeeze dim": op("squeeze", s, 2),
  "squeeze negative dim": op("squeeze", s, -4),
  "squeeze a dim that is not 1": op("squeeze", s, 1),
  "unsqueeze 0": op("unsqueeze", x, 0),
  "unsqueeze middle": op("unsqueeze", x, 2),
  "unsqueeze -1": op("unsqueeze", x, -1),
  "flatten": op("flatten", x),
  "flatten from 1": op("flatten", x, 1),
  "flatten 0..1": op("flatten", x, 0, 1),
  "flatten negative": op("flatten", x, -2, -1),
  "flatten non-contiguous": op("flatten", xt),
  "flip": op("flip", x, 0),
  "flip several": op("flip", x, 0, 2),
  "flip array form": op("flip", x, [-1]),
  "clone": op("clone", x),
  "clone keeps int64": op("clone", xi),
});

suite.test("slicing and indexing", {
  "narrow": op("narrow", x, 1, 1, 2),
  "narrow negative dim": op("narrow", x, -1, 0, 3),
  "slice": op("slice", x, 2, 1, 3),
  "slice with step": op("slice", x, 2, 0, 4, 2),
  "slice with step 3": op("slice", x, -1, 1, 4, 3),
  "slice negative start, end past the size": op("slice", x, 1, -2, 100),
  "select": op("select", x, 0, 1),
  "select negative": op("select", x, -1, -1),
  "indexSelect int64": op("indexSelect", x, 2, sel),
  "indexSelect int32": op("indexSelect", x, -1, sel32),
  "indexSelect dim 0": op("indexSelect", five, 0, sel),
  "gather": op("gather", x, 1, gidx),
  "gather smaller index": op("gather", x, 2, gidx.narrow(2, 0, 2)),
  "scatter": op("scatter", x, 1, sidx.unsqueeze(-1).expand(2, 3, 4), y),
  "scatter dim -1": op("scatter", five, -1, sidx, y.select(2, 0)),
  "scatterAdd": op("scatterAdd", x.select(1, 0), 0, dupIdx, y.select(1, 0)),
  "scatterAdd int64": op("scatterAdd", xi0, 0, dupIdx, xi0),
  "maskedSelect": op("maskedSelect", x, mask),
  "maskedSelect broadcast mask": op("maskedSelect", x, rowMask),
  "nonzero int": op("nonzero", xi),
  "nonzero bool 1-D": op("nonzero", rowMask),
  "nonzero float": op("nonzero", x.relu()),
  "oneHot": op("oneHot", labels, 5),
  "oneHot more classes": op("oneHot", labels.flatten(), 7),
});

suite.test("split chunk cat stack", {
  "split by size (last smaller)": op("split", five, 2),
  "split by size along dim 1": op("split", x, 2, 1),
  "split by size along -1": op("split", x, 3, -1),
  "split by sizes": op("split", five, [1, 3, 1]),
  "split by sizes along 2": op("split", x, [3, 1], 2),
  "chunk": op("chunk", five, 3),
  "chunk uneven": op("chunk", five, 4),
  "chunk along dim 1": op("chunk", x, 2, 1),
  "cat dim 0": op("cat", [x, y]),
  "cat dim 1 different sizes": op("cat", [x, z], 1),
  "cat dim -1": op("cat", [x, y, x], -1),
  "cat one tensor": op("cat", [x]),
  "stack dim 0": op("stack", [x, y]),
  "stack dim 1": op("stack", [x, y], 1),
  "stack dim -1": op("stack", [x, y, x], -1),
  "stack int64": op("stack", [xi, xi], 2),
});

// ---- storage sharing: an op's result is a view exactly when PyTorch's is. Each op runs on a
// clone b of x (the first tensor of the call); then b is written (visible in views only) and,
// unless `readOnly` (expanded views refuse writes), the result is negated in place (visible in b
// only when it is a view).

const SHARING: Record<string, [Call, boolean?]> = {
  "view": [call("view", x, 6, 4)],
  "reshape of contiguous (a view)": [call("reshape", x, -1)],
  "reshape of a transpose (a copy)": [call("reshape", call("transpose", x, 0, 2), -1)],
  "permute": [call("permute", x, 2, 0, 1)],
  "transpose": [call("transpose", x, 0, 1)],
  "contiguous of contiguous (itself)": [call("contiguous", x)],
  "contiguous of a transpose (a copy)": [call("contiguous", call("transpose", x, 0, 1))],
  "expand": [call("expand", call("narrow", x, 0, 0, 1), 3, 3, 4), true],
  "squeeze": [call("squeeze", call("narrow", x, 0, 0, 1), 0)],
  "unsqueeze": [call("unsqueeze", x, 1)],
  "flatten": [call("flatten", x, 1)],
  "narrow": [call("narrow", x, 2, 1, 2)],
  "slice with step": [call("slice", x, 2, 0, 4, 2)],
  "select": [call("select", x, 1, 2)],
  "split": [call("split", x, 1, 1)],
  "chunk": [call("chunk", x, 2, 2)],
  "detach": [call("detach", x)],
  "to the same dtype (itself)": [call("to", x, dt("float32"))],
  "to another dtype (a copy)": [call("to", x, dt("float64"))],
  "flip (a copy)": [call("flip", x, 0)],
  "repeat (a copy)": [call("repeat", x, 1, 1, 2)],
  "clone (a copy)": [call("clone", x)],
  "indexSelect (a copy)": [call("indexSelect", x, 2, tensor(BigInt64Array.of(1n, 3n)))],
  "maskedSelect (a copy)": [call("maskedSelect", x, call("gt", x, 0))],
};

const probes = (readOnly?: boolean): Probe[] =>
  readOnly ? ["base written after"] : ["base written after", "result written after"];

suite.test(
  "views share storage",
  Object.fromEntries(
    Object.entries(SHARING).flatMap(([name, [c, readOnly]]) =>
      probes(readOnly).map((probe) => [`${name}: ${probe}`, { ...c, probe }])
    ),
  ),
);

Deno.test("shape errors match PyTorch's", () =>
  tidy(() => {
    // PyTorch refuses these too: view needs compatible strides, sizes must multiply out.
    assert.throws(() => xt.view(-1));
    assert.throws(() => x.reshape(5, 5));
    assert.throws(() => x.view(-1, -1));
    assert.throws(() => x.expand(3, 3, 4));
    assert.throws(() => x.split([1, 2], 0));
    assert.throws(() => cat([x, z]));
    assert.throws(() => stack([x, z]));
    assert.throws(() => x.select(0, 2));
    assert.throws(() => x.narrow(2, 3, 2));
  }));

Deno.test("shape results by hand", () =>
  tidy(() => {
    // Independent of PyTorch: tiny cases worked out by hand.
    const t = tensor([[1, 2, 3], [4, 5, 6]]);
    assert.deepEqual([...t.transpose(0, 1).toArray()], [1, 4, 2, 5, 3, 6]);
    assert.deepEqual([...t.flip(1).toArray()], [3, 2, 1, 6, 5, 4]);
    assert.deepEqual([...t.slice(1, 0, 3, 2).toArray()], [1, 3, 4, 6]);
    assert.deepEqual(t.reshape(-1, 2).shape, [3, 2]);
    assert.deepEqual(t.unsqueeze(1).expand(2, 2, 3).shape, [2, 2, 3]);
    assert.deepEqual(t.split(2, 1).map((p) => p.shape), [[2, 2], [2, 1]]);
    assert.deepEqual([...t.gt(2.5).nonzero().toArray()], [0n, 2n, 1n, 0n, 1n, 1n, 1n, 2n]);
  }));
