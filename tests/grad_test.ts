// Gradients through chains of ops (the UNet's attention and ResBlock, a split with an unused
// piece) and backward mechanics (the implicit upstream gradient of a scalar, accumulation over two
// backward passes) against PyTorch's autograd (Debian's torch 1.13, the libtorch build mdm links)
// on seeded inputs, plus the autograd API's semantics. Each op's own gradients are checked with its
// forward cases (tests/helpers/op_harness.ts).
import {
  cat,
  enableGrad,
  F,
  isGradEnabled,
  manualSeed,
  noGrad,
  randint,
  randn,
  type Tensor,
  TorchError,
  zeros,
} from "../mod.ts";
import {
  assertArrayClose,
  assertClose,
  DEVICE,
  type RefCase,
  refTensor,
  type RefValue,
  type Tolerance,
  torchRef,
} from "./helpers/torch_ref.ts";

interface GradCase {
  /** PyTorch statements assigning `result`, a list: the output, then the gradients. */
  py: string;
  /** Each case owns its leaves, so gradients never accumulate across cases. */
  inputs: Record<string, Tensor>;
  /** The inputs that require grad. */
  grad: string[];
  ours: () => (Tensor | null)[];
  tol: Tolerance;
  /** Adds rtol × the largest |reference| to atol, for gradients that sum cancelling terms. */
  scaled?: boolean;
}

// One product or a few elementwise steps per element.
const ELEMENTWISE: Tolerance = { rtol: 1e-5, atol: 1e-6 };
// Sums of tens to hundreds of products (convolution and matmul backward, normalisation statistics).
const REDUCED: Tolerance = { rtol: 1e-4, atol: 1e-5 };
// cuDNN convolutions run in TF32 by default, in libtorch as in PyTorch (cudnn.allow_tf32): operands
// keep 10 mantissa bits, so against the CPU float32 reference the error is about 1e-3 of the scale.
const CUDA_CONV = DEVICE !== "cpu";
const CONV: Tolerance = CUDA_CONV ? { rtol: 1e-2, atol: 0 } : REDUCED;

manualSeed(31337);
const leaf = (...shape: number[]) => randn(shape, { requiresGrad: true });
const up = (...shape: number[]) => randn(shape);
const grads = (...ts: Tensor[]) => ts.map((t) => t.grad);

