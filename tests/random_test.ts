// Random streams: with the same seed, mdm draws exactly what PyTorch draws (same libtorch build,
// same generator), for the global generator and for independent ones, and saved states replay.
import assert from "node:assert/strict";
import {
  bernoulli,
  full,
  Generator,
  getRngState,
  manualSeed,
  rand,
  randint,
  randn,
  randperm,
  setRngState,
  Tensor,
  tidy,
} from "../mod.ts";
import { assertClose, type RefCase, refTensor, type RefValue, type Tolerance, torchRef } from "./helpers/torch_ref.ts";

// Same generator, same kernels: draws must match bit for bit.
const EXACT: Tolerance = { rtol: 0, atol: 0 };

type Out = Tensor | readonly Tensor[];

function compare(out: Out, ref: RefValue | undefined, what: string): void {
  if (out instanceof Tensor) return assertClose(out, ref, EXACT, what);
  if (!Array.isArray(ref) || ref.length !== out.length) throw new Error(`${what}: PyTorch gave ${JSON.stringify(ref)}`);
  out.forEach((t, i) => assertClose(t, ref[i], EXACT, `${what}[${i}]`));
}

// Every PyTorch case of the file, evaluated in one batch (one Python start) by the first test.
const cases: Record<string, RefCase> = {};
let refs: Promise<Record<string, RefValue>> | undefined;
const allRefs = () => (refs ??= torchRef(cases));

/** A draw: PyTorch code run after seeding (torch.manual_seed and `g`), and mdm's counterpart. */
interface Draw {
  seed: number;
  code: string;
  draw: (g?: Generator) => Out;
  inputs?: Record<string, Tensor>;
}

/** Registers draws as one test; `seeding` sets up mdm's side the way the case's seed does PyTorch's. */
function drawTest(name: string, draws: Record<string, Draw>, seeding: (seed: number) => Generator | undefined): void {
  for (const [k, d] of Object.entries(draws)) cases[`${name}/${k}`] = { code: d.code, seed: d.seed, inputs: d.inputs };
  Deno.test(name, async (t) => {
    const ref = await allRefs();
    for (const [k, d] of Object.entries(draws)) {
      await t.step(k, () =>
        tidy(() => {
          const g = seeding(d.seed);
          try {
            compare(d.draw(g), ref[`${name}/${k}`], k);
          } finally {
            g?.dispose();
          }
        }));
    }
  });
}

manualSeed(99);
const probs = rand([4, 8]);
probs.narrow(0, 0, 1).fill_(0); // rows that must come out all 0 and all 1
probs.narrow(0, 1, 1).fill_(1);

// ---- the global generator

drawTest("global generator matches torch.manual_seed", {
  "rand": { seed: 0, code: "torch.rand(3, 4)", draw: () => rand([3, 4]) },
  "rand, vectorised length": { seed: 1, code: "torch.rand(100)", draw: () => rand([100]) },
  "rand float64": { seed: 2, code: "torch.rand(5, dtype=torch.float64)", draw: () => rand([5], { dtype: "float64" }) },
  "rand float16": { seed: 2, code: "torch.rand(6, dtype=torch.float16)", draw: () => rand([6], { dtype: "float16" }) },
  "rand bfloat16": {
    seed: 2,
    code: "torch.rand(6, dtype=torch.bfloat16)",
    draw: () => rand([6], { dtype: "bfloat16" }),
  },
  "randn, short (scalar path)": { seed: 3, code: "torch.randn(5)", draw: () => randn([5]) },
  "randn, 16 or more (vectorised path)": { seed: 3, code: "torch.randn(3, 7)", draw: () => randn([3, 7]) },
  "randn float64": {
    seed: 4,
    code: "torch.randn(20, dtype=torch.float64)",
    draw: () => randn([20], { dtype: "float64" }),
  },
  "randn float16": {
    seed: 4,
    code: "torch.randn(20, dtype=torch.float16)",
    draw: () => randn([20], { dtype: "float16" }),
  },
  "randint": { seed: 5, code: "torch.randint(0, 10, (20,))", draw: () => randint(0, 10, [20]) },
  "randint negative low, int32": {
    seed: 5,
    code: "torch.randint(-5, 5, (3, 3), dtype=torch.int32)",
    draw: () => randint(-5, 5, [3, 3], { dtype: "int32" }),
  },
  "randint wide range": { seed: 6, code: "torch.randint(0, 2**40, (4,))", draw: () => randint(0, 2 ** 40, [4]) },
  "randperm": { seed: 7, code: "torch.randperm(10)", draw: () => randperm(10) },
  "randperm long": { seed: 7, code: "torch.randperm(1000)", draw: () => randperm(1000) },
  "bernoulli": { seed: 8, code: "torch.bernoulli(p)", inputs: { p: probs }, draw: () => bernoulli(probs) },
  "a sequence of draws": {
    seed: 9,
    code: "[torch.rand(3), torch.randn(4), torch.randint(0, 5, (6,)), torch.randperm(7), torch.randn(17)]",
    draw: () => [rand([3]), randn([4]), randint(0, 5, [6]), randperm(7), randn([17])],
  },
  "a seed above 2^32": { seed: 2 ** 40 + 7, code: "torch.rand(4)", draw: () => rand([4]) },
}, (seed) => {
  manualSeed(seed);
  return undefined;
});

