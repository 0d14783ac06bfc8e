// The medical protocol's pieces (the paper's Section 4.2 and Appendix A.2): the pixel MLP against
// PyTorch's nn.Sequential (layout, initialisation, forward and gradients in train and eval mode),
// BatchNorm1d's cumulative average against nn.BatchNorm1d(momentum=None), trainHead's batch-norm
// recalibration against the activations' exact statistics, the sliding window (window origins,
// Gaussian weights, exact blending, small images, batching), predictHeads with batched windows, and
// the supervised baseline's training.
import assert from "node:assert/strict";
import { F, type FloatDType, manualSeed, noGrad, rand, randn, type Tensor, tensor, tidy } from "../mod.ts";
import { Rng } from "../src/data/rng.ts";
import { generateSynthetic } from "../src/data/synthetic.ts";
import type { Image } from "../src/data/image.ts";
import { crossEntropy } from "../src/functional.ts";
import { UNet } from "../src/models/unet/unet.ts";
import { BatchNorm1d } from "../src/nn/layers.ts";
import { rootBuilder } from "../src/nn/module.ts";
import { predictBaseline, trainBaseline } from "../src/segment/baseline.ts";
import { PixelClassifier } from "../src/segment/classifier.ts";
import { decoderFeatures, type FeatureOptions } from "../src/segment/features.ts";
import { type HeadTrainingOptions, type Labelled, predictHeads, sampleCrops, trainHead } from "../src/segment/heads.ts";
import { dice } from "../src/segment/metrics.ts";
import { gaussianMap, slidingWindow, windowStarts } from "../src/segment/sliding.ts";
import { assertClose, DEVICE, type RefCase, refOf, refTensor, type RefValue, torchRef } from "./helpers/torch_ref.ts";

type FloatTensor = Tensor<FloatDType>;

// The tiny UNet every model-based case here uses (decoder blocks 0..3; 1, 2 at 32×32).
const TINY = {
  imageSize: 32,
  modelChannels: 32,
  channelMult: [1, 2],
  attentionResolutions: [16],
  numResBlocks: 1,
  numHeadChannels: 32,
};

/** Non-trivial weights everywhere (the zero-initialised output layers too), as tests/unet_test.ts. */
function randomUNet(): UNet {
  const model = new UNet(TINY, rootBuilder({ device: DEVICE }));
  noGrad(() => {
    for (const [name, p] of model.namedParameters()) {
      using z = randn(p.shape, { device: DEVICE }).mul(0.1);
      if (p.ndim === 1 && name.endsWith("weight")) z.add_(1);
      p.copy_(z);
    }
  });
  return model.eval();
}

/** max|a - b| <= rel · max|b|: a scale-relative bound, per-element relative errors blow up near 0. */
function assertScaled(ours: Tensor, ref: RefValue | Tensor | undefined, rel: number, what: string): void {
  const r = ref && "toArray" in (ref as object) ? refOf(ref as Tensor) : refTensor(ref as RefValue, what);
  let scale = 0;
  for (const v of r.data) scale = Math.max(scale, Math.abs(Number(v)));
  assert.ok(scale > 0, `${what}: the reference is all zeros`);
  assertClose(ours, r, { rtol: 0, atol: rel * scale, checkDtype: false }, what);
}

function assertIdentical(a: Tensor, b: Tensor, what: string): void {
  assert.deepEqual(a.shape, b.shape, `${what}: shapes differ`);
  const [u, v] = [a.toArray() as Float32Array, b.toArray() as Float32Array];
  const i = u.findIndex((x, j) => !Object.is(x, v[j]));
  assert.equal(i, -1, `${what}: element ${i} is ${u[i]}, expected ${v[i]}`);
}

const sequentialPy = (d: number, k: number) => {
  const [h1, h2] = k >= 30 ? [256, 128] : [128, 32];
  // ddpm-segmentation's pixel_classifier: a module whose `layers` is this nn.Sequential.
  return `import torch.nn as nn
class PixelClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(${d}, ${h1}), nn.ReLU(), nn.BatchNorm1d(${h1}),
                                    nn.Linear(${h1}, ${h2}), nn.ReLU(), nn.BatchNorm1d(${h2}), nn.Linear(${h2}, ${k}))
    def forward(self, x):
        return self.layers(x)
net = PixelClassifier()
`;
};