const cases: Record<string, GradCase> = {};
{
  // QKVAttentionLegacy: scaled q·k, softmax in float32, weights · v.
  const qkv = leaf(2, 3 * 8, 6), u = up(2, 8, 6);
  const scale = 1 / Math.sqrt(Math.sqrt(8));
  cases["attention: chunk, einsum, softmax, einsum"] = {
    py: `q, k, v = qkv.chunk(3, 1)
w = torch.einsum("bct,bcs->bts", q * ${scale}, k * ${scale})
w = F.softmax(w.float(), -1).type(w.dtype)
y = torch.einsum("bts,bcs->bct", w, v)
y.backward(u)
result = [y, qkv.grad]`,
    inputs: { qkv, u },
    grad: ["qkv"],
    ours: () => {
      const [q, k, v] = qkv.chunk(3, 1);
      const w = F.softmax(F.einsum("bct,bcs->bts", q.mul(scale), k.mul(scale)), -1, "float32");
      const y = F.einsum("bts,bcs->bct", w, v);
      y.backward(u);
      return [y, qkv.grad];
    },
    tol: REDUCED,
  };
}
{
  // The middle piece is unused: its rows of the gradient must be zero.
  const x = leaf(6, 4), u = up(4, 4);
  cases["split into sizes, one piece unused"] = {
    py: "a, b, c = x.split([1, 2, 3], 0); y = torch.cat([c, a * 2], 0); y.backward(u); result = [y, x.grad]",
    inputs: { x, u },
    grad: ["x"],
    ours: () => {
      const [a, , c] = x.split([1, 2, 3], 0);
      const y = cat([c, a.mul(2)], 0);
      y.backward(u);
      return [y, x.grad];
    },
    tol: ELEMENTWISE,
  };
}
{
  const x = leaf(3, 7);
  cases["mean of everything, implicit upstream 1"] = {
    py: "y = x.mean(); y.backward(); result = [y, x.grad]",
    inputs: { x },
    grad: ["x"],
    ours: () => {
      const y = x.mean();
      y.backward();
      return [y, x.grad];
    },
    tol: ELEMENTWISE,
  };
}
{
  const a = leaf(3, 4, 5), b = leaf(3, 4, 5), u = up(3, 4, 5);
  cases["l1Loss sum and none"] = {
    py: `y = F.l1_loss(a, b, reduction='sum'); y.backward()
z = F.l1_loss(a, b, reduction='none'); z.backward(u)
result = [y, z, a.grad, b.grad]`,
    inputs: { a, b, u },
    grad: ["a", "b"],
    ours: () => {
      const y = F.l1Loss(a, b, "sum");
      y.backward();
      const z = F.l1Loss(a, b, "none");
      z.backward(u);
      return [y, z, ...grads(a, b)];
    },
    tol: ELEMENTWISE,
  };
}
{
  // A guided-diffusion ResBlock without dropout or scale-shift norm:
  // x + conv(silu(gn(conv(silu(gn(x))) + linear(silu(emb))[..., None, None]))).
  const C = 64, E = 16;
  const small = (...shape: number[]) => randn(shape).mul(0.05).requiresGrad_();
  const x = leaf(2, C, 8, 8), emb = leaf(2, E);
  const p = {
    g1w: leaf(C),
    g1b: leaf(C),
    c1w: small(C, C, 3, 3),
    c1b: small(C),
    lw: small(C, E),
    lb: small(C),
    g2w: leaf(C),
    g2b: leaf(C),
    c2w: small(C, C, 3, 3),
    c2b: small(C),
  };
  const names = Object.keys(p) as (keyof typeof p)[];
  cases["ResBlock-like chain, loss = mean: input, embedding and every parameter"] = {
    py: `h = F.conv2d(F.silu(F.group_norm(x, 32, g1w, g1b)), c1w, c1b, padding=1)
h = h + F.linear(F.silu(emb), lw, lb)[:, :, None, None]
h = F.conv2d(F.silu(F.group_norm(h, 32, g2w, g2b)), c2w, c2b, padding=1)
loss = (x + h).mean()
loss.backward()
result = [loss, x.grad, emb.grad, ${names.map((n) => `${n}.grad`).join(", ")}]`,
    inputs: { x, emb, ...p },
    grad: ["x", "emb", ...names],
    ours: () => {
      let h = F.conv2d(F.groupNorm(x, 32, p.g1w, p.g1b).silu(), p.c1w, p.c1b, { padding: 1 });
      h = h.add(F.linear(emb.silu(), p.lw, p.lb).reshape(2, C, 1, 1));
      h = F.conv2d(F.groupNorm(h, 32, p.g2w, p.g2b).silu(), p.c2w, p.c2b, { padding: 1 });
      const loss = x.add(h).mean();
      loss.backward();
      return [loss, ...grads(x, emb, ...names.map((n) => p[n]))];
    },
    // Gradients of a mean over 8192 outputs are small and sum cancelling terms: relative to the
    // largest of each gradient only.
    tol: { rtol: CONV.rtol, atol: 0 },
    scaled: true,
  };
}

const request: Record<string, RefCase> = {};
for (const [name, c] of Object.entries(cases)) request[name] = { code: c.py, inputs: c.inputs, grad: c.grad };
const ref = await torchRef(request);

function maxAbs(v: RefValue): number {
  let m = 0;
  for (const x of refTensor(v).data) m = Math.max(m, Math.abs(Number(x)));
  return m;
}

function compare(ours: (Tensor | null)[], expected: RefValue, c: GradCase, what: string) {
  if (!Array.isArray(expected) || expected.length !== ours.length) {
    throw new Error(`${what}: PyTorch returned ${JSON.stringify(expected)?.slice(0, 200)}, not ${ours.length} values`);
  }
  ours.forEach((t, i) => {
    const label = `${what} [${i}]`;
    if (t === null || expected[i] === null) {
      if (t !== expected[i]) throw new Error(`${label}: gradient is ${t}, PyTorch's is ${expected[i]}`);
      return;
    }
    const atol = (c.tol.atol ?? 0) + (c.scaled ? (c.tol.rtol ?? 0) * maxAbs(expected[i]) : 0);
    assertClose(t, expected[i], { rtol: c.tol.rtol, atol }, label);
  });
}

Deno.test("gradients through op chains agree with PyTorch", async (t) => {
  for (const [name, c] of Object.entries(cases)) {
    await t.step(name, () => compare(c.ours(), ref[name], c, name));
  }
});