// ---- independent generators

drawTest("Generator matches torch.Generator().manual_seed", {
  "rand": { seed: 0, code: "torch.rand(3, 4, generator=g)", draw: (g) => rand([3, 4], { generator: g }) },
  "randn": { seed: 1, code: "torch.randn(40, generator=g)", draw: (g) => randn([40], { generator: g }) },
  "randn float64": {
    seed: 1,
    code: "torch.randn(7, generator=g, dtype=torch.float64)",
    draw: (g) => randn([7], { generator: g, dtype: "float64" }),
  },
  "randint": {
    seed: 2,
    code: "torch.randint(3, 9, (2, 5), generator=g)",
    draw: (g) => randint(3, 9, [2, 5], { generator: g }),
  },
  "randperm": { seed: 3, code: "torch.randperm(50, generator=g)", draw: (g) => randperm(50, { generator: g }) },
  "bernoulli": {
    seed: 4,
    code: "torch.bernoulli(p, generator=g)",
    inputs: { p: probs },
    draw: (g) => bernoulli(probs, { generator: g }),
  },
  "a sequence of draws": {
    seed: 5,
    code: "[torch.rand(5, generator=g), torch.randn(3, generator=g), torch.randint(0, 100, (4,), generator=g), " +
      "torch.randperm(6, generator=g), torch.bernoulli(p, generator=g)]",
    inputs: { p: probs },
    draw: (g) => [
      rand([5], { generator: g }),
      randn([3], { generator: g }),
      randint(0, 100, [4], { generator: g }),
      randperm(6, { generator: g }),
      bernoulli(probs, { generator: g }),
    ],
  },
  "a seed above 2^32": {
    seed: 2 ** 40 + 7,
    code: "torch.rand(4, generator=g)",
    draw: (g) => rand([4], { generator: g }),
  },
  // The global stream is untouched by a generator's draws (the case also seeds it).
  "global draws ignore a generator's": {
    seed: 6,
    code: "torch.rand(10, generator=g)\ntorch.randn(10, generator=g)\nresult = torch.rand(3)",
    draw: (g) => {
      rand([10], { generator: g });
      randn([10], { generator: g });
      return rand([3]);
    },
  },
}, (seed) => {
  manualSeed(seed);
  return new Generator(seed);
});

// ---- generator state

cases["state/fresh generator"] = { seed: 12, code: "g.get_state()" };
cases["state/after draws"] = { seed: 12, code: "torch.rand(10, generator=g)\nresult = g.get_state()" };
cases["state/global after manual_seed"] = { seed: 13, code: "torch.get_rng_state()" };
cases["state/global after draws"] = { seed: 13, code: "torch.randn(33)\nresult = torch.get_rng_state()" };
cases["state/from PyTorch"] = {
  seed: 14,
  code: "torch.rand(3, generator=g)\nst = g.get_state()\nresult = [st, torch.randn(5, generator=g)]",
};
cases["state/global from PyTorch"] = {
  seed: 15,
  code: "torch.rand(3)\nst = torch.get_rng_state()\nresult = [st, torch.randn(5), torch.randperm(8)]",
};
cases["state/replay"] = { seed: 16, code: "torch.rand(5)\nresult = [torch.rand(7), torch.rand(7)]" };

/** The bytes of a state tensor PyTorch returned. */
function stateBytes(v: RefValue | undefined): Uint8Array {
  const s = refTensor(v, "state");
  assert.equal(s.dtype, "uint8");
  return new Uint8Array(s.data as Uint8Array);
}

