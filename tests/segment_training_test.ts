// Training a segmentation model as the MoNuSeg experiment does: early stopping (Plateau), the
// dihedral augmentation of crops against numpy's rot90/fliplr, held-out rows, the supervised UNet's
// early stopping (train loss and held-out loss, best weights kept), pixel heads trained together on
// any feature source, class maps resized before the argmax against PyTorch, and the error overlays.
import assert from "node:assert/strict";
import { manualSeed, noGrad, randn, tidy } from "../mod.ts";
import { Rng } from "../src/data/rng.ts";
import { generateSynthetic } from "../src/data/synthetic.ts";
import { crossEntropy } from "../src/functional.ts";
import { full } from "../src/create.ts";
import { ERROR_COLOURS, errorMap, overlayPanels } from "../src/report/error_overlay.ts";
import { holdOutRows, trainBaseline } from "../src/segment/baseline.ts";
import { PixelClassifier } from "../src/segment/classifier.ts";
import { rgbPixelFeatures } from "../src/segment/features.ts";
import {
  classMap,
  cropTensors,
  dihedralMap,
  type Labelled,
  predictHeadsWith,
  sampleCrops,
  trainHeadGroup,
} from "../src/segment/heads.ts";
import { dice } from "../src/segment/metrics.ts";
import { Plateau } from "../src/segment/plateau.ts";
import { assertClose, DEVICE, refTensor, torchRef } from "./helpers/torch_ref.ts";

const TINY = {
  imageSize: 32,
  modelChannels: 32,
  channelMult: [1, 2],
  attentionResolutions: [16],
  numResBlocks: 1,
  numHeadChannels: 32,
};

const tiles = (count: number, size: number, seed: number): Labelled[] =>
  generateSynthetic({ count, size, seed }).map((s, i) => ({ name: `t${i}`, image: s.image, label: s.mask.data }));

// Logits for the resize-then-argmax check, and PyTorch's answer.
manualSeed(3);
const logits = randn([1, 3, 5, 7]).to(DEVICE);
const ref = await torchRef({
  resized: {
    inputs: { x: logits },
    code: "F.interpolate(x, size=(9, 13), mode='bilinear', align_corners=False).argmax(1).to(torch.uint8)",
  },
  plain: { inputs: { x: logits }, code: "x.argmax(1).to(torch.uint8)" },
});

Deno.test("Plateau: new bests, patience, minimum checks, NaN and minDelta", () => {
  const p = new Plateau({ patience: 2 });
  assert.deepEqual([5, 4, 4].map((v) => p.update(v)), [true, true, false]);
  assert.equal(p.stop, false, "one check without improvement is below the patience");
  p.update(4.5);
  assert.equal(p.stop, true);
  assert.equal(p.best, 4);
  assert.equal(p.bestCheck, 2);

  const slow = new Plateau({ patience: 1, minChecks: 4 });
  for (const v of [1, 2, 3]) slow.update(v);
  assert.equal(slow.stop, false, "3 checks are fewer than minChecks");
  slow.update(3);
  assert.equal(slow.stop, true);

  const nan = new Plateau({ patience: 2 });
  nan.update(NaN);
  nan.update(NaN);
  assert.equal(nan.stop, true, "a diverged value never counts as an improvement");

  const delta = new Plateau({ patience: 1, minDelta: 0.1 });
  assert.equal(delta.update(1), true);
  assert.equal(delta.update(0.95), false, "an improvement by less than minDelta");
  assert.equal(delta.stop, true);
  assert.throws(() => new Plateau({ patience: 0 }), RangeError);
});

