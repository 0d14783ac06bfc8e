// The MDM building blocks against independent computations: the timestep-controlled patch masking
// (counts from the authors' float64 formula, checked in JS and Python), the SSIM map and loss
// (SciPy's ndimage.correlate for the release's 5×5 window, scikit-image for Wang's 11×11, PyTorch
// autograd for the loss gradient) and the DDPM schedules and q_sample (guided-diffusion's formulas
// in numpy), and the trainer's pieces (each corruption against the function it wraps, the EMA
// against its closed form). Every Python case runs in one process; each comparison states its tolerance.
import assert from "node:assert/strict";
import {
  F,
  type FloatDType,
  Generator,
  manualSeed,
  noGrad,
  rand,
  randint,
  randn,
  type Tensor,
  tensor,
} from "../mod.ts";
import { betaSchedule, Diffusion, GaussianNoise } from "../src/mdm/ddpm.ts";
import { Ema } from "../src/mdm/ema.ts";
import { maskPatches, PatchMasking } from "../src/mdm/mask.ts";
import { Linear } from "../src/nn/layers.ts";
import { rootBuilder } from "../src/nn/module.ts";
import { gaussian, ssim, ssimLoss } from "../src/mdm/ssim.ts";
import {
  assertArrayClose,
  assertClose,
  DEVICE,
  type RefCase,
  refTensor,
  type RefValue,
  torchRef,
} from "./helpers/torch_ref.ts";

manualSeed(20240612);

const EXACT = { rtol: 0, atol: 0 };

// ---------------------------------------------------------------------------------------------
// Masking

/** Masked patches per sample, from the release's formula in plain float64 JS: L − floor(L·(1 − r)). */
function expectedMasked(L: number, t: number, T: number, rule: "release" | "paper"): number {
  const r = rule === "paper" ? t / (T + 1) : t / T;
  return L - Math.floor(L * (1 - r));
}

/** Images whose every value is at least 0.1 away from 0, so a zero can only come from masking. */
function nonZeroImages(shape: number[]): Tensor<"float32"> {
  const u = rand(shape), sign = rand(shape).lt(0.5);
  return u.mul(0.9).add(0.1).where(sign, u.mul(-0.9).sub(0.1));
}

/**
 * Checks one masking result pixel by pixel against the input and the returned mask, and returns
 * the number of masked patches of each sample: a masked patch is +0 in every channel, every other
 * pixel keeps the input's exact float32 value.
 */
function checkMasked(x: Tensor, images: Tensor, mask: Tensor, p: number): number[] {
  const [b, c, h, w] = x.shape;
  const gh = h / p, gw = w / p, L = gh * gw;
  assert.deepEqual([...images.shape], [...x.shape], "images keep the input's shape");
  assert.equal(images.dtype, x.dtype, "images keep the input's dtype");
  assert.deepEqual([...mask.shape], [b, L], "mask is [B, L]");
  assert.equal(mask.dtype, "bool");
  const xs = x.toArray() as Float32Array, ys = images.toArray() as Float32Array, ms = mask.toArray() as Uint8Array;
  const counts = new Array(b).fill(0);
  for (let i = 0; i < b; i++) {
    for (let k = 0; k < L; k++) {
      const masked = ms[i * L + k] === 1;
      if (masked) counts[i]++;
      const py = Math.floor(k / gw) * p, px = (k % gw) * p; // row-major patch order
      for (let ch = 0; ch < c; ch++) {
        for (let y = py; y < py + p; y++) {
          for (let xx = px; xx < px + p; xx++) {
            const j = ((i * c + ch) * h + y) * w + xx;
            if (masked) {
              if (!Object.is(ys[j], 0)) {
                assert.fail(`sample ${i}, patch ${k}, channel ${ch}: masked pixel (${y}, ${xx}) is ${ys[j]}, not 0`);
              }
            } else if (ys[j] !== xs[j]) {
              assert.fail(`sample ${i}, patch ${k}: visible pixel (${ch}, ${y}, ${xx}) is ${ys[j]}, input ${xs[j]}`);
            }
          }
        }
      }
    }
  }
  return counts;
}

// Multiples and near-multiples of T/8 and T/1024 (where floor could round either way), the ends of
// the range, and a few arbitrary values. "paper" also takes t = T.
const T = 1000;
const SWEEP = [0, 1, 2, 3, 7, 8, 10, 63, 64, 99, 100, 125, 128, 249, 250, 256, 333, 375, 499, 500, 501, 512, 625, 666];
SWEEP.push(750, 768, 875, 900, 937, 990, 998, 999);
const SWEEP_PAPER = [...SWEEP, 1000];