// ---- every PyTorch computation of this file in one process
manualSeed(4242);
// A classifier with every parameter and buffer randomised, so that eval mode's running statistics
// and the batch norms' affine parameters matter.
const clf = new PixelClassifier(24, 5, { device: DEVICE });
noGrad(() => {
  for (const [k, v] of clf.stateDict()) {
    if (k.endsWith("num_batches_tracked")) v.fill_(3);
    else if (k.endsWith("running_var")) v.copy_(rand(v.shape, { device: DEVICE }).add(0.5));
    else if (k.includes(".2.") || k.includes(".5.")) {
      v.copy_(randn(v.shape, { device: DEVICE }).mul(0.3).add(k.endsWith("weight") ? 1 : 0));
    } else v.copy_(randn(v.shape, { device: DEVICE }).mul(0.2));
  }
});
const clfX = randn([40, 24], { device: DEVICE });
const clfY = tensor(BigInt64Array.from({ length: 40 }, (_, i) => BigInt((i * 7) % 5)), { device: DEVICE });
const clfSd = Object.fromEntries([...clf.stateDict()].map(([k, v]) => [`sd:${k}`, v.clone()]));

// Three batches of different sizes and distributions for the cumulative-average batch norm.
const bnBatches = [randn([10, 6]), randn([3, 6]).mul(2).add(1), randn([7, 6]).mul(0.5).sub(2)].map((b) => b.to(DEVICE));

const request: Record<string, RefCase> = {
  "layout 29": { code: sequentialPy(40, 29) + "result = {k: list(v.shape) for k, v in net.state_dict().items()}" },
  "layout 30": { code: sequentialPy(40, 30) + "result = {k: list(v.shape) for k, v in net.state_dict().items()}" },
  "forward": {
    inputs: { x: clfX, y: clfY, ...clfSd },
    code: sequentialPy(24, 5) +
      `net.load_state_dict({k[3:]: v for k, v in list(globals().items()) if k.startswith("sd:")})
net.train()
out_train = net(x)
F.cross_entropy(out_train, y).backward()
result = {"train": out_train, "grads": {k: p.grad for k, p in net.named_parameters()},
          "stats": {k: v.clone() for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}}
net.eval()
with torch.no_grad():
    result["eval"] = net(x)`,
  },
  "batchnorm": {
    inputs: { b0: bnBatches[0], b1: bnBatches[1], b2: bnBatches[2] },
    code: `bn = torch.nn.BatchNorm1d(6, momentum=None)
outs, stats = [], []
for b in (b0, b1, b2):
    outs.append(bn(b))
    stats.append([bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)])
result = {"outs": outs, "stats": stats}`,
  },
};
const ref = await torchRef(request);

// ---------------------------------------------------------------------------------------------------

