// libtorch's optimizers against torch.optim on the same linear-regression problem, learning-rate
// changes, gradient zeroing, and exact resume from exported state.
import assert from "node:assert/strict";
import {
  Adam,
  type AdamOptions,
  AdamW,
  DisposedError,
  F,
  liveTensors,
  manualSeed,
  noGrad,
  type Optimizer,
  randn,
  SGD,
  type SGDOptions,
  type Tensor,
  tidy,
  TorchError,
  zeros,
} from "../mod.ts";
import { assertClose, torchRef } from "./helpers/torch_ref.ts";

type Param = Tensor<"float32">;

// The problem: least squares of X·Wᵀ + b against Y, from fixed starting values.
manualSeed(7);
const X = randn([16, 5]);
const Y = randn([16, 3]);
const W0 = tidy(() => randn([3, 5]).mul(0.5));
const B0 = tidy(() => randn([3]).mul(0.5));

/** Fresh trainable copies of the starting values. */
function freshParams(): [Param, Param] {
  const w = zeros([3, 5]), b = zeros([3]);
  noGrad(() => {
    w.copy_(W0);
    b.copy_(B0);
  });
  return [w.requiresGrad_(), b.requiresGrad_()];
}

/** One training step: forward, backward, update, clear the gradients. */
function step(opt: Optimizer, [w, b]: Param[]): void {
  tidy(() => {
    F.mseLoss(F.linear(X, w, b), Y).backward();
    opt.step();
    opt.zeroGrad();
  });
}

/** Runs `steps` steps; `lrAt` maps a step index to a new learning rate set before that step. */
function train(opt: Optimizer, params: Param[], steps: number, lrAt: Record<number, number> = {}): void {
  for (let i = 0; i < steps; i++) {
    if (lrAt[i] !== undefined) opt.lr = lrAt[i];
    step(opt, params);
  }
}

/** The same run in PyTorch: `make` builds the optimizer from the list `params`. */
function pythonRun(make: string, steps: number, lrAt: Record<number, number> = {}): string {
  return [
    "w = W0.clone().requires_grad_(True)",
    "b = B0.clone().requires_grad_(True)",
    "params = [w, b]",
    `opt = ${make}`,
    `lr_at = ${JSON.stringify(lrAt).replace(/"(\d+)"/g, "$1")}`,
    `for i in range(${steps}):`,
    "    if i in lr_at:",
    "        for group in opt.param_groups:",
    "            group['lr'] = lr_at[i]",
    "    F.mse_loss(F.linear(X, w, b), Y).backward()",
    "    opt.step()",
    "    opt.zero_grad()",
    "result = [w, b]",
  ].join("\n");
}

interface Case {
  make: (params: Param[]) => Optimizer;
  python: string;
  steps: number;
  lrAt?: Record<number, number>;
}

const adam = (hyper: AdamOptions) => (p: Param[]) => new Adam(p, hyper);
const adamW = (hyper: AdamOptions) => (p: Param[]) => new AdamW(p, hyper);
const sgd = (hyper: SGDOptions) => (p: Param[]) => new SGD(p, hyper);

const CASES: Record<string, Case> = {
  adam: { make: adam({ lr: 0.01 }), python: "torch.optim.Adam(params, lr=0.01)", steps: 15 },
  adamDecayAmsgrad: {
    make: adam({ lr: 0.02, betas: [0.8, 0.99], eps: 1e-6, weightDecay: 0.1, amsgrad: true }),
    python: "torch.optim.Adam(params, lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, amsgrad=True)",
    steps: 15,
  },
  // No weight decay given on either side: the defaults (0.01) must agree.
  adamW: { make: adamW({ lr: 0.01 }), python: "torch.optim.AdamW(params, lr=0.01)", steps: 15 },
  adamWDecayAmsgrad: {
    make: adamW({ lr: 0.02, weightDecay: 0.1, amsgrad: true }),
    python: "torch.optim.AdamW(params, lr=0.02, weight_decay=0.1, amsgrad=True)",
    steps: 15,
  },
  sgd: { make: sgd({ lr: 0.05 }), python: "torch.optim.SGD(params, lr=0.05)", steps: 15 },
  sgdMomentum: {
    make: sgd({ lr: 0.05, momentum: 0.9, dampening: 0.1 }),
    python: "torch.optim.SGD(params, lr=0.05, momentum=0.9, dampening=0.1)",
    steps: 15,
  },
  sgdNesterovDecay: {
    make: sgd({ lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 0.01 }),
    python: "torch.optim.SGD(params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)",
    steps: 15,
  },
  adamLrChange: {
    make: adam({ lr: 0.01 }),
    python: "torch.optim.Adam(params, lr=0.01)",
    steps: 12,
    lrAt: { 4: 0.05, 8: 0.002 },
  },
  sgdLrChange: {
    make: sgd({ lr: 0.05, momentum: 0.9 }),
    python: "torch.optim.SGD(params, lr=0.05, momentum=0.9)",
    steps: 12,
    lrAt: { 5: 0.2 },
  },
};