// L = 1024 is the paper's 256² crop with p = 8; 64×64 with p = 4, 8, 16 gives L = 256, 64, 16;
// the non-square 24×40 with p = 8 gives L = 15 (3 × 5).
const GEOMETRIES: { h: number; w: number; p: number }[] = [
  { h: 256, w: 256, p: 8 },
  { h: 64, w: 64, p: 4 },
  { h: 64, w: 64, p: 8 },
  { h: 64, w: 64, p: 16 },
  { h: 24, w: 40, p: 8 },
  { h: 48, w: 32, p: 16 },
];

const maskPyCase: RefCase = {
  // The authors' Python: int(L * (1 - ratio)) patches kept, with the ratio in float64.
  code: `
sweep = ${JSON.stringify(SWEEP)}
paper = ${JSON.stringify(SWEEP_PAPER)}
result = {str(L): {"release": [L - int(L * (1 - t / ${T})) for t in sweep],
                   "paper": [L - int(L * (1 - t / (${T} + 1))) for t in paper]}
          for L in ${JSON.stringify([...new Set(GEOMETRIES.map((g) => (g.h / g.p) * (g.w / g.p)))])}}`,
};

// ---------------------------------------------------------------------------------------------
// SSIM inputs: random images and structured pairs, all in [-1, 1], [B = 5, C = 3, 32, 28].

const H = 32, W = 28;

function image(f: (c: number, y: number, x: number) => number): Tensor<"float32"> {
  const data = new Float32Array(3 * H * W);
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) data[(c * H + y) * W + x] = f(c, y, x);
  }
  return tensor(data, { shape: [1, 3, H, W] });
}

const smooth = image((c, y, x) => 0.8 * Math.sin(0.21 * y + 0.13 * x + c)); // smooth gradients
const edges = image((c, y, x) => ((y < H / 2) !== (x < W / 3 + c) ? 0.7 : -0.6)); // step edges
// A 3×3 box blur of the edges (zero padded), a noisy copy of the smooth image.
const box = tensor(new Float32Array(27).fill(1 / 9), { shape: [3, 1, 3, 3] });
const blurred = F.conv2d(edges, box, null, { padding: 1, groups: 3 });
const noisy = smooth.add(randn([1, 3, H, W]).mul(0.15)).clamp(-1, 1);
const randA = rand([2, 3, H, W]).mul(2).sub(1), randB = rand([2, 3, H, W]).mul(2).sub(1);

// Pairs (x_i, y_i): two independent random pairs (SSIM near 0, some negative, so the loss's clamp
// at 1 is active), smooth vs noisy, edges vs blurred, and a luminance and contrast change.
const ssimX = F.cat([randA, smooth, edges, smooth], 0).contiguous();
const ssimY = F.cat([randB, noisy, blurred, smooth.mul(0.5).add(0.2)], 0).contiguous();
// Negatives about the same mean, 0.5 ± 0.4·pattern: equal luminance, opposite structure, so SSIM
// is close to −1. (Plain x and −x is not: with means of opposite sign the luminance term is
// negative too and the product comes out positive.)
const pattern = F.cat([noisy, randA.narrow(0, 0, 1)], 0).mul(0.4);
const invX = pattern.add(0.5), invY = pattern.neg().add(0.5);

const PY_SSIM_ORACLE = `
import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

def gauss(ws, sigma):
    g = np.exp(-(np.arange(ws) - ws // 2) ** 2 / (2 * sigma ** 2))
    return g / g.sum()

def ssim_scipy(a, b, ws=5, sigma=1.5, L=1.0):
    # The release's map written out: zero-padded Gaussian-weighted moments, biased variances.
    k = np.outer(gauss(ws, sigma), gauss(ws, sigma))
    f = lambda im: ndimage.correlate(im, k, mode="constant", cval=0.0)
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        for c in range(a.shape[1]):
            p, q = a[i, c], b[i, c]
            mx, my = f(p), f(q)
            vx, vy, cxy = f(p * p) - mx * mx, f(q * q) - my * my, f(p * q) - mx * my
            out[i, c] = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return out

def ssim_skimage(a, b, L):
    out = np.empty_like(a)
    for i in range(a.shape[0]):
        for c in range(a.shape[1]):
            _, out[i, c] = structural_similarity(a[i, c], b[i, c], gaussian_weights=True, sigma=1.5,
                                                 use_sample_covariance=False, data_range=L, full=True)
    return out
`;

const PY_SSIM_TORCH = `
def ssim_torch(x, y, ws=5, sigma=1.5, L=1.0):
    # The release's PyTorch SSIM (pytorch-ssim style): depthwise conv2d with the Gaussian window.
    c = x.shape[1]
    g = torch.exp(-(torch.arange(ws, dtype=x.dtype) - ws // 2) ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    w = (g[:, None] @ g[None, :]).expand(c, 1, ws, ws).contiguous()
    conv = lambda im: F.conv2d(im, w, padding=ws // 2, groups=c)
    mu1, mu2 = conv(x), conv(y)
    s11, s22, s12 = conv(x * x) - mu1 ** 2, conv(y * y) - mu2 ** 2, conv(x * y) - mu1 * mu2
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return (2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))
`;