Deno.test("PixelClassifier: layout, initialisation, and nn.Sequential's forward and gradients", async (t) => {
  await t.step(
    "keys layers.0/2/3/5/6 with the reference's shapes: (128, 32) below 30 classes, (256, 128) at 30",
    () => {
      for (const k of [29, 30]) {
        const ours = new PixelClassifier(40, k, { device: DEVICE });
        const shapes = Object.fromEntries([...ours.stateDict()].map(([key, v]) => [key, [...v.shape]]));
        const theirs = ref[`layout ${k}`] as unknown as Record<string, number[]>;
        assert.deepEqual(Object.keys(shapes).sort(), Object.keys(theirs).sort());
        for (const key of Object.keys(theirs)) assert.deepEqual(shapes[key], theirs[key], `${k} classes: ${key}`);
        const [h1, h2] = k >= 30 ? [256, 128] : [128, 32];
        assert.deepEqual(shapes["layers.0.weight"], [h1, 40]);
        assert.deepEqual(shapes["layers.3.weight"], [h2, h1]);
        assert.deepEqual(shapes["layers.6.weight"], [k, h2]);
      }
    },
  );

  await t.step("Linear weights ~ N(0, 0.02), biases 0; batch norms start at the identity", () => {
    const c = new PixelClassifier(512, 34, { device: DEVICE }); // 256×512 + 128×256 + 34×128 weights
    for (const i of [0, 3, 6]) {
      const w = c.stateDict().get(`layers.${i}.weight`)!;
      const n = w.numel, mean = noGrad(() => w.mean().item()), std = noGrad(() => w.std().item());
      // Sampling error of the std is 0.02/sqrt(2n) (<= 2.5e-4 for the smallest layer, n = 4352):
      // 5% of 0.02 is 4+ standard errors. The mean's is 0.02/sqrt(n) <= 3e-4.
      assert.ok(Math.abs(std - 0.02) < 0.001, `layers.${i}.weight std ${std} (n = ${n})`);
      assert.ok(Math.abs(mean) < 5 * 0.02 / Math.sqrt(n), `layers.${i}.weight mean ${mean}`);
      const b = c.stateDict().get(`layers.${i}.bias`)!;
      assert.ok((b.toArray() as Float32Array).every((v) => v === 0), `layers.${i}.bias is not all zero`);
    }
    for (const i of [2, 5]) {
      const sd = c.stateDict();
      assert.ok((sd.get(`layers.${i}.weight`)!.toArray() as Float32Array).every((v) => v === 1));
      assert.ok((sd.get(`layers.${i}.bias`)!.toArray() as Float32Array).every((v) => v === 0));
      assert.ok((sd.get(`layers.${i}.running_mean`)!.toArray() as Float32Array).every((v) => v === 0));
      assert.ok((sd.get(`layers.${i}.running_var`)!.toArray() as Float32Array).every((v) => v === 1));
    }
  });

  const py = ref.forward as Record<string, RefValue>;
  // The same libtorch kernels on both sides: differences are float32 rounding in three layers.
  const REL = DEVICE === "cpu" ? 1e-5 : 1e-3;
  await t.step("train mode: outputs, updated running statistics and every gradient equal PyTorch's", () => {
    clf.train();
    for (const p of clf.parameters()) p.zeroGrad(true);
    const out = clf.forward(clfX);
    assertScaled(out, py.train, REL, "train-mode logits");
    crossEntropy(out, clfY).backward();
    const grads = py.grads as Record<string, RefValue>;
    for (const [k, p] of clf.namedParameters()) assertScaled(p.grad!, grads[k], 10 * REL, `gradient of ${k}`);
    const stats = py.stats as Record<string, RefValue>;
    for (const [k, v] of clf.stateDict()) {
      if (k.includes("running")) assertScaled(v, stats[k], REL, k);
      if (k.endsWith("num_batches_tracked")) assert.equal(Number(v.item()), 4, k); // 3 + this batch
    }
  });

  await t.step("eval mode: the running statistics normalise, outputs equal PyTorch's", () => {
    clf.eval();
    const out = noGrad(() => clf.forward(clfX));
    assertScaled(out, py.eval, REL, "eval-mode logits");
    // Eval mode must not move the statistics.
    const before = clf.bn[0].runningMean.clone();
    noGrad(() => clf.forward(clfX));
    assertIdentical(clf.bn[0].runningMean, before, "running mean after an eval-mode forward");
  });
});

Deno.test("BatchNorm1d(momentum = null) is nn.BatchNorm1d(momentum=None)'s cumulative average", () => {
  const bn = new BatchNorm1d(rootBuilder({ device: DEVICE }), 6, null);
  bn.train();
  const py = ref.batchnorm as { outs: RefValue[]; stats: [RefValue, RefValue, number][] };
  bnBatches.forEach((b, i) => {
    const out = noGrad(() => bn.forward(b));
    assertScaled(out, py.outs[i], 1e-5, `output of batch ${i}`);
    assertScaled(bn.runningMean, py.stats[i][0], 1e-5, `running mean after batch ${i}`);
    assertScaled(bn.runningVar, py.stats[i][1], 1e-5, `running var after batch ${i}`);
    assert.equal(Number(bn.numBatchesTracked.item()), py.stats[i][2]);
  });
  // By hand: each batch weighs 1/3 whatever its size (10, 3 and 7 rows), with unbiased variances.
  const means = bnBatches.map((b) => b.mean(0)),
    vars = bnBatches.map((b, i) => b.sub(means[i]).square().sum(0).div(b.size(0) - 1));
  assertScaled(bn.runningMean, means[0].add(means[1]).add(means[2]).div(3), 1e-5, "mean of the batch means");
  assertScaled(bn.runningVar, vars[0].add(vars[1]).add(vars[2]).div(3), 1e-5, "mean of the batch variances");
  // resetRunningStats forgets everything: the next batch alone sets the statistics (weight 1/1).
  bn.resetRunningStats();
  assert.equal(Number(bn.numBatchesTracked.item()), 0);
  noGrad(() => bn.forward(bnBatches[2]));
  assertScaled(bn.runningMean, means[2], 1e-6, "mean after a reset and one batch");
  assertScaled(bn.runningVar, vars[2], 1e-5, "var after a reset and one batch");
});