Deno.test("dihedralMap: the 8 transforms are numpy's rot90(fliplr(a) if k & 4 else a, k & 3)", () => {
  // np.arange(9).reshape(3, 3) under each k, flattened (computed with numpy).
  const expected = [
    [0, 1, 2, 3, 4, 5, 6, 7, 8],
    [2, 5, 8, 1, 4, 7, 0, 3, 6],
    [8, 7, 6, 5, 4, 3, 2, 1, 0],
    [6, 3, 0, 7, 4, 1, 8, 5, 2],
    [2, 1, 0, 5, 4, 3, 8, 7, 6],
    [0, 3, 6, 1, 4, 7, 2, 5, 8],
    [6, 7, 8, 3, 4, 5, 0, 1, 2],
    [8, 5, 2, 7, 4, 1, 6, 3, 0],
  ];
  for (let k = 0; k < 8; k++) {
    const t = dihedralMap(k, 3), out: number[] = [];
    for (let y = 0; y < 3; y++) {
      for (let x = 0; x < 3; x++) out.push((t.oy + t.yx * x + t.yy * y) * 3 + t.ox + t.xx * x + t.xy * y);
    }
    assert.deepEqual(out, expected[k], `k = ${k}`);
  }
  assert.throws(() => dihedralMap(8, 3), RangeError);
});

Deno.test("sampleCrops: augmentation turns image and label alike; without it the crops are unchanged", () => {
  // A 20×16 image whose red channel is its pixel index mod 251 and whose label is a checkerboard of 3×3 cells.
  const w = 20, h = 16, crop = 6;
  const data = new Uint8Array(w * h * 3), label = new Uint8Array(w * h);
  for (let p = 0; p < w * h; p++) {
    data[p * 3] = p % 251;
    label[p] = (Math.floor(p % w / 3) + Math.floor(p / w / 3)) % 2;
  }
  const ex: Labelled = { name: "grid", image: { width: w, height: h, channels: 3, data }, label };
  const red = (v: number) => Math.round((v + 1) * 127.5);
  for (const augment of [false, true]) {
    const { images, labels } = sampleCrops([ex], new Rng(11), 12, crop, "cpu", { augment });
    const px = images.toArray() as Float32Array, lab = labels.toArray() as BigInt64Array;
    // The same draws, replayed: image index, corner, then (with augmentation) the transform.
    const rng = new Rng(11);
    const seen = new Set<number>();
    for (let b = 0; b < 12; b++) {
      rng.int(1);
      const x0 = rng.int(w - crop + 1), y0 = rng.int(h - crop + 1), k = augment ? rng.int(8) : 0;
      seen.add(k);
      // The source of each output pixel, from numpy's definitions: fliplr, then k & 3 quarter turns.
      for (let y = 0; y < crop; y++) {
        for (let x = 0; x < crop; x++) {
          let [sy, sx] = [y, x];
          for (let r = 0; r < (k & 3); r++) [sy, sx] = [sx, crop - 1 - sy]; // one rot90: out[i][j] = in[j][n-1-i]
          if (k & 4) sx = crop - 1 - sx;
          const src = (y0 + sy) * w + x0 + sx, dst = b * crop * crop + y * crop + x;
          assert.equal(red(px[b * 3 * crop * crop + y * crop + x]), src % 251, `crop ${b} (k ${k}) pixel ${x},${y}`);
          assert.equal(Number(lab[dst]), label[src], `crop ${b} (k ${k}) label ${x},${y}`);
        }
      }
    }
    if (augment) assert.ok(seen.size >= 5, `12 crops drew only the transforms ${[...seen]}`);
    images.dispose();
    labels.dispose();
  }
});

Deno.test("holdOutRows: the bottom rows are held out, at least a crop high, and nothing is lost", () => {
  const [a] = tiles(1, 64, 1);
  const { train, heldOut } = holdOutRows([a], 0.2, 16);
  assert.equal(heldOut[0].image.height, 16, "round(0.2 × 64) = 13 rows, raised to one crop");
  assert.equal(train[0].image.height, 48);
  assert.deepEqual(
    [...train[0].label, ...heldOut[0].label],
    [...a.label],
    "the two parts are the image's rows in order",
  );
  assert.deepEqual(heldOut[0].image.data, a.image.data.slice(48 * 64 * 3));
  assert.throws(() => holdOutRows([a], 0.5, 40), /too small/);
});