// SciPy and scikit-image are oracles of their own (Debian's Python); the autograd reference is the
// PyTorch of the libtorch under test.
const ssimOracleCases: Record<string, RefCase> = {
  "scipy 5x5": {
    code: PY_SSIM_ORACLE + `result = torch.from_numpy(ssim_scipy(x.double().numpy(), y.double().numpy()))`,
    inputs: { x: ssimX, y: ssimY },
  },
  "scipy 5x5 negative": {
    code: PY_SSIM_ORACLE + `result = torch.from_numpy(ssim_scipy(x.double().numpy(), y.double().numpy()))`,
    inputs: { x: invX, y: invY },
  },
  "skimage 11x11": {
    code: PY_SSIM_ORACLE + `result = torch.from_numpy(ssim_skimage(x.double().numpy(), y.double().numpy(), 2.0))`,
    inputs: { x: ssimX, y: ssimY },
  },
  "loss from the scipy map": {
    code: PY_SSIM_ORACLE +
      `result = float(np.mean(np.clip(1 - ssim_scipy(x.double().numpy(), y.double().numpy()), 0, 1) / 2))`,
    inputs: { x: ssimX, y: ssimY },
  },
};

const ssimCases: Record<string, RefCase> = {
  "torch loss and gradient float32": {
    code: PY_SSIM_TORCH + `
loss = torch.clamp(1 - ssim_torch(x, y), 0, 1).div(2).mean()
loss.backward()
result = [loss, x.grad]`,
    inputs: { x: ssimX, y: ssimY },
    grad: ["x"],
  },
  "torch loss and gradient float64": {
    code: PY_SSIM_TORCH + `
loss = torch.clamp(1 - ssim_torch(x, y), 0, 1).div(2).mean()
loss.backward()
result = [loss, x.grad]`,
    inputs: { x: ssimX.to("float64"), y: ssimY.to("float64") },
    grad: ["x"],
  },
  "torch loss and gradient 11x11, L = 2": {
    code: PY_SSIM_TORCH + `
loss = torch.clamp(1 - ssim_torch(x, y, ws=11, L=2.0), 0, 1).div(2).mean()
loss.backward()
result = [loss, x.grad]`,
    inputs: { x: ssimX, y: ssimY },
    grad: ["x"],
  },
};

// ---------------------------------------------------------------------------------------------
// DDPM: guided-diffusion's get_named_beta_schedule and GaussianDiffusion, in numpy float64.

const PY_DDPM = `
import math
def betas_np(kind, T):
    if kind == "linear":
        scale = 1000 / T
        return np.linspace(scale * 0.0001, scale * 0.02, T, dtype=np.float64)
    alpha_bar = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    return np.array([min(1 - alpha_bar((i + 1) / T) / alpha_bar(i / T), 0.999) for i in range(T)], dtype=np.float64)

def q_sample(kind, T, x0, t, noise):
    acp = np.cumprod(1.0 - betas_np(kind, T), axis=0)
    # _extract_into_tensor: index the float64 table, cast to float32, broadcast.
    ext = lambda arr: torch.from_numpy(arr)[t].float()[:, None, None, None]
    return ext(np.sqrt(acp)) * x0 + ext(np.sqrt(1.0 - acp)) * noise
`;
const SCHEDULES = [["linear", 1000], ["linear", 100], ["cosine", 1000], ["cosine", 100]] as const;

const x0 = randn([4, 3, 8, 8]), noise = randn([4, 3, 8, 8]), output = randn([4, 3, 8, 8]);
const qT = tensor(new BigInt64Array([0n, 17n, 500n, 999n]));
const qT100 = tensor(new BigInt64Array([99n, 0n, 42n, 50n]));

const ddpmCases: Record<string, RefCase> = Object.fromEntries(
  SCHEDULES.map(([kind, steps]) => [
    `${kind} ${steps}`,
    {
      code: PY_DDPM +
        `b = betas_np("${kind}", ${steps})\nresult = [torch.from_numpy(b), torch.from_numpy(np.cumprod(1.0 - b))]`,
    },
  ]),
);
ddpmCases["q_sample linear 1000"] = {
  code: PY_DDPM + `result = q_sample("linear", 1000, x0, t, noise)`,
  inputs: { x0, t: qT, noise },
};
ddpmCases["q_sample cosine 100"] = {
  code: PY_DDPM + `result = q_sample("cosine", 100, x0, t, noise)`,
  inputs: { x0, t: qT100, noise },
};
ddpmCases["mse losses"] = {
  code: `result = [F.mse_loss(out, noise), F.mse_loss(out, x0)]`,
  inputs: { out: output, noise, x0 },
};