Deno.test("trainHead: the final batch-norm statistics are the recalibration batches' exact statistics", () => {
  manualSeed(7);
  const model = randomUNet();
  // One labelled image exactly one crop in size, batch 1, DDPM features with a fixed noise image:
  // every crop (training and recalibration) is the same image, and its features are deterministic,
  // so the recalibrated statistics must equal that one batch's activation statistics.
  const [tile] = generateSynthetic({ count: 1, size: 32, seed: 3 });
  const data: Labelled[] = [{ name: "tile", image: tile.image, label: tile.mask.data }];
  const noise = randn([1, 3, 32, 32], { device: DEVICE });
  const features: FeatureOptions = { method: "ddpm", blocks: [1, 2], timesteps: [50, 150], l2Normalize: true, noise };
  const training: HeadTrainingOptions = {
    classes: 2,
    crop: 32,
    batch: 1,
    lr: 1e-3,
    minEpochs: 3,
    maxEpochs: 3,
    patience: 10,
    seed: 0,
    features,
    device: DEVICE,
  };
  const { classifier, report } = trainHead(model, data, training, 0);
  assert.equal(report.epochs, 3);
  assert.equal(report.steps, 3); // one step per epoch: ceil(1 image / batch 1)
  assert.equal(classifier.training, false, "the head comes back in eval mode");
  for (const bn of classifier.bn) {
    assert.equal(bn.momentum, 0.1, "the training momentum is restored");
    // Reset before recalibrating, then max(steps per epoch, 4) = 4 batches.
    assert.equal(Number(bn.numBatchesTracked.item()), 4);
  }

  noGrad(() =>
    tidy(() => {
      const { images } = sampleCrops(data, new Rng(0), 1, 32, DEVICE);
      const f = decoderFeatures(model, images, features);
      const rows = f.permute(0, 2, 3, 1).reshape(-1, f.size(1)); // [1024, D]
      const n = rows.size(0);
      const stats = (h: FloatTensor) => {
        const mean = h.mean(0), centred = h.sub(mean);
        return { mean, unbiased: centred.square().sum(0).div(n - 1), biased: centred.square().mean(0) };
      };
      // Layer by layer as in train mode: batch statistics normalise, the running ones record them.
      const h1 = classifier.fc[0].forward(rows).relu(), s1 = stats(h1);
      const bn0 = classifier.bn[0];
      const z1 = h1.sub(s1.mean).div(s1.biased.add(bn0.eps).sqrt()).mul(bn0.weight).add(bn0.bias);
      const h2 = classifier.fc[1].forward(z1).relu(), s2 = stats(h2);
      // Four identical batches averaged with weights 1, 1/2, 1/3, 1/4: the value itself up to rounding.
      assertScaled(bn0.runningMean, s1.mean, 1e-5, "layers.2.running_mean");
      assertScaled(bn0.runningVar, s1.unbiased, 1e-4, "layers.2.running_var");
      assertScaled(classifier.bn[1].runningMean, s2.mean, 1e-4, "layers.5.running_mean");
      assertScaled(classifier.bn[1].runningVar, s2.unbiased, 1e-4, "layers.5.running_var");
      // What recalibration is for: L2-normalised features give activations whose variance is far
      // below the initial running variance of 1 that few momentum-0.1 steps would leave behind.
      assert.ok(s1.unbiased.amax().item() < 0.01, `layer-1 variance ${s1.unbiased.amax().item()}`);
    })
  );
});

// ---------------------------------------------------------------------------------------------------
// Sliding window