Deno.test("generator state", async (t) => {
  const ref = await allRefs();
  await t.step("a fresh generator's state equals PyTorch's for the seed", () => {
    using g = new Generator(12);
    assert.deepEqual(g.state, stateBytes(ref["state/fresh generator"]));
  });
  await t.step("the state after draws equals PyTorch's", () =>
    tidy(() => {
      using g = new Generator(12);
      rand([10], { generator: g });
      assert.deepEqual(g.state, stateBytes(ref["state/after draws"]));
    }));
  await t.step("restoring a saved state replays the stream", () =>
    tidy(() => {
      using g = new Generator(3);
      randn([9], { generator: g });
      const saved = g.state;
      const first = [rand([6], { generator: g }), randn([20], { generator: g }), randperm(12, { generator: g })];
      rand([100], { generator: g });
      g.state = saved;
      const again = [rand([6], { generator: g }), randn([20], { generator: g }), randperm(12, { generator: g })];
      first.forEach((x, i) => assert.deepEqual(again[i].toArray(), x.toArray()));
    }));
  await t.step("a state moves to another generator", () =>
    tidy(() => {
      using g = new Generator(3);
      using h = new Generator(4);
      h.state = g.state;
      assert.deepEqual(rand([8], { generator: h }).toArray(), rand([8], { generator: g }).toArray());
    }));
  await t.step("a state PyTorch saved continues PyTorch's stream", () =>
    tidy(() => {
      const [st, next] = ref["state/from PyTorch"] as RefValue[];
      using g = new Generator(0);
      g.state = stateBytes(st);
      compare(randn([5], { generator: g }), next, "draw after the restored state");
    }));
});

Deno.test("global RNG state", async (t) => {
  const ref = await allRefs();
  await t.step("getRngState after manualSeed equals torch.get_rng_state()", () => {
    manualSeed(13);
    assert.deepEqual(getRngState(), stateBytes(ref["state/global after manual_seed"]));
  });
  await t.step("getRngState after draws equals PyTorch's", () =>
    tidy(() => {
      manualSeed(13);
      randn([33]);
      assert.deepEqual(getRngState(), stateBytes(ref["state/global after draws"]));
    }));
  await t.step("setRngState replays the stream", () =>
    tidy(() => {
      manualSeed(16);
      rand([5]);
      const saved = getRngState();
      const first = rand([7]);
      const second = rand([7]);
      compare([first, second], ref["state/replay"], "draws after the save");
      setRngState(saved);
      assert.deepEqual(rand([7]).toArray(), first.toArray());
      assert.deepEqual(rand([7]).toArray(), second.toArray());
    }));
  await t.step("setRngState with PyTorch's state continues PyTorch's stream", () =>
    tidy(() => {
      const [st, ...next] = ref["state/global from PyTorch"] as RefValue[];
      manualSeed(0);
      setRngState(stateBytes(st));
      compare([randn([5]), randperm(8)], next, "draws after the restored state");
    }));
});

Deno.test("seeds", async (t) => {
  await t.step("the same seed gives the same draws", () =>
    tidy(() => {
      manualSeed(21);
      const a = [rand([8]), randn([8]), randint(0, 1000, [8])];
      manualSeed(21);
      const b = [rand([8]), randn([8]), randint(0, 1000, [8])];
      a.forEach((x, i) => assert.deepEqual(b[i].toArray(), x.toArray()));
    }));
  await t.step("different seeds give different draws", () =>
    tidy(() => {
      manualSeed(1);
      const a = rand([8]).toArray();
      manualSeed(2);
      const b = rand([8]).toArray();
      assert.ok(a.some((v, i) => v !== b[i]));
      using g1 = new Generator(1);
      using g2 = new Generator(2);
      const c = randn([8], { generator: g1 }).toArray();
      const d = randn([8], { generator: g2 }).toArray();
      assert.ok(c.some((v, i) => v !== d[i]));
    }));
  await t.step("a bigint seed is the same as the number", () =>
    tidy(() => {
      manualSeed(123456789n);
      const a = rand([4]).toArray();
      manualSeed(123456789);
      assert.deepEqual(rand([4]).toArray(), a);
    }));
  await t.step("seeds outside [0, 2^64) are refused", () => {
    assert.throws(() => manualSeed(-1), RangeError);
    assert.throws(() => new Generator(2n ** 64n), RangeError);
  });
});

Deno.test("bernoulli by hand", () =>
  tidy(() => {
    // Probabilities 0 and 1 are certain; other draws are 0 or 1 in p's dtype.
    using g = new Generator(5);
    const draws = bernoulli(probs, { generator: g });
    assert.equal(draws.dtype, "float32");
    const v = draws.toArray();
    assert.ok(v.subarray(0, 8).every((x) => x === 0));
    assert.ok(v.subarray(8, 16).every((x) => x === 1));
    assert.ok(v.every((x) => x === 0 || x === 1));
    const half = bernoulli(full([4000], 0.5, { dtype: "float64" }), { generator: g });
    assert.equal(half.dtype, "float64");
    // 4000 fair draws: the mean is within 5 standard deviations (0.04) of 0.5.
    assert.ok(Math.abs(half.mean().item() - 0.5) < 0.04);
  }));