// One PyTorch process and one oracle process for everything.
const ssimKeys = <T>(cases: Record<string, T>) => Object.entries(cases).map(([k, v]) => [`ssim / ${k}`, v]);
const [torchValues, oracleValues] = await Promise.all([
  torchRef({
    "mask counts": maskPyCase,
    ...Object.fromEntries(ssimKeys(ssimCases)),
    ...Object.fromEntries(Object.entries(ddpmCases).map(([k, v]) => [`ddpm / ${k}`, v])),
  }),
  torchRef(Object.fromEntries(ssimKeys(ssimOracleCases)), 1, { oracle: true }),
]);
const ref = { ...torchValues, ...oracleValues };

/** The interior of a [B, C, H, W] tensor or reference, `m` pixels cropped on each side, as numbers. */
function interior(data: ArrayLike<number>, shape: readonly number[], m: number): number[] {
  const [b, c, h, w] = shape, out: number[] = [];
  for (let i = 0; i < b * c; i++) {
    for (let y = m; y < h - m; y++) for (let x = m; x < w - m; x++) out.push(data[(i * h + y) * w + x]);
  }
  return out;
}

function floats(t: Tensor): number[] {
  return Array.from(t.toArray() as Float32Array | Float64Array);
}

// ---------------------------------------------------------------------------------------------

Deno.test("maskPatches: masked counts, zeros and untouched pixels over a t sweep", async (t) => {
  const pyCounts = ref["mask counts"] as unknown as Record<string, { release: number[]; paper: number[] }>;
  assert.ok(pyCounts && !("error" in pyCounts), `Python failed: ${JSON.stringify(pyCounts)}`);
  for (const { h, w, p } of GEOMETRIES) {
    const L = (h / p) * (w / p);
    for (const rule of ["release", "paper"] as const) {
      const ts = rule === "paper" ? SWEEP_PAPER : SWEEP;
      await t.step(`${h}×${w}, p = ${p} (L = ${L}), ${rule} ratio`, () => {
        // One sample per t, all in one batch: the per-sample t really is per sample.
        const x = nonZeroImages([ts.length, 3, h, w]);
        using g = new Generator(L + ts.length, DEVICE);
        const { images, mask } = maskPatches(x, tensor(BigInt64Array.from(ts, BigInt)), {
          patchSize: p,
          ratio: rule,
          generator: g,
        });
        const counts = checkMasked(x, images, mask, p);
        const expected = ts.map((ti) => expectedMasked(L, ti, T, rule));
        assert.deepEqual(counts, expected, "masked patches per sample, against the JS float64 formula");
        assert.deepEqual(expected, pyCounts[String(L)][rule], "the JS formula against Python's int(L * (1 - r))");
        assert.equal(counts[0], 0, "t = 0 masks nothing");
      });
    }
  }
});

Deno.test("maskPatches: random streams, per-sample masks, uniform patch choice", async (t) => {
  const x = nonZeroImages([16, 3, 64, 64]);
  const t500 = new Array(16).fill(500);
  const maskOf = (seed: number) => {
    using g = new Generator(seed, DEVICE);
    return Array.from(maskPatches(x, t500, { generator: g }).mask.toArray() as Uint8Array);
  };
  await t.step("the same generator seed gives the same mask, another seed another mask", () => {
    const a = maskOf(11), b = maskOf(11), c = maskOf(12);
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });
  await t.step("samples with the same t get different masks", () => {
    const m = maskOf(13), L = 64;
    const rows = new Set(Array.from({ length: 16 }, (_, i) => m.slice(i * L, (i + 1) * L).join("")));
    // C(64, 32) ≈ 1.8e18 masks per sample: any repeat means the order is shared across the batch.
    assert.equal(rows.size, 16, "every sample's mask is distinct");
  });
  await t.step("t as int64 tensor, int32 tensor and number[] give the same result", () => {
    const ts = [0, 100, 999, 500, 250, 1, 750, 998, 0, 100, 999, 500, 250, 1, 750, 998];
    const run = (tt: Parameters<typeof maskPatches>[1]) => {
      using g = new Generator(5, DEVICE);
      return maskPatches(x, tt, { generator: g });
    };
    const a = run(ts), b = run(tensor(BigInt64Array.from(ts, BigInt))), c = run(tensor(Int32Array.from(ts)));
    const ma = Array.from(a.mask.toArray() as Uint8Array);
    assert.deepEqual(Array.from(b.mask.toArray() as Uint8Array), ma);
    assert.deepEqual(Array.from(c.mask.toArray() as Uint8Array), ma);
    assertClose(b.images, { dtype: "float32", shape: [...a.images.shape], data: a.images.toArray() }, EXACT);
    assertClose(c.images, { dtype: "float32", shape: [...a.images.shape], data: a.images.toArray() }, EXACT);
  });
  await t.step("every patch position is masked about equally often", () => {
    // 2048 samples at r = 1/2 (32 of 64 patches): each position's count has mean 1024 and standard
    // deviation below sqrt(2048/4) ≈ 22.6; ±7 sigma (160) cannot fail by chance, while a biased
    // order (e.g. always the first patches) misses by ~1000.
    const n = 2048, L = 64;
    using g = new Generator(21, DEVICE);
    const m = maskPatches(rand([n, 1, 64, 64]).add(1), new Array(n).fill(500), { generator: g }).mask
      .toArray() as Uint8Array;
    const perPatch = new Array(L).fill(0);
    for (let i = 0; i < n * L; i++) perPatch[i % L] += m[i];
    for (const [k, c] of perPatch.entries()) assert.ok(Math.abs(c - n / 2) < 160, `patch ${k} masked ${c} times`);
  });
  await t.step("the global generator is used when none is given, and seeded by manualSeed", () => {
    manualSeed(99);
    const a = Array.from(maskPatches(x, t500).mask.toArray() as Uint8Array);
    manualSeed(99);
    assert.deepEqual(Array.from(maskPatches(x, t500).mask.toArray() as Uint8Array), a);
  });
});