function assert(cond: boolean, message: string): asserts cond {
  if (!cond) throw new Error(message);
}

function assertThrows(fn: () => unknown, type: new (...args: never[]) => Error, includes = ""): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof type)) throw new Error(`expected a ${type.name}, got ${e}`);
    if (!(e as Error).message.includes(includes)) {
      throw new Error(`expected a message containing ${JSON.stringify(includes)}, got ${(e as Error).message}`);
    }
    return;
  }
  throw new Error(`expected a ${type.name}, nothing was thrown`);
}

function values(t: Tensor | null): number[] {
  if (t === null) throw new Error("expected a gradient, got null");
  return Array.from(t.toArray() as Float32Array);
}

Deno.test("autograd semantics", async (t) => {
  await t.step("backward of a non-scalar needs an upstream gradient", () => {
    const x = randn([3], { requiresGrad: true });
    assertThrows(() => x.mul(2).backward(), TorchError, "scalar");
  });

  await t.step("retainGraph allows a second backward, which accumulates", () => {
    const x = randn([5], { requiresGrad: true });
    const y = x.exp().sum();
    y.backward(undefined, { retainGraph: true });
    const once = values(x.grad);
    assertArrayClose(once, Array.from(x.toArray(), Math.exp), ELEMENTWISE, "d/dx sum(exp x)");
    y.backward();
    assertArrayClose(values(x.grad), once.map((g) => 2 * g), ELEMENTWISE, "gradient after two backwards");
  });

  await t.step("without retainGraph the graph is freed after one backward", () => {
    const x = randn([5], { requiresGrad: true });
    const y = x.exp().sum();
    y.backward();
    assertThrows(() => y.backward(), TorchError, "second time");
  });

  await t.step("zeroGrad zeroes in place; the next backward starts from zero", () => {
    const x = randn([4], { requiresGrad: true });
    x.mul(3).sum().backward();
    const held = x.grad!;
    x.zeroGrad();
    assert(values(held).every((g) => g === 0), `a held gradient handle reads ${values(held)} after zeroGrad()`);
    assert(values(x.grad).every((g) => g === 0), "zeroGrad() left non-zero values");
    x.mul(5).sum().backward();
    assert(values(x.grad).every((g) => g === 5), `gradient after zeroGrad and backward is ${values(x.grad)}`);
  });

  await t.step("zeroGrad(setToNone) drops the gradient", () => {
    const x = randn([4], { requiresGrad: true });
    x.mul(3).sum().backward();
    x.zeroGrad(true);
    assert(x.grad === null, "grad is not null after zeroGrad(true)");
    x.mul(5).sum().backward();
    assert(values(x.grad).every((g) => g === 5), `gradient after setToNone and backward is ${values(x.grad)}`);
  });

  await t.step("no gradient reaches a tensor before any backward", () => {
    assert(randn([2], { requiresGrad: true }).grad === null, "a fresh leaf has a gradient");
  });

  await t.step("detach cuts the graph", () => {
    const x = randn([6], { requiresGrad: true });
    const d = x.detach();
    assert(!d.requiresGrad, "a detached tensor requires grad");
    x.mul(d).sum().backward();
    // d(x · stop(x))/dx = x, where x · x would give 2x.
    assertArrayClose(values(x.grad), Array.from(x.toArray()), ELEMENTWISE, "gradient through a detached factor");
  });

  await t.step("noGrad: outputs made inside do not require grad", () => {
    const x = randn([3], { requiresGrad: true });
    const y = noGrad(() => {
      assert(!isGradEnabled(), "grad mode is on inside noGrad");
      const inner = enableGrad(() => x.mul(2));
      assert(inner.requiresGrad, "enableGrad inside noGrad did not record");
      return F.linear(x.reshape(1, 3), x.reshape(1, 3)).silu();
    });
    assert(!y.requiresGrad, "an output made inside noGrad requires grad");
    assert(isGradEnabled(), "grad mode stayed off after noGrad");
    assert(x.mul(2).requiresGrad, "an output made after noGrad does not require grad");
  });

  await t.step("an integer tensor cannot require grad", () => {
    assertThrows(() => randint(0, 5, [3]).requiresGrad_(), TypeError, "floating-point");
    assertThrows(() => {
      randint(0, 5, [3], { dtype: "int32" }).requiresGrad = true;
    }, TypeError);
    assertThrows(() => zeros([2], { dtype: "int64", requiresGrad: true }), TypeError);
  });
});