const TOL = { rtol: 1e-5, atol: 1e-6 };

Deno.test("optimizers agree with torch.optim", async (t) => {
  const ref = await torchRef(
    Object.fromEntries(
      Object.entries(CASES).map(([name, c]) => [
        name,
        { code: pythonRun(c.python, c.steps, c.lrAt), inputs: { W0, B0, X, Y } },
      ]),
    ),
  );
  for (const [name, c] of Object.entries(CASES)) {
    await t.step(name, () => {
      const params = freshParams();
      const opt = c.make(params);
      train(opt, params, c.steps, c.lrAt);
      const [expectedW, expectedB] = ref[name] as unknown[];
      assertClose(params[0], expectedW as never, TOL, `${name}: weight`);
      assertClose(params[1], expectedB as never, TOL, `${name}: bias`);
      opt.dispose();
      params.forEach((p) => p.dispose());
    });
  }
});

Deno.test("the lr setter changes the step size", async (t) => {
  await t.step("getter and setter", () => {
    const params = freshParams();
    const opt = new SGD(params, { lr: 0.05 });
    assert.equal(opt.lr, 0.05);
    opt.lr = 0.125;
    assert.equal(opt.lr, 0.125);
    assert.throws(() => (opt.lr = -1), RangeError);
    assert.throws(() => (opt.lr = NaN), RangeError);
    assert.equal(opt.lr, 0.125);
    opt.dispose();
    params.forEach((p) => p.dispose());
  });

  await t.step("one SGD step moves by exactly lr times the gradient", () => {
    const params = freshParams();
    const opt = new SGD(params, { lr: 1 });
    opt.lr = 0.25;
    const [w] = params;
    const before = Float32Array.from(w.toArray());
    tidy(() => F.mseLoss(F.linear(X, w, params[1]), Y).backward());
    const grad = w.grad!;
    const g = grad.toArray();
    grad.dispose();
    opt.step();
    const after = w.toArray();
    // p - lr·g with lr a power of two: the float32 result is the exactly rounded value.
    for (let i = 0; i < after.length; i++) assert.equal(after[i], Math.fround(before[i] - 0.25 * g[i]));
    opt.dispose();
    params.forEach((p) => p.dispose());
  });

  await t.step("a mid-run change gives a different trajectory than none", () => {
    const changed = freshParams(), unchanged = freshParams();
    const a = new Adam(changed, { lr: 0.01 }), b = new Adam(unchanged, { lr: 0.01 });
    train(a, changed, 12, { 4: 0.05 });
    train(b, unchanged, 12);
    const u = unchanged[0].toArray();
    const gap = Math.max(...changed[0].toArray().map((v, i) => Math.abs(v - u[i])));
    // Eight steps at five times the rate move Adam's parameters by up to 8 · 0.04 more.
    assert.ok(gap > 0.01, `the lr change made no visible difference (max gap ${gap})`);
    [a, b].forEach((o) => o.dispose());
    [...changed, ...unchanged].forEach((p) => p.dispose());
  });
});

