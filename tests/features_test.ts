// decoderFeatures (the paper's Section 4.2) on a tiny randomised UNet: DDPM features against a PyTorch
// computation written from the reference (guided-diffusion's q_sample with float64 tables cast to
// float32, the port tests/unet_ref.py with forward hooks, bilinear upsampling, concatenation,
// global L2 normalisation); MDM features' masks (reproducible per generator seed, really applied,
// none at t = 0); stopping the decoder after the last captured block changes nothing.
import assert from "node:assert/strict";
import { F, type FloatDType, full, Generator, manualSeed, noGrad, rand, randn, type Tensor, tidy } from "../mod.ts";
import { maskPatches } from "../src/mdm/mask.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { rootBuilder } from "../src/nn/module.ts";
import { decoderFeatures, featureChannels, type FeatureOptions } from "../src/segment/features.ts";
import { assertClose, DEVICE, type RefTensor, refTensor, type RefValue, torchRef } from "./helpers/torch_ref.ts";
import { type Config, pyModel, randomize } from "./helpers/unet_port.ts";

// Decoder blocks 0, 1 hold 64 channels, 2, 3 hold 32; block 0 is at 16×16 (so it is upsampled),
// block 1 ends with the ×2 upsample and, like 2 and 3, is at 32×32.
const CFG: Config = {
  imageSize: 32,
  modelChannels: 32,
  channelMult: [1, 2],
  attentionResolutions: [16],
  numResBlocks: 1,
};
// Out of order on purpose (the channels follow the order asked for), and 3 (the last block) left out
// so that stopAfterCapture really stops early.
const BLOCKS = [2, 0, 1];
const TIMESTEPS = [50, 150];
// The same libtorch kernels on both sides; the features differ only by rounding (as in
// tests/unet_test.ts, ~3e-6 of their scale on the CPU; cuDNN runs convolutions in TF32 on CUDA).
const REL = DEVICE === "cpu" ? 1e-5 : 1e-2;

function maxAbs(r: RefTensor): number {
  let m = 0;
  for (const v of r.data) m = Math.max(m, Math.abs(Number(v)));
  return m;
}

/** max|ours - ref| <= rel · max|ref| (per-element relative errors are ill-defined near zeros). */
function assertScaled(ours: Tensor, ref: RefValue | undefined, what: string): void {
  const r = refTensor(ref, what);
  const scale = maxAbs(r);
  assert.ok(scale > 0, `${what}: the reference is all zeros`);
  assertClose(ours, r, { rtol: 0, atol: REL * scale }, what);
}