Deno.test("the supervised UNet: augmentation trains, early stopping follows its checks, held-out keeps the best", async (t) => {
  const data = tiles(2, 64, 5);
  const base = { unet: TINY, classes: 2, crop: 32, batch: 4, lr: 2e-3, loss: "ce" as const, seed: 0, device: DEVICE };

  await t.step("train-loss monitoring: stops exactly where its own checks say", () => {
    const r = trainBaseline(data, {
      ...base,
      steps: 200,
      augment: true,
      earlyStopping: { monitor: "train-loss", every: 5, patience: 2, minSteps: 10 },
    });
    const replay = new Plateau({ patience: 2, minChecks: 2 });
    let stopAt = -1;
    r.history.forEach((c, i) => {
      replay.update(c.trainLoss);
      if (stopAt < 0 && replay.stop) stopAt = i;
    });
    if (r.stoppedBy === "plateau") assert.equal(r.steps, r.history[stopAt].step);
    else assert.equal(stopAt, -1, "the run went on past a check that said stop");
    assert.equal(r.history.length, r.steps / 5);
    // Synthetic nuclei are easy: with flips and turns the loss still falls well below ln 2.
    assert.ok(r.history.at(-1)!.trainLoss < 0.5 * Math.LN2, `last checked loss ${r.history.at(-1)!.trainLoss}`);
  });

  await t.step("held-out monitoring: the returned weights are the best check's", () => {
    const r = trainBaseline(data, {
      ...base,
      steps: 30,
      earlyStopping: { monitor: "held-out", every: 3, patience: 100, heldOutFraction: 0.5 },
    });
    assert.equal(r.stoppedBy, "steps");
    const losses = r.history.map((c) => c.heldOutLoss!);
    const best = losses.indexOf(Math.min(...losses));
    assert.equal(r.bestStep, r.history[best].step);
    // Recompute the held-out loss of the returned model on the same tiling (32 rows of 64: 2 windows each).
    const { heldOut } = holdOutRows(data, 0.5, 32);
    const specs = heldOut.flatMap((example) => [0, 32].map((x0) => ({ example, x0, y0: 0, transform: 0 })));
    const loss = noGrad(() =>
      tidy(() => {
        const { images, labels } = cropTensors(specs, 32, DEVICE);
        const out = r.model.forward(images, full([specs.length], 0, { dtype: "int64", device: DEVICE })).output!;
        return crossEntropy(out.permute(0, 2, 3, 1).reshape(-1, 2), labels, { ignoreIndex: 255 }).item();
      })
    );
    assert.ok(
      Math.abs(loss - losses[best]) < 1e-4,
      `returned model's held-out loss ${loss}, best check ${losses[best]}`,
    );
  });
});

