// Shape, layout, joining, splitting and indexing ops, checked against Debian's PyTorch (the same
// libtorch build) on the same inputs, including which results share storage with their input.
import assert from "node:assert/strict";
import { cat, F, manualSeed, randint, randn, stack, Tensor, tensor, tidy } from "../mod.ts";
import { assertClose, type RefCase, type RefValue, type Tolerance, torchRef } from "./helpers/torch_ref.ts";

// ---- harness: every case of the file goes to PyTorch in one batch (one Python start)

type Out = Tensor | readonly Tensor[];
interface Case extends RefCase {
  mdm: () => Out;
}

// Shape ops move values without arithmetic, so every result must match bit for bit.
const EXACT: Tolerance = { rtol: 0, atol: 0 };

const groups = new Map<string, Record<string, Case>>();
let refs: Promise<Record<string, RefValue>> | undefined;

function allRefs(): Promise<Record<string, RefValue>> {
  refs ??= torchRef(
    Object.fromEntries([...groups].flatMap(([g, cases]) => Object.entries(cases).map(([n, c]) => [`${g}/${n}`, c]))),
  );
  return refs;
}

function compare(out: Out, ref: RefValue, what: string): void {
  if (out instanceof Tensor) return assertClose(out, ref, EXACT, what);
  if (!Array.isArray(ref) || ref.length !== out.length) {
    throw new Error(`${what}: ${out.length} tensors, PyTorch gave ${Array.isArray(ref) ? ref.length : "no list"}`);
  }
  out.forEach((t, i) => assertClose(t, ref[i], EXACT, `${what}[${i}]`));
}

/** Registers a group of cases as one test with a step per case. */
function opTest(group: string, cases: Record<string, Case>): void {
  groups.set(group, cases);
  Deno.test(group, async (t) => {
    const ref = await allRefs();
    for (const [name, c] of Object.entries(cases)) {
      await t.step(name, () => tidy(() => compare(c.mdm(), ref[`${group}/${name}`], name)));
    }
  });
}

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

const one = (code: string, mdm: () => Out, inputs: Record<string, Tensor> = { x }): Case => ({ code, inputs, mdm });

opTest("reshape and layout", {
  "reshape": one("x.reshape(4, 6)", () => x.reshape(4, 6)),
  "reshape array form": one("x.reshape(4, 6)", () => x.reshape([4, 6])),
  "reshape -1": one("x.reshape(-1)", () => x.reshape(-1)),
  "reshape inferred middle": one("x.reshape(2, -1, 3)", () => x.reshape(2, -1, 3)),
  "reshape non-contiguous": one("x.transpose(0, 2).reshape(4, 6)", () => xt.reshape(4, 6)),
  "reshape to 0-dim": one("x[0, 0, :1].reshape([])", () => x.narrow(2, 0, 1).select(0, 0).select(0, 0).reshape([])),
  "view": one("x.view(6, 4)", () => x.view(6, 4)),
  "view -1": one("x.view(-1)", () => x.view(-1)),
  "view 4-D": one("x.view(2, 3, 2, 2)", () => x.view([2, 3, 2, 2])),
  "permute": one("x.permute(2, 0, 1)", () => x.permute(2, 0, 1)),
  "permute array and negative dims": one("x.permute(1, 0, -1)", () => x.permute([1, 0, -1])),
  "transpose": one("x.transpose(0, 2)", () => x.transpose(0, 2)),
  "transpose negative dims": one("x.transpose(-1, -2)", () => x.transpose(-1, -2)),
  "contiguous of a transpose": one("x.transpose(0, 2).contiguous()", () => xt.contiguous()),
  "expand": one("x.expand(3, 4)", () => c31.expand(3, 4), { x: c31 }),
  "expand new leading dim and -1": one("x.expand(2, -1, 5)", () => c31.expand(2, -1, 5), { x: c31 }),
  "repeat": one("x.repeat(2, 1, 3)", () => x.repeat(2, 1, 3)),
  "repeat adds dims": one("x.repeat(2, 1, 3)", () => c31.repeat([2, 1, 3]), { x: c31 }),
  "squeeze all": one("x.squeeze()", () => s.squeeze(), { x: s }),
  "squeeze dim": one("x.squeeze(2)", () => s.squeeze(2), { x: s }),
  "squeeze negative dim": one("x.squeeze(-4)", () => s.squeeze(-4), { x: s }),
  "squeeze a dim that is not 1": one("x.squeeze(1)", () => s.squeeze(1), { x: s }),
  "unsqueeze 0": one("x.unsqueeze(0)", () => x.unsqueeze(0)),
  "unsqueeze middle": one("x.unsqueeze(2)", () => x.unsqueeze(2)),
  "unsqueeze -1": one("x.unsqueeze(-1)", () => x.unsqueeze(-1)),
  "flatten": one("x.flatten()", () => x.flatten()),
  "flatten from 1": one("x.flatten(1)", () => x.flatten(1)),
  "flatten 0..1": one("x.flatten(0, 1)", () => x.flatten(0, 1)),
  "flatten negative": one("x.flatten(-2, -1)", () => x.flatten(-2, -1)),
  "flatten non-contiguous": one("x.transpose(0, 2).flatten()", () => xt.flatten()),
  "flip": one("x.flip(0)", () => x.flip(0)),
  "flip several": one("x.flip(0, 2)", () => x.flip(0, 2)),
  "flip array form": one("x.flip(-1)", () => x.flip([-1])),
  "clone": one("x.clone()", () => x.clone()),
  "clone keeps int64": one("x.clone()", () => xi.clone(), { x: xi }),
});