/** Bit-for-bit equality: the same kernels on the same values. */
function assertIdentical(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shapes differ`);
  const [u, v] = [a.toArray() as Float32Array, b.toArray() as Float32Array];
  const i = u.findIndex((x, j) => !Object.is(x, v[j]));
  assert.equal(i, -1, `${what}: element ${i} is ${u[i]}, expected ${v[i]}`);
}

function maxAbsDiff(a: Tensor, b: Tensor): number {
  return tidy(() => a.sub(b).abs().amax().item());
}

/** The features computed by hand from a full forward pass (no stopAfterCapture): capture, upsample,
 * concatenate, in the order decoderFeatures promises. */
function manualFeatures(model: UNet, inputs: Tensor<FloatDType>[], steps: number[], blocks: number[]): Tensor {
  return noGrad(() =>
    tidy(() => {
      const parts: Tensor[] = [];
      inputs.forEach((x, i) => {
        const t = full([x.size(0)], steps[i], { dtype: "int64", device: DEVICE });
        const { output, features } = model.forward(x, t, { capture: blocks });
        assert.ok(output !== null, "a full forward pass has an output");
        for (const f of features) {
          parts.push(F.interpolate(f, { size: [x.size(2), x.size(3)], mode: "bilinear", alignCorners: false }));
        }
      });
      return F.cat(parts, 1);
    })
  );
}

// ---- one tiny model, one batch, one PyTorch process
manualSeed(31337);
const model = randomize(new UNet(CFG, rootBuilder({ device: DEVICE }))).eval();
const images = rand([2, 3, 32, 32], { device: DEVICE }).mul(2).sub(1); // in [-1, 1] like real inputs
const noise = randn([1, 3, 32, 32], { device: DEVICE }); // ddpm-segmentation's one shared noise image
const D = featureChannels(model, { blocks: BLOCKS, timesteps: TIMESTEPS });

const ddpm: FeatureOptions = { method: "ddpm", blocks: BLOCKS, timesteps: TIMESTEPS, noise };
const sd = Object.fromEntries([...model.stateDict()].map(([k, v]) => [`sd:${k}`, v]));
const ref = await torchRef({
  ddpm: {
    inputs: { x: images, noise, ...sd },
    code: `${pyModel(CFG)}model.load_state_dict({k[3:]: v for k, v in list(globals().items()) if k.startswith("sd:")})
# guided-diffusion: get_named_beta_schedule("linear", 1000) and GaussianDiffusion's float64 tables;
# _extract_into_tensor indexes them and casts to float32.
scale = 1000 / 1000
betas = np.linspace(scale * 0.0001, scale * 0.02, 1000, dtype=np.float64)
acp = np.cumprod(1.0 - betas, axis=0)
sqrt_acp, sqrt_1m_acp = torch.from_numpy(np.sqrt(acp)), torch.from_numpy(np.sqrt(1.0 - acp))
parts = []
with torch.no_grad():
    for t in ${JSON.stringify(TIMESTEPS)}:
        tt = torch.full((x.shape[0],), t, dtype=torch.int64)
        xt = sqrt_acp[tt].float()[:, None, None, None] * x + sqrt_1m_acp[tt].float()[:, None, None, None] * noise
        _, feats = U.capture_blocks(model, xt, tt, ${JSON.stringify(BLOCKS)})
        parts += [F.interpolate(f, size=tuple(x.shape[-2:]), mode="bilinear", align_corners=False) for f in feats]
    out = torch.cat(parts, dim=1)
result = {"plain": out, "l2": out / out.flatten(1).norm(dim=1)[:, None, None, None]}`,
  },
});
const py = ref.ddpm as Record<string, RefValue>;

Deno.test("DDPM features equal PyTorch's q_sample → port forward → bilinear upsampling → concatenation", async (t) => {
  await t.step("featureChannels: blocks' channels summed, once per timestep", () => {
    // Blocks 2, 0, 1 have 32, 64 and 64 channels.
    assert.deepEqual(BLOCKS.map((b) => model.decoderChannels(b)), [32, 64, 64]);
    assert.equal(D, 2 * (32 + 64 + 64));
  });

  const feats = decoderFeatures(model, images, ddpm);
  await t.step("shape [B, D, H, W], float32", () => {
    assert.deepEqual(feats.shape, [2, D, 32, 32]);
    assert.equal(feats.dtype, "float32");
  });

  await t.step("values and channel order (timestep-major, blocks as given) equal the reference", () => {
    assertScaled(feats, py.plain, "DDPM features");
  });

  await t.step("the order is not interchangeable: blocks in another order give other channels", () => {
    // Guards against a reference that would pass whatever the order: swapping the first two blocks
    // of the list moves channels, so the comparison above would fail.
    const swapped = decoderFeatures(model, images, { ...ddpm, blocks: [0, 2, 1] });
    assert.ok(maxAbsDiff(swapped.narrow(1, 0, 64), feats.narrow(1, 32, 64)) === 0, "block 0 moved to the front");
    assert.ok(maxAbsDiff(swapped, feats) > 0);
  });

  await t.step("l2Normalize: each image's whole C×H×W tensor has unit norm and equals PyTorch's division", () => {
    const normed = decoderFeatures(model, images, { ...ddpm, l2Normalize: true });
    assertScaled(normed, py.l2, "L2-normalised DDPM features");
    const norms = noGrad(() => normed.square().sum([1, 2, 3]).sqrt().toArray() as Float32Array);
    // A float32 sum of 2·320·1024 squares: rounding leaves ~1e-6.
    for (const n of norms) assert.ok(Math.abs(n - 1) < 1e-5, `norm ${n}`);
    // Per image, not per pixel or per batch: the normalised features are the plain ones divided
    // by one number per image.
    for (let i = 0; i < 2; i++) {
      const ratio = noGrad(() => feats.narrow(0, i, 1).div(normed.narrow(0, i, 1)));
      const [lo, hi] = [ratio.amin().item(), ratio.amax().item()];
      assert.ok((hi - lo) / hi < 1e-5, `image ${i}: feature/normalised ranges over [${lo}, ${hi}]`);
    }
  });

  await t.step("without `noise`, one generator-drawn noise image is shared by every timestep", () => {
    // ddpm-segmentation passes the same noise to q_sample at every t: the features then equal those
    // computed with that noise given explicitly (the generator's first draw).
    using g1 = new Generator(5, DEVICE), g2 = new Generator(5, DEVICE);
    const drawn = decoderFeatures(model, images, { ...ddpm, noise: undefined, generator: g1 });
    const given = decoderFeatures(model, images, {
      ...ddpm,
      noise: randn([1, 3, 32, 32], { device: DEVICE, generator: g2 }),
    });
    assertIdentical(drawn, given, "generator-drawn vs given noise");
  });
});

Deno.test("MDM features: seeded masks, really applied, none at t = 0", async (t) => {
  const mdm: FeatureOptions = { method: "mdm", blocks: BLOCKS, timesteps: [50] };
  const withSeed = (seed: number, overrides: Partial<FeatureOptions> = {}) => {
    using g = new Generator(seed, DEVICE);
    return decoderFeatures(model, images, { ...mdm, ...overrides, generator: g });
  };

  await t.step("the same generator seed gives identical features, another seed different ones", () => {
    const a = withSeed(1), b = withSeed(1), c = withSeed(2);
    assert.deepEqual(a.shape, [2, D / 2, 32, 32]);
    assertIdentical(a, b, "seed 1 twice");
    assert.ok(maxAbsDiff(a, c) > 0, "seeds 1 and 2 gave the same features");
  });

  await t.step("t = 50 masks one of the 16 patches, and the features are those of the masked images", () => {
    // 32×32 images in 8×8 patches: L = 16, floor(16·(1 − 50/1000)) = 15 kept, 1 masked per image.
    using g = new Generator(3, DEVICE);
    const { images: masked, mask } = maskPatches(images, [50, 50], { generator: g });
    assert.deepEqual([...(mask.float().sum(1).toArray() as Float32Array)], [1, 1]);
    const expected = manualFeatures(model, [masked], [50], BLOCKS);
    assertIdentical(withSeed(3), expected, "features of the masked images");
    // ... and not those of the clean images at the same t: the mask reaches the features.
    const clean = manualFeatures(model, [images], [50], BLOCKS);
    const diff = maxAbsDiff(withSeed(3), clean), scale = tidy(() => clean.abs().amax().item());
    assert.ok(diff > 1e-3 * scale, `masked and clean features differ by only ${diff} (scale ${scale})`);
  });

  await t.step("t = 0 masks nothing: the features equal those of the unmasked images exactly", () => {
    assertIdentical(withSeed(4, { timesteps: [0] }), manualFeatures(model, [images], [0], BLOCKS), "t = 0");
  });

  await t.step("two timesteps: timestep-major concatenation of each timestep's features", () => {
    // The mask generator is drawn once per timestep, in order: t = 0 (masks nothing, but still draws)
    // then t = 0 again gives the clean features twice.
    const two = withSeed(6, { timesteps: [0, 0] });
    const one = manualFeatures(model, [images], [0], BLOCKS);
    assertIdentical(two, F.cat([one, one], 1), "t = 0, 0");
  });
});

Deno.test("stopAfterCapture gives the features of a full forward pass", () => {
  const x = images;
  const t = full([2], 50, { dtype: "int64", device: DEVICE });
  for (const capture of [[1, 3, 2], [0], [2, 0, 1]]) {
    const early = noGrad(() => model.forward(x, t, { capture, stopAfterCapture: true }));
    const all = noGrad(() => model.forward(x, t, { capture }));
    // Output only when the last block ran (block 3 is the last of the 4).
    assert.equal(early.output === null, !capture.includes(3), `capture ${capture}: output presence`);
    assert.equal(early.features.length, capture.length);
    early.features.forEach((f, i) => assertIdentical(f, all.features[i], `capture ${capture}, feature ${i}`));
  }
  // Through decoderFeatures, which always stops after its last block: asking for block 3 as well
  // forces the whole decoder to run, and the channels of the other blocks must not change.
  const early = decoderFeatures(model, images, { ...ddpm, timesteps: [50] });
  const whole = decoderFeatures(model, images, { ...ddpm, timesteps: [50], blocks: [...BLOCKS, 3] });
  assertIdentical(early, whole.narrow(1, 0, D / 2), "decoderFeatures stopping early vs the whole decoder");
});