Deno.test("windowStarts: every stride, the last window flush with the end", async (t) => {
  await t.step("hand cases", () => {
    // 1000 with windows of 256 every 204: 0, 204, 408, 612 (612 + 256 = 868 < 1000), then 744 = 1000 − 256.
    assert.deepEqual(windowStarts(1000, 256, 204), [0, 204, 408, 612, 744]);
    assert.deepEqual(windowStarts(256, 256, 204), [0]); // exactly one window
    assert.deepEqual(windowStarts(100, 256, 204), [0]); // smaller than a window (padded by slidingWindow)
    assert.deepEqual(windowStarts(257, 256, 204), [0, 1]);
    assert.deepEqual(windowStarts(460, 256, 204), [0, 204]); // 204 + 256 = 460: no duplicate last window
    assert.deepEqual(windowStarts(461, 256, 204), [0, 204, 205]);
    assert.deepEqual(windowStarts(52, 32, 25), [0, 20]);
  });
  await t.step("every size from 1 to 700: sorted, gaps <= stride, the image covered exactly", () => {
    for (const [win, stride] of [[256, 204], [64, 51], [32, 25], [16, 16]]) {
      for (let size = 1; size <= 700; size++) {
        const s = windowStarts(size, win, stride);
        assert.equal(s[0], 0);
        if (size <= win) {
          assert.deepEqual(s, [0]);
          continue;
        }
        assert.equal(s.at(-1)! + win, size, `${size}/${win}/${stride}: the last window ends at the edge`);
        for (let i = 1; i < s.length; i++) {
          assert.ok(s[i] > s[i - 1] && s[i] - s[i - 1] <= stride, `${size}/${win}/${stride}: ${s}`);
        }
        // No more windows than needed: all but the last start every `stride`.
        assert.equal(s.length, Math.ceil((size - win) / stride) + 1, `${size}/${win}/${stride}: ${s}`);
      }
    }
  });
});

Deno.test("gaussianMap: centred, symmetric, maximum 1, sigma = 0.125 · window", () => {
  for (const w of [65, 64]) {
    const g = Array.from(gaussianMap(w).toArray() as Float32Array);
    const at = (y: number, x: number) => g[y * w + x];
    const max = Math.max(...g), c = (w - 1) / 2, sigma = 0.125 * w;
    for (let y = 0; y < w; y++) {
      for (let x = 0; x < w; x++) {
        // Mirror images across both axes and the diagonal are bitwise equal.
        assert.equal(at(y, x), at(w - 1 - y, x));
        assert.equal(at(y, x), at(y, w - 1 - x));
        assert.equal(at(y, x), at(x, y));
      }
    }
    if (w % 2) {
      assert.equal(at(c, c), 1); // an odd window has a centre pixel, the maximum: exactly 1
      assert.equal(max, 1);
      // 8 pixels right of the centre: exp(−8² / (2σ²)).
      assert.ok(Math.abs(at(c, c + 8) - Math.exp(-64 / (2 * sigma * sigma))) < 1e-7);
    } else {
      // An even window's centre falls between the four middle pixels; they share the maximum.
      const mid = [at(31, 31), at(31, 32), at(32, 31), at(32, 32)];
      assert.ok(mid.every((v) => v === max));
      assert.ok(Math.abs(max - Math.exp(-0.5 / (2 * sigma * sigma))) < 1e-7);
    }
  }
});

/** An image tensor [1, C, H, W] with distinct pixel values. */
const picture = (c: number, h: number, w: number) => rand([1, c, h, w], { device: DEVICE }).mul(2).sub(1);