Deno.test("maskPatches: clear errors for bad patch sizes, shapes and t", () => {
  const x = rand([2, 3, 32, 32]);
  const throwsWith = (f: () => unknown, type: ErrorConstructor, text: RegExp) =>
    assert.throws(f, (e: unknown) => e instanceof type && text.test((e as Error).message));
  throwsWith(() => maskPatches(x, [1, 2], { patchSize: 5 }), RangeError, /patch size 5 does not tile images of 32×32/);
  throwsWith(() => maskPatches(rand([2, 3, 32, 36]), [1, 2]), RangeError, /patch size 8 does not tile images of 32×36/);
  throwsWith(() => maskPatches(x, [1, 2], { patchSize: 0 }), RangeError, /patch size 0/);
  throwsWith(() => maskPatches(x, [1, 2], { patchSize: 2.5 }), RangeError, /patch size 2.5/);
  throwsWith(() => maskPatches(x, [1, 2, 3]), TypeError, /one timestep per image \(2\), got shape \[3\]/);
  throwsWith(() => maskPatches(x, [7]), TypeError, /one timestep per image \(2\), got shape \[1\]/);
  throwsWith(() => maskPatches(x, tensor([[1n, 2n]])), TypeError, /one timestep per image \(2\), got shape \[1, 2\]/);
  throwsWith(() => maskPatches(rand([3, 32, 32]), [1]), TypeError, /must be \[B, C, H, W\], got \[3, 32, 32\]/);
});

// float32 SSIM: E[x²] − μ² cancels (≈1e-7 absolute error on O(1) moments) and in flat regions the
// denominator is only C2 = (0.03·L)², so the map's error reaches ~1e-4 (measured 6e-5 on these
// images, 2.6e-4 on constant regions); 1e-3 leaves a margin. CUDA convolutions run in TF32 (10-bit
// mantissas), which makes that cancellation meaningless: there only the float64 comparisons, which
// pin the formula down to 1e-12, are run.
const F32_MAP = 1e-3;
const SKIP_F32 = DEVICE !== "cpu";