opTest("slicing and indexing", {
  "narrow": one("x.narrow(1, 1, 2)", () => x.narrow(1, 1, 2)),
  "narrow negative dim": one("x.narrow(-1, 0, 3)", () => x.narrow(-1, 0, 3)),
  "slice": one("x[:, :, 1:3]", () => x.slice(2, 1, 3)),
  "slice with step": one("x[:, :, 0:4:2]", () => x.slice(2, 0, 4, 2)),
  "slice with step 3": one("x[:, :, 1::3]", () => x.slice(-1, 1, 4, 3)),
  "slice negative start, end past the size": one("x[:, -2:100]", () => x.slice(1, -2, 100)),
  "select": one("x.select(0, 1)", () => x.select(0, 1)),
  "select negative": one("x.select(-1, -1)", () => x.select(-1, -1)),
  "indexSelect int64": one("x.index_select(2, i)", () => x.indexSelect(2, sel), { x, i: sel }),
  "indexSelect int32": one("x.index_select(-1, i)", () => x.indexSelect(-1, sel32), { x, i: sel32 }),
  "indexSelect dim 0": one("x.index_select(0, i)", () => five.indexSelect(0, sel), { x: five, i: sel }),
  "gather": one("x.gather(1, i)", () => x.gather(1, gidx), { x, i: gidx }),
  "gather smaller index": one(
    "x.gather(2, i)",
    () => x.gather(2, gidx.narrow(2, 0, 2)),
    { x, i: gidx.narrow(2, 0, 2) },
  ),
  "scatter": one("x.scatter(1, i, y)", () => x.scatter(1, sidx.unsqueeze(-1).expand(2, 3, 4), y), {
    x,
    i: sidx.unsqueeze(-1).expand(2, 3, 4),
    y,
  }),
  "scatter dim -1": one("x.scatter(-1, i, y)", () => five.scatter(-1, sidx, y.select(2, 0)), {
    x: five,
    i: sidx,
    y: y.select(2, 0),
  }),
  "scatterAdd": one("x.scatter_add(0, i, y)", () => x.select(1, 0).scatterAdd(0, dupIdx, y.select(1, 0)), {
    x: x.select(1, 0),
    i: dupIdx,
    y: y.select(1, 0),
  }),
  "scatterAdd int64": one("x.scatter_add(0, i, x)", () => xi.select(1, 0).scatterAdd(0, dupIdx, xi.select(1, 0)), {
    x: xi.select(1, 0),
    i: dupIdx,
  }),
  "maskedSelect": one("x.masked_select(m)", () => x.maskedSelect(mask), { x, m: mask }),
  "maskedSelect broadcast mask": one("x.masked_select(m)", () => x.maskedSelect(rowMask), { x, m: rowMask }),
  "nonzero int": one("x.nonzero()", () => xi.nonzero(), { x: xi }),
  "nonzero bool 1-D": one("x.nonzero()", () => rowMask.nonzero(), { x: rowMask }),
  "nonzero float": one("x.nonzero()", () => x.relu().nonzero(), { x: x.relu() }),
  "oneHot": one("F.one_hot(x, 5)", () => labels.oneHot(5), { x: labels }),
  "oneHot more classes": one("F.one_hot(x, 7)", () => labels.flatten().oneHot(7), { x: labels.flatten() }),
});

opTest("split chunk cat stack", {
  "split by size (last smaller)": one("torch.split(x, 2)", () => five.split(2), { x: five }),
  "split by size along dim 1": one("torch.split(x, 2, 1)", () => x.split(2, 1)),
  "split by size along -1": one("torch.split(x, 3, -1)", () => x.split(3, -1)),
  "split by sizes": one("torch.split(x, [1, 3, 1])", () => five.split([1, 3, 1]), { x: five }),
  "split by sizes along 2": one("torch.split(x, [3, 1], 2)", () => x.split([3, 1], 2)),
  "chunk": one("torch.chunk(x, 3)", () => five.chunk(3), { x: five }),
  "chunk uneven": one("torch.chunk(x, 4)", () => five.chunk(4), { x: five }),
  "chunk along dim 1": one("torch.chunk(x, 2, 1)", () => x.chunk(2, 1)),
  "cat dim 0": one("torch.cat([x, y])", () => cat([x, y]), { x, y }),
  "cat dim 1 different sizes": one("torch.cat([x, z], 1)", () => F.cat([x, z], 1), { x, z }),
  "cat dim -1": one("torch.cat([x, y, x], -1)", () => cat([x, y, x], -1), { x, y }),
  "cat one tensor": one("torch.cat([x])", () => cat([x])),
  "stack dim 0": one("torch.stack([x, y])", () => stack([x, y]), { x, y }),
  "stack dim 1": one("torch.stack([x, y], 1)", () => F.stack([x, y], 1), { x, y }),
  "stack dim -1": one("torch.stack([x, y, x], -1)", () => stack([x, y, x], -1), { x, y }),
  "stack int64": one("torch.stack([x, x], 2)", () => stack([xi, xi], 2), { x: xi }),
});