Deno.test("trainHeadGroup: seeded heads, early stopping per head, a pixel share, and predictions", async (t) => {
  const data = tiles(3, 64, 7);
  const source = rgbPixelFeatures();
  const opts = {
    classes: 2,
    crop: 32,
    batch: 4,
    lr: 1e-2,
    minEpochs: 3,
    maxEpochs: 40,
    patience: 3,
    heads: 2,
    seed: 4,
    device: DEVICE,
  };

  await t.step("with lr 0, each head keeps the initial weights its seed gives", () => {
    const r = trainHeadGroup(source, data, { ...opts, lr: 0, maxEpochs: 2 });
    r.classifiers.forEach((c, h) => {
      manualSeed(4 * 1009 + h);
      const fresh = new PixelClassifier(3, 2, { device: DEVICE });
      for (const [k, v] of fresh.namedParameters()) {
        assertClose(
          c.stateDict().get(k)!,
          { dtype: "float32", shape: [...v.shape], data: v.toArray() as Float32Array },
          {
            rtol: 0,
            atol: 0,
          },
          `head ${h} ${k}`,
        );
      }
    });
    assert.notDeepEqual(
      r.classifiers[0].fc[0].weight.toArray(),
      r.classifiers[1].fc[0].weight.toArray(),
      "the two heads start apart",
    );
  });

  await t.step("each head stops where its own epoch losses say; the heads segment the nuclei", () => {
    const losses: (number | null)[][] = [];
    const r = trainHeadGroup(source, data, opts, (_, l) => losses.push(l));
    assert.equal(r.stepsPerEpoch, 1, "3 images, 4 crops a step: one step an epoch");
    r.reports.forEach((rep, h) => {
      const mine = losses.map((l) => l[h]).filter((x): x is number => x !== null);
      const replay = new Plateau({ patience: 3, minChecks: 3 });
      let stop = mine.length;
      for (const [i, v] of mine.entries()) {
        replay.update(v);
        if (replay.stop) {
          stop = i + 1;
          break;
        }
      }
      assert.equal(rep.epochs, stop, `head ${h}`);
      assert.equal(mine.length, rep.epochs, `head ${h} reported no loss after stopping`);
      assert.equal(rep.steps, rep.epochs);
    });
    // Colour alone separates synthetic nuclei well: far above predicting nuclei everywhere.
    const preds = predictHeadsWith(source, r.classifiers, data[0].image, {
      device: DEVICE,
      seed: 0,
      sliding: { window: 32, overlap: 0.2 },
    });
    const everywhere = dice(new Uint8Array(data[0].label.length).fill(1), data[0].label);
    for (const p of preds) assert.ok(dice(p, data[0].label) > everywhere + 0.2, `Dice ${dice(p, data[0].label)}`);
  });

  await t.step("a quarter of the pixels still trains, and outputSize returns full-size maps", () => {
    const r = trainHeadGroup(source, data, { ...opts, heads: 1, pixelFraction: 0.25 });
    assert.ok(r.reports[0].finalLoss < 0.6 * Math.LN2, `final loss ${r.reports[0].finalLoss}`);
    const [p] = predictHeadsWith(source, r.classifiers, data[0].image, {
      device: DEVICE,
      seed: 0,
      sliding: { window: 32 },
      outputSize: [128, 128],
    });
    assert.equal(p.length, 128 * 128);
    assert.throws(() => trainHeadGroup(source, data, { ...opts, pixelFraction: 0 }), RangeError);
  });
});

Deno.test("classMap: logits resized bilinearly (align_corners false) before the argmax, as PyTorch", () => {
  const resized = classMap(logits, [13, 9]);
  assert.deepEqual([...resized], [...refTensor(ref.resized).data]);
  assert.deepEqual([...classMap(logits)], [...refTensor(ref.plain).data]);
});

Deno.test("error overlays: colours by agreement, and the region with the image's share of nuclei", () => {
  const m = errorMap(Uint8Array.of(1, 1, 0, 0), Uint8Array.of(1, 0, 1, 0), 2, 2);
  const px = (i: number) => [...m.data.subarray(i * 3, i * 3 + 3)];
  assert.deepEqual(
    [px(0), px(1), px(2), px(3)],
    [ERROR_COLOURS.found, ERROR_COLOURS.falseAlarm, ERROR_COLOURS.missed, ERROR_COLOURS.background].map((c) => [...c]),
  );
  // A 40×40 image, nuclei filling its left half: the whole image is 50% foreground, and of the
  // candidate 20² regions (corners at 5, 10, 15) those at x0 = 10 straddle the border at 50%.
  const w = 40, truth = new Uint8Array(w * w);
  for (let y = 0; y < w; y++) for (let x = 0; x < 20; x++) truth[y * w + x] = 1;
  const image = { width: w, height: w, channels: 3 as const, data: new Uint8Array(w * w * 3).map((_, i) => i % 256) };
  const panels = overlayPanels(image, truth, { same: truth }, 20);
  assert.equal(panels.x0, 10);
  assert.equal(panels.y0, 5, "the first of the equally good rows");
  assert.deepEqual([...panels.predictions.same], [...panels.truth]);
  assert.equal(panels.truth.reduce((s, v) => s + v, 0), 200);
  assert.equal(panels.image.data[0], image.data[(5 * w + 10) * 3]);
  assert.throws(() => overlayPanels(image, truth, { short: new Uint8Array(5) }, 20), /short/);
});