Deno.test("ssim: the 5×5 default against SciPy, Wang's 11×11 against scikit-image", async (t) => {
  await t.step("the 1-D window matches the release's weights (0.1201, 0.2339, 0.2921, ...)", () => {
    assertArrayClose(gaussian(5, 1.5), [0.1201, 0.2339, 0.2921, 0.2339, 0.1201], { rtol: 0, atol: 5e-5 });
  });
  await t.step("float64: the whole map equals SciPy's zero-padded correlate to 1e-12", () => {
    // Same formula in the same precision: only summation order differs.
    const tol = { rtol: 0, atol: 1e-12 };
    assertClose(ssim(ssimX.to("float64"), ssimY.to("float64")), ref["ssim / scipy 5x5"], tol, "ssim float64");
    const inv = ssim(invX.to("float64"), invY.to("float64"));
    assertClose(inv, ref["ssim / scipy 5x5 negative"], tol, "ssim float64, negative");
  });
  await t.step({
    name: `float32: the whole map within ${F32_MAP} of SciPy's float64`,
    ignore: SKIP_F32,
    fn: () => {
      const tol = { rtol: 0, atol: F32_MAP, checkDtype: false };
      assertClose(ssim(ssimX, ssimY), ref["ssim / scipy 5x5"], tol, "ssim float32");
      assertClose(ssim(invX, invY), ref["ssim / scipy 5x5 negative"], tol, "ssim float32, negative");
    },
  });
  await t.step("11×11, L = 2: the interior (5 px cropped) equals scikit-image's full map", () => {
    // skimage pads by reflection, ours by zeros: only pixels whose 11×11 window lies inside the
    // image are comparable. float64 to 1e-12; float32 (on the CPU) within F32_MAP.
    const r = refTensor(ref["ssim / skimage 11x11"]);
    const expected = interior(r.data as Float64Array, r.shape, 5);
    const opts = { windowSize: 11, dataRange: 2 };
    const m64 = ssim(ssimX.to("float64"), ssimY.to("float64"), opts);
    assert.deepEqual([...m64.shape], r.shape);
    assertArrayClose(interior(floats(m64), m64.shape, 5), expected, { rtol: 0, atol: 1e-12 }, "11×11 float64");
    if (!SKIP_F32) {
      const m32 = ssim(ssimX, ssimY, opts);
      assertArrayClose(interior(floats(m32), m32.shape, 5), expected, { rtol: 0, atol: F32_MAP }, "11×11 float32");
    }
  });
  await t.step("values lie in [-1, 1]; negative images score close to −1", () => {
    // |SSIM| ≤ 1 exactly (AM-GM and Cauchy-Schwarz); float64 keeps it to rounding.
    const f64 = (x: Tensor<FloatDType>) => x.to("float64");
    const maps = [
      ssim(f64(ssimX), f64(ssimY)),
      ssim(f64(invX), f64(invY)),
      ssim(f64(ssimX), f64(ssimY), { windowSize: 11, dataRange: 2 }),
    ];
    for (const m of maps) {
      for (const v of floats(m)) assert.ok(v >= -1 - 1e-12 && v <= 1 + 1e-12, `SSIM ${v} outside [-1, 1]`);
    }
    const inv = floats(maps[1]);
    assert.ok(inv.reduce((a, b) => a + b, 0) / inv.length < -0.5, "mean SSIM of the negatives is below −0.5");
  });
  await t.step("an image with itself: SSIM 1 everywhere, loss 0", () => {
    // Both sides go through identical float32 operations, so the map is 1 up to one rounding.
    for (const v of floats(ssim(ssimX, ssimX))) assert.ok(Math.abs(v - 1) <= 1e-6, `SSIM(x, x) = ${v}`);
    assert.ok(ssimLoss(ssimX, ssimX).item() <= 1e-7, "ssimLoss(x, x) is 0 up to float32 rounding");
  });
  await t.step("mismatched shapes are a TypeError naming both", () => {
    assert.throws(() => ssim(ssimX, invX), /\[5, 3, 32, 28\] and \[2, 3, 32, 28\]/);
  });
});

Deno.test("ssimLoss: value against Python, gradient against PyTorch autograd", async (t) => {
  /** Our loss and its gradient with respect to the prediction (the first argument). */
  const lossAndGrad = (x: Tensor<FloatDType>, y: Tensor<FloatDType>, opts = {}) => {
    const p = x.clone().requiresGrad_(true);
    const loss = ssimLoss(p, y, opts);
    loss.backward();
    return { loss: loss.item(), grad: p.grad! };
  };
  /** |a − b| ≤ rtol·max|b| elementwise: gradients have many near-zero entries (clamped pixels). */
  const scaled = (rtol: number, b: ArrayLike<number>) => ({
    rtol: 0,
    atol: rtol * Math.max(...Array.from(b, Math.abs)),
  });

  await t.step("the loss equals mean(clamp(1 − map, 0, 1) / 2) of the SciPy map", () => {
    const expected = ref["ssim / loss from the scipy map"] as number;
    assert.equal(typeof expected, "number", JSON.stringify(expected));
    assertArrayClose([ssimLoss(ssimX.to("float64"), ssimY.to("float64")).item()], [expected], {
      rtol: 1e-12,
      atol: 0,
    }, "loss float64");
    // The mean over 13440 pixels averages the float32 map errors out: 1e-5 relative.
    if (!SKIP_F32) assertArrayClose([ssimLoss(ssimX, ssimY).item()], [expected], { rtol: 1e-5, atol: 0 }, "float32");
  });
  for (
    const [name, x, y, opts, lossTol, gradTol] of [
      // float64: identical math, summation order aside.
      ["float64", ssimX.to("float64"), ssimY.to("float64"), {}, 1e-12, 1e-10],
      // float32: one grouped convolution over five stacked moments vs five separate convolutions;
      // the moments' cancellation (see F32_MAP) moves the gradient by ~1.3e-5 of its largest entry.
      ["float32", ssimX, ssimY, {}, 1e-5, 5e-5],
      ["11x11, L = 2", ssimX, ssimY, { windowSize: 11, dataRange: 2 }, 1e-5, 5e-5],
    ] as const
  ) {
    await t.step({
      name: `${name}: loss (rtol ${lossTol}) and gradient (within ${gradTol} of its largest entry)`,
      ignore: SKIP_F32 && x.dtype === "float32",
      fn: () => {
        const [refLoss, refGrad] = ref[`ssim / torch loss and gradient ${name}`] as RefValue[];
        const ours = lossAndGrad(x, y, opts);
        const l = refTensor(refLoss), g = refTensor(refGrad);
        assertArrayClose([ours.loss], [Number(l.data[0])], { rtol: lossTol, atol: 0 }, "loss");
        assertClose(ours.grad, g, scaled(gradTol, g.data as Float32Array), "gradient");
        assert.ok(floats(ours.grad).some((v) => v !== 0), "the gradient is not identically zero");
      },
    });
  }
});