Deno.test("zeroGrad", async (t) => {
  const gradOf = (p: Param) => {
    const g = p.grad;
    if (g === null) return null;
    const v = Array.from(g.toArray());
    g.dispose();
    return v;
  };
  const backward = ([w, b]: Param[]) => tidy(() => F.mseLoss(F.linear(X, w, b), Y).backward());

  await t.step("zeroing keeps zero-filled gradients, so the next backward is not accumulated", () => {
    const params = freshParams();
    const opt = new SGD(params, { lr: 0.1 });
    backward(params);
    const once = params.map(gradOf);
    backward(params);
    const twice = params.map(gradOf);
    // Without zeroing, gradients accumulate: exactly twice the single-pass values.
    assert.deepEqual(twice, once.map((g) => g!.map((v) => Math.fround(2 * v))));

    opt.zeroGrad(false);
    assert.deepEqual(params.map(gradOf), params.map((p) => new Array(p.numel).fill(0)));
    backward(params);
    assert.deepEqual(params.map(gradOf), once);
    opt.dispose();
    params.forEach((p) => p.dispose());
  });

  await t.step("setting to none drops the gradients (the default)", () => {
    const params = freshParams();
    const opt = new Adam(params);
    opt.zeroGrad();
    assert.deepEqual(params.map(gradOf), [null, null], "nothing to drop before any backward");
    backward(params);
    assert.ok(params.every((p) => gradOf(p) !== null));
    opt.zeroGrad(true);
    assert.deepEqual(params.map(gradOf), [null, null]);
    backward(params);
    opt.zeroGrad();
    assert.deepEqual(params.map(gradOf), [null, null]);
    // A step with no gradients leaves the parameters alone, as in PyTorch.
    const before = params.map((p) => Array.from(p.toArray()));
    opt.step();
    assert.deepEqual(params.map((p) => Array.from(p.toArray())), before);
    opt.dispose();
    params.forEach((p) => p.dispose());
  });
});

Deno.test("stateBytes and loadStateBytes resume bit for bit", async (t) => {
  const kinds: Record<string, (p: Param[], lr: number) => Optimizer> = {
    Adam: (p, lr) => new Adam(p, { lr }),
    AdamW: (p, lr) => new AdamW(p, { lr, weightDecay: 0.05, amsgrad: true }),
    SGD: (p, lr) => new SGD(p, { lr, momentum: 0.9, nesterov: true, weightDecay: 0.01 }),
  };
  for (const [kind, make] of Object.entries(kinds)) {
    await t.step(kind, () => {
      const start = liveTensors();
      const straight = freshParams();
      const optStraight = make(straight, 0.02);
      // The learning rate changes before the export, so resuming must restore it from the state.
      train(optStraight, straight, 20, { 3: 0.03 });

      const first = freshParams();
      const optFirst = make(first, 0.02);
      train(optFirst, first, 10, { 3: 0.03 });
      const state = optFirst.stateBytes();

      const resumed = freshParams();
      noGrad(() => resumed.forEach((p, i) => p.copy_(first[i])));
      const optResumed = make(resumed, 0.5);
      optResumed.loadStateBytes(state);
      assert.equal(optResumed.lr, 0.03);
      train(optResumed, resumed, 10);

      for (let i = 0; i < resumed.length; i++) {
        assert.deepEqual(resumed[i].toArray(), straight[i].toArray(), `${kind}: parameter ${i}`);
      }
      for (const o of [optStraight, optFirst, optResumed]) o.dispose();
      for (const p of [...straight, ...first, ...resumed]) p.dispose();
      assert.equal(liveTensors(), start);
    });
  }
});