Deno.test("slidingWindow: blending normalises, small images are padded and cropped back, batching is invisible", async (t) => {
  manualSeed(99);
  const identity = (win: FloatTensor) => [win];

  await t.step("an identity predictor (logits = the window's pixels) reproduces the image", () => {
    for (const [h, w, window, overlap] of [[100, 130, 32, 0.2], [64, 64, 64, 0.2], [97, 61, 16, 0.5]]) {
      const img = picture(3, h, w);
      const [out] = slidingWindow(img, identity, { window, overlap });
      assert.deepEqual(out.shape, [1, 3, h, w]);
      // Σ g·x / Σ g = x up to float32 rounding of the weighted sums.
      assertScaled(out, img, 1e-6, `${h}×${w}, window ${window}`);
    }
  });

  await t.step("overlaps are blended with the Gaussian weights", () => {
    // 32×52 with window 32, stride 25: windows at x = 0 and x = 20. The image holds x in every pixel;
    // the predictor answers its window's top-left value (its x origin) everywhere. Where the windows
    // overlap (x in 20..31) the output is (g(y, x)·0 + g(y, x − 20)·20) / (g(y, x) + g(y, x − 20)).
    const xs = tensor(Float32Array.from({ length: 32 * 52 }, (_, i) => i % 52), { shape: [1, 1, 32, 52] })
      .to(DEVICE);
    const [out] = slidingWindow(xs, (win) => [win.narrow(2, 0, 1).narrow(3, 0, 1).expand(-1, -1, 32, 32)], {
      window: 32,
      overlap: 0.2,
    });
    const o = out.toArray() as Float32Array, g = gaussianMap(32).toArray() as Float32Array;
    for (const y of [0, 7, 16]) {
      for (let x = 0; x < 52; x++) {
        const a = x < 32 ? g[y * 32 + x] : 0, b = x >= 20 ? g[y * 32 + x - 20] : 0;
        const expected = (a * 0 + b * 20) / (a + b);
        assert.ok(Math.abs(o[y * 52 + x] - expected) < 1e-5, `(${y}, ${x}): ${o[y * 52 + x]} vs ${expected}`);
      }
    }
  });

  await t.step("images smaller than the window (50×70, 20×30 with window 64) are padded and cropped back", () => {
    for (const [h, w] of [[50, 70], [20, 30], [64, 20]]) {
      const img = picture(3, h, w);
      const seen: number[][] = [];
      const [out] = slidingWindow(img, (win) => {
        seen.push([...win.shape]);
        return [win];
      }, { window: 64 });
      // The predictor always gets full windows; the output has the image's size and values.
      assert.ok(seen.every((s) => s[2] === 64 && s[3] === 64), `windows ${JSON.stringify(seen)}`);
      assert.deepEqual(out.shape, [1, 3, h, w]);
      assertScaled(out, img, 1e-6, `${h}×${w}`);
    }
  });

  await t.step("batch 1 and batch 8 give the same results, for every head", () => {
    const img = picture(3, 90, 75);
    /** Runs the window with `batch` windows per call, recording the calls' sizes. */
    const blend = (predict: (w: FloatTensor) => FloatTensor[], batch: number) => {
      const calls: number[] = [];
      const out = slidingWindow(img, (w) => {
        calls.push(w.size(0));
        return predict(w);
      }, { window: 32, batch });
      return { out, calls };
    };
    // Two heads of a per-pixel predictor: elementwise kernels give each window the same values in
    // any batch, and windows are accumulated in the same order, so the blends are bitwise equal.
    const pointwise = (w: FloatTensor) => [w.mul(2).tanh(), w.square().narrow(1, 0, 2)];
    const one = blend(pointwise, 1), eight = blend(pointwise, 8);
    // 90 and 75 with window 32, stride 25: 4 × 3 = 12 windows, in calls of 8 + 4.
    assert.equal(one.calls.length, 12);
    assert.deepEqual(eight.calls, [8, 4]);
    assert.equal(one.out.length, 2);
    one.out.forEach((l, i) => assertIdentical(eight.out[i], l, `pointwise head ${i}`));
    // A predictor that mixes neighbouring pixels (3×3 convolution, tanh): a batched convolution
    // rounds differently from single ones (measured 1.4e-6 of the output's scale on the CPU).
    const weight = randn([4, 3, 3, 3], { device: DEVICE });
    const conv = (w: FloatTensor) => {
      const y = F.conv2d(w, weight, null, { padding: 1 }).tanh();
      return [y, y.narrow(1, 0, 2).mul(-1)];
    };
    const c1 = blend(conv, 1).out, c8 = blend(conv, 8).out;
    c1.forEach((l, i) => assertScaled(c8[i], l, 1e-5, `convolution head ${i}`));
  });

  await t.step("an overlap outside [0, 1) is refused", () => {
    for (const overlap of [1, -0.1, NaN]) {
      assert.throws(() => slidingWindow(picture(3, 40, 40), identity, { window: 32, overlap }), RangeError);
    }
  });
});

// ---------------------------------------------------------------------------------------------------