Deno.test("DDPM: beta schedules and ᾱ against guided-diffusion's numpy formulas (1e-12)", async (t) => {
  for (const [kind, steps] of SCHEDULES) {
    await t.step(`${kind}, T = ${steps}`, () => {
      const [b, acp] = ref[`ddpm / ${kind} ${steps}`] as RefValue[];
      const betas = betaSchedule(kind, steps), d = new Diffusion(kind, steps);
      assertArrayClose(Array.from(betas), Array.from(refTensor(b).data as Float64Array), { rtol: 1e-12, atol: 0 });
      assertArrayClose(Array.from(d.betas), Array.from(betas), EXACT, "Diffusion.betas");
      assertArrayClose(Array.from(d.alphasCumprod), Array.from(refTensor(acp).data as Float64Array), {
        rtol: 1e-12,
        atol: 0,
      }, "alphasCumprod");
    });
  }
  await t.step("the endpoints the names promise", () => {
    const lin = betaSchedule("linear", 1000), lin100 = betaSchedule("linear", 100), cos = betaSchedule("cosine");
    assert.equal(lin[0], 1e-4);
    assertArrayClose([lin[999], lin100[0], lin100[99]], [0.02, 1e-3, 0.2], { rtol: 1e-15, atol: 0 });
    assert.equal(cos[999], 0.999, "cosine betas are clipped at max_beta 0.999");
  });
  await t.step("bad arguments are errors naming them", () => {
    assert.throws(() => betaSchedule("quadratic" as "linear"), /unknown schedule "quadratic"/);
    assert.throws(() => betaSchedule("linear", 0), /positive integer, got 0/);
    assert.throws(() => betaSchedule("linear", 2.5), /positive integer, got 2.5/);
  });
});

Deno.test("DDPM: qSample and the loss against guided-diffusion in PyTorch", async (t) => {
  // The same float32 multiplies and add on the same float32 table values: bit-identical.
  await t.step("qSample, linear T = 1000, t = 0, 17, 500, 999 (exact)", () => {
    const d = new Diffusion("linear", 1000);
    assertClose(d.qSample(x0, qT, noise), ref["ddpm / q_sample linear 1000"], EXACT);
  });
  await t.step("qSample, cosine T = 100, t = 99, 0, 42, 50 (exact)", () => {
    const d = new Diffusion("cosine", 100);
    assertClose(d.qSample(x0, qT100, noise), ref["ddpm / q_sample cosine 100"], EXACT);
  });
  await t.step("x_0 is barely noised at t = 0 and almost pure noise at t = T − 1", () => {
    const d = new Diffusion("linear", 1000);
    const xt = d.qSample(x0, qT, noise);
    // √ᾱ_0 = √(1 − 1e-4): the first sample is x0 up to 1% of the noise.
    const first = xt.narrow(0, 0, 1).sub(x0.narrow(0, 0, 1)).abs().amax().item();
    assert.ok(first < 0.05, `t = 0 moved x0 by ${first}`);
    // ᾱ_999 ≈ 4e-5: the last sample is the noise up to 0.7% of x0.
    const last = xt.narrow(0, 3, 1).sub(noise.narrow(0, 3, 1)).abs().amax().item();
    assert.ok(last < 0.05, `t = 999 is ${last} away from the noise`);
  });
  await t.step("loss: MSE against the noise or against x0 (rtol 1e-6)", () => {
    const [mseNoise, mseX0] = ref["ddpm / mse losses"] as RefValue[];
    const d = new Diffusion();
    assertClose(d.loss(output, x0, noise), mseNoise, { rtol: 1e-6, atol: 0 }, "noise target (the default)");
    assertClose(d.loss(output, x0, noise, "x0"), mseX0, { rtol: 1e-6, atol: 0 }, "x0 target");
  });
  await t.step("qSample rejects noise of another shape", () => {
    assert.throws(() => new Diffusion().qSample(x0, qT, randn([4, 3, 8, 9])), /differ in shape/);
  });
});

// ---------------------------------------------------------------------------------------------
// The trainer's pieces: corruptions and EMA