// ---- storage sharing: an op's result is a view exactly when PyTorch's is

type ShapeOp = (b: Tensor) => Out;

/**
 * Two cases per op: the base changes after the op (visible in views only) and, unless `readOnly`
 * (expanded views refuse writes), the result is negated in place (visible in the base only when
 * it is a view).
 */
function sharing(pyOp: string, op: ShapeOp, readOnly = false): Record<string, Case> {
  const cases: Record<string, Case> = {
    "base written after": {
      code: `b = x.clone()\nv = ${pyOp}\nb.add_(100)\nresult = v`,
      inputs: { x },
      mdm: () => {
        const b = x.clone();
        const v = op(b);
        b.add_(100);
        return v;
      },
    },
  };
  if (!readOnly) {
    cases["result written after"] = {
      code: `b = x.clone()\nv = ${pyOp}\n(v[1] if isinstance(v, (list, tuple)) else v).mul_(-1)\nresult = b`,
      inputs: { x },
      mdm: () => {
        const b = x.clone();
        const v = op(b);
        (v instanceof Tensor ? v : v[1]).mul_(-1);
        return b;
      },
    };
  }
  return cases;
}

const SHARING: Record<string, [string, ShapeOp, boolean?]> = {
  "view": ["b.view(6, 4)", (b) => b.view(6, 4)],
  "reshape of contiguous (a view)": ["b.reshape(-1)", (b) => b.reshape(-1)],
  "reshape of a transpose (a copy)": ["b.transpose(0, 2).reshape(-1)", (b) => b.transpose(0, 2).reshape(-1)],
  "permute": ["b.permute(2, 0, 1)", (b) => b.permute(2, 0, 1)],
  "transpose": ["b.transpose(0, 1)", (b) => b.transpose(0, 1)],
  "contiguous of contiguous (itself)": ["b.contiguous()", (b) => b.contiguous()],
  "contiguous of a transpose (a copy)": ["b.transpose(0, 1).contiguous()", (b) => b.transpose(0, 1).contiguous()],
  "expand": ["b[:1].expand(3, 3, 4)", (b) => b.narrow(0, 0, 1).expand(3, 3, 4), true],
  "squeeze": ["b[:1].squeeze(0)", (b) => b.narrow(0, 0, 1).squeeze(0)],
  "unsqueeze": ["b.unsqueeze(1)", (b) => b.unsqueeze(1)],
  "flatten": ["b.flatten(1)", (b) => b.flatten(1)],
  "narrow": ["b.narrow(2, 1, 2)", (b) => b.narrow(2, 1, 2)],
  "slice with step": ["b[:, :, ::2]", (b) => b.slice(2, 0, 4, 2)],
  "select": ["b.select(1, 2)", (b) => b.select(1, 2)],
  "split": ["torch.split(b, 1, 1)", (b) => b.split(1, 1)],
  "chunk": ["torch.chunk(b, 2, 2)", (b) => b.chunk(2, 2)],
  "detach": ["b.detach()", (b) => b.detach()],
  "to the same dtype (itself)": ["b.to(torch.float32)", (b) => b.to("float32")],
  "to another dtype (a copy)": ["b.to(torch.float64)", (b) => b.to("float64")],
  "flip (a copy)": ["b.flip(0)", (b) => b.flip(0)],
  "repeat (a copy)": ["b.repeat(1, 1, 2)", (b) => b.repeat(1, 1, 2)],
  "clone (a copy)": ["b.clone()", (b) => b.clone()],
  "indexSelect (a copy)": [
    "b.index_select(2, torch.tensor([1, 3]))",
    (b) => b.indexSelect(2, tensor(BigInt64Array.of(1n, 3n))),
  ],
  "maskedSelect (a copy)": ["b.masked_select(b > 0)", (b) => b.maskedSelect(b.gt(0))],
};

opTest(
  "views share storage",
  Object.fromEntries(
    Object.entries(SHARING).flatMap(([name, [pyOp, op, readOnly]]) =>
      Object.entries(sharing(pyOp, op, readOnly)).map(([k, c]) => [
        `${name}: ${k}`,
        c,
      ])
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