/** An RGB image of random colours (8-bit, as datasets load them). */
function randomImage(w: number, h: number, rng: Rng): Image {
  return { width: w, height: h, channels: 3, data: Uint8Array.from({ length: w * h * 3 }, () => rng.int(256)) };
}

Deno.test("predictHeads: windows evaluated in batches give the maps of windows one at a time", () => {
  manualSeed(11);
  const model = randomUNet();
  const noise = randn([1, 3, 32, 32], { device: DEVICE });
  // DDPM features with a fixed noise image are deterministic, so batching is the only difference.
  const features: Omit<FeatureOptions, "generator"> = { method: "ddpm", blocks: [1, 2], timesteps: [50], noise };
  const heads = [new PixelClassifier(96, 3, { device: DEVICE }), new PixelClassifier(96, 2, { device: DEVICE })];
  // Random batch-norm statistics and biases, so the heads' maps are not one class.
  noGrad(() =>
    heads.forEach((h) => {
      h.bn.forEach((b) => b.runningVar.fill_(1e-4));
      h.fc[2].bias!.copy_(randn(h.fc[2].bias!.shape, { device: DEVICE }).mul(0.1));
      h.eval();
    })
  );
  const image = randomImage(64, 56, new Rng(1));
  const run = (batch: number) =>
    predictHeads(model, heads, image, {
      features,
      device: DEVICE,
      seed: 0,
      sliding: { window: 32, overlap: 0.5, batch },
    });
  const single = run(1), batched = run(8);
  assert.equal(single.length, 2);
  for (let h = 0; h < 2; h++) {
    assert.equal(single[h].length, 64 * 56);
    assert.ok(new Set(single[h]).size > 1, `head ${h} predicts one class only: the comparison would be empty`);
    // Batched and single convolutions may round differently, which can flip a pixel whose two best
    // logits tie to ~1e-6; a window's pixels mixed up with another's would change most of them.
    const differ = single[h].filter((v, i) => v !== batched[h][i]).length;
    assert.ok(differ <= 0.001 * single[h].length, `head ${h}: ${differ} pixels differ between batch 1 and 8`);
  }
});

// ---------------------------------------------------------------------------------------------------

Deno.test("the supervised baseline trains: its loss falls from ln 2 on a tiny nuclei task", () => {
  const tiles = generateSynthetic({ count: 2, size: 64, seed: 5 });
  const data: Labelled[] = tiles.map((s, i) => ({ name: `t${i}`, image: s.image, label: s.mask.data }));
  const base = {
    unet: TINY,
    classes: 2,
    crop: 32,
    batch: 4,
    lr: 2e-3,
    loss: "ce" as const,
    seed: 0,
    device: DEVICE,
  };
  // The UNet's output convolution starts at zero: uniform logits, cross-entropy exactly ln 2 at the
  // first step (the reported loss is the last step's, before its update).
  const first = trainBaseline(data, { ...base, steps: 1 });
  assert.ok(Math.abs(first.finalLoss - Math.LN2) < 1e-6, `first loss ${first.finalLoss}`);
  // Synthetic nuclei are easy: seeds 0..2 ended at 0.026-0.044 of ln 2 after 40 steps.
  const trained = trainBaseline(data, { ...base, steps: 40 });
  assert.ok(trained.finalLoss < 0.25 * Math.LN2, `after 40 steps the loss is ${trained.finalLoss}`);
  // It segments: on its own training tiles it beats predicting nuclei everywhere by a wide margin
  // (measured Dice 0.98-0.99 against 0.39-0.46).
  for (const ex of data) {
    const pred = predictBaseline(trained.model, ex.image, { device: DEVICE, sliding: { window: 32 } });
    const d = dice(pred, ex.label), everywhere = dice(new Uint8Array(pred.length).fill(1), ex.label);
    assert.ok(d > everywhere + 0.3, `${ex.name}: Dice ${d}, all-nuclei Dice ${everywhere}`);
  }
  // The Dice + CE variant trains too: it starts above ln 2 (CE at ln 2 plus 1 − soft Dice) and ended
  // at 0.03-0.06 for seeds 0..2.
  const both = trainBaseline(data, { ...base, steps: 40, loss: "dice+ce" });
  assert.ok(both.finalLoss < 0.25 * Math.LN2, `dice+ce loss after 40 steps ${both.finalLoss}`);
});