Deno.test("a bad state is rejected with a clear error and changes nothing", async (t) => {
  const source = freshParams();
  const sourceOpt = new Adam(source, { lr: 0.01 });
  train(sourceOpt, source, 3);
  const state = sourceOpt.stateBytes();
  const headerEnd = state.indexOf(10, state.indexOf(10) + 1) + 1;

  /**
   * Tries to load `bytes` into one of two twin optimizers, checks the error's kind and text, then
   * checks the twins still step alike.
   */
  const rejects = (
    bytes: Uint8Array,
    kind: typeof TorchError | typeof TypeError,
    text: string,
    make = (p: Param[]) => new Adam(p, { lr: 0.01 }),
  ) => {
    const a = freshParams(), b = freshParams();
    const optA = make(a), optB = make(b);
    train(optA, a, 2);
    train(optB, b, 2);
    assert.throws(() => optA.loadStateBytes(bytes), (e) => {
      assert.ok(e instanceof kind, `expected a ${kind.name}, got ${e}`);
      if (e instanceof TorchError) assert.equal(e.op, `${optA.constructor.name}.loadStateBytes`);
      assert.ok((e as Error).message.includes(text), `"${(e as Error).message}" lacks "${text}"`);
      return true;
    });
    train(optA, a, 2);
    train(optB, b, 2);
    for (let i = 0; i < a.length; i++) assert.deepEqual(a[i].toArray(), b[i].toArray());
    [optA, optB].forEach((o) => o.dispose());
    [...a, ...b].forEach((p) => p.dispose());
  };

  await t.step("truncated", () => {
    // Cut inside libtorch's archive: the header is intact, so libtorch itself rejects the rest.
    rejects(state.subarray(0, headerEnd + ((state.length - headerEnd) >> 1)), TorchError, "failed reading zip archive");
    rejects(state.subarray(0, state.length - 1), TorchError, "failed reading zip archive");
    rejects(state.subarray(0, headerEnd - 3), TypeError, "not an optimizer state");
  });

  await t.step("garbage", () => {
    rejects(new Uint8Array(1000).fill(7), TypeError, "from stateBytes() (no header)");
    const flipped = state.slice();
    for (let i = headerEnd + 64; i < flipped.length; i += 7) flipped[i] ^= 0x5a;
    rejects(flipped, TorchError, "failed reading zip archive");
  });

  await t.step("another optimizer's state", () => {
    rejects(state, TypeError, "the state is Adam's, not SGD's", (p) => new SGD(p, { lr: 0.01, momentum: 0.9 }));
    const params = freshParams();
    const sgd = new SGD(params, { lr: 0.01, momentum: 0.9 });
    train(sgd, params, 2);
    rejects(sgd.stateBytes(), TypeError, "the state is SGD's, not Adam's");
    sgd.dispose();
    params.forEach((p) => p.dispose());
  });

  await t.step("a different number of parameters", () => {
    const extra = zeros([2], { requiresGrad: true });
    const make = (p: Param[]) => new Adam([...p, extra], { lr: 0.01 });
    rejects(state, TypeError, "the state covers 2 parameters, this optimizer has 3", make);
    extra.dispose();
  });

  await t.step("parameters of other shapes", () => {
    const make = (p: Param[]) => new Adam([p[1], p[0]], { lr: 0.01 });
    rejects(state, TypeError, "parameter 0 has shape", make);
  });

  await t.step("empty", () => {
    const p = freshParams();
    const opt = new Adam(p);
    assert.throws(() => opt.loadStateBytes(new Uint8Array(0)), TypeError);
    opt.dispose();
    p.forEach((x) => x.dispose());
  });

  sourceOpt.dispose();
  source.forEach((p) => p.dispose());
});

Deno.test("construction and disposal errors", async (t) => {
  await t.step("a parameter that does not require grad is named", () => {
    const [w, b] = freshParams();
    const frozen = zeros([4, 2]);
    for (
      const make of [(p: Param[]) => new Adam(p), (p: Param[]) => new AdamW(p), (p: Param[]) => new SGD(p, { lr: 1 })]
    ) {
      assert.throws(() => make([w, frozen, b]), (e) => {
        assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
        assert.match(e.message, /parameter 1 \(shape \[4, 2\]\) does not require grad/);
        return true;
      });
    }
    assert.throws(() => new Adam([]), TypeError);
    [w, b, frozen].forEach((x) => x.dispose());
  });

  await t.step("use after dispose", () => {
    const params = freshParams();
    const opt = new AdamW(params);
    opt.dispose();
    opt.dispose();
    assert.throws(() => opt.step(), DisposedError);
    assert.throws(() => opt.lr, DisposedError);
    assert.throws(() => opt.stateBytes(), DisposedError);
    params.forEach((p) => p.dispose());
  });
});