/** Bit-identical tensors (same shape, same values). */
function assertSameTensor(a: Tensor, b: Tensor, what = "tensor"): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shape`);
  assert.deepEqual(a.toArray(), b.toArray(), `${what}: values`);
}

Deno.test("corruptions: patch masking and Gaussian noise are maskPatches and qSample on their own streams", async (t) => {
  const x = randn([3, 3, 16, 16]);
  const base = { steps: 100, fixedT: null, device: DEVICE } as const;
  const streams = (seed: number) => ({ mask: new Generator(seed, DEVICE), noise: new Generator(seed + 1, DEVICE) });
  await t.step("PatchMasking: maskPatches with the mask stream; the target is the clean image", () => {
    const c = new PatchMasking({ ...base, patchSize: 4, ratio: "release" });
    const ts = c.timesteps(3, new Generator(5, DEVICE));
    const expectedT = randint(0, 100, [3], { generator: new Generator(5, DEVICE) });
    assert.deepEqual(ts.toArray(), expectedT.toArray());
    const { input, target } = c.apply(x, ts, streams(1));
    const want = maskPatches(x, ts, { patchSize: 4, steps: 100, generator: new Generator(1, DEVICE) }).images;
    assertSameTensor(input, want);
    assert.equal(target, x);
  });
  await t.step("GaussianNoise: qSample with noise from the noise stream; target noise or x0", () => {
    for (const target of ["noise", "x0"] as const) {
      const c = new GaussianNoise({ ...base, schedule: "linear", target });
      const ts = tensor(BigInt64Array.from([0n, 50n, 99n]), { device: DEVICE });
      const got = c.apply(x, ts, streams(1));
      const eps = randn([3, 3, 16, 16], { generator: new Generator(2, DEVICE) });
      assertSameTensor(got.input, new Diffusion("linear", 100).qSample(x, ts, eps));
      assertSameTensor(got.target, target === "noise" ? eps : x);
    }
  });
  await t.step("a fixed timestep draws nothing", () => {
    const g = new Generator(9, DEVICE), before = g.state;
    const ts = new PatchMasking({ ...base, fixedT: 42, patchSize: 4, ratio: "paper" }).timesteps(4, g);
    assert.deepEqual([...ts.toArray()], [42n, 42n, 42n, 42n]);
    assert.deepEqual(g.state, before);
  });
});

Deno.test("Ema: the average after updates, swapping into the model and back, starting from saved averages", () => {
  const model = new Linear(rootBuilder(), 3, 2);
  const start = new Map(model.namedParameters().map(([k, p]) => [k, p.clone()]));
  const ema = new Ema(model, 0.9);
  // Two updates toward new weights: ema = 0.9·(0.9·w0 + 0.1·w1) + 0.1·w2, in float32 steps.
  const w1 = new Map([...start].map(([k, w]) => [k, w.add(1)]));
  const w2 = new Map([...start].map(([k, w]) => [k, w.mul(-2)]));
  for (const next of [w1, w2]) {
    noGrad(() => model.namedParameters().forEach(([k, p]) => p.copy_(next.get(k)!)));
    ema.update();
  }
  for (const [k, w0] of start) {
    const [a, b, c] = [w0, w1.get(k)!, w2.get(k)!].map((w) => Array.from(w.toArray() as Float32Array));
    const expected = a.map((_, i) => 0.81 * a[i] + 0.09 * b[i] + 0.1 * c[i]);
    assertArrayClose(
      Array.from(ema.weights.get(k)!.toArray() as Float32Array),
      expected,
      { rtol: 1e-6, atol: 1e-6 },
      k,
    );
  }
  const swapBack = ema.swapIntoModel();
  for (const [k, p] of model.namedParameters()) assertSameTensor(p, ema.weights.get(k)!, `swapped ${k}`);
  swapBack();
  for (const [k, p] of model.namedParameters()) assertSameTensor(p, w2.get(k)!, `restored ${k}`);

  // From saved averages: the tensors themselves are taken (and leave the map); a missing or
  // mis-shaped key is refused by name before anything is taken.
  const saved = new Map<string, Tensor>([["weight", w1.get("weight")!], ["bias", w1.get("bias")!]]);
  const resumed = new Ema(model, 0.9, saved, "ema.safetensors");
  assert.equal(resumed.weights.get("weight"), w1.get("weight"));
  assert.equal(saved.size, 0);
  const partial = new Map<string, Tensor>([["weight", w2.get("weight")!]]);
  assert.throws(() => new Ema(model, 0.9, partial, "ema.safetensors"), /ema\.safetensors: missing bias/);
  assert.equal(partial.size, 1, "nothing taken from a refused map");
  const misShaped = new Map<string, Tensor>([["weight", w2.get("weight")!.transpose(0, 1)], ["bias", w2.get("bias")!]]);
  assert.throws(() => new Ema(model, 0.9, misShaped, "ema.safetensors"), /weight is \[3, 2\], the model's is \[2, 3\]/);
});
