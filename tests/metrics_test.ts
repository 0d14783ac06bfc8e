// Segmentation metrics (src/segment/metrics.ts): hand-computed cases worked out in the comments, then
// independent Python oracles run in one process (tests/helpers/torch_ref.py): sklearn's f1_score /
// jaccard_score / confusion_matrix, scipy.ndimage.label, a literal numpy transcription of the official
// MoNuSeg AJI (Kumar et al. 2017, Aggregated_Jaccard_Index_v1_0.m), ddpm-segmentation's compute_iou and
// numpy's std. All metric values are ratios of integer pixel counts computed in float64 on both sides,
// so comparisons are exact unless a comment says why not.
import assert from "node:assert/strict";
import { type Tensor, tensor } from "../mod.ts";
import { Rng } from "../src/data/rng.ts";
import {
  ajiBinary,
  ajiInstance,
  ajiInstanceDetail,
  confusion,
  connectedComponents,
  dice,
  glasIoUFromDice,
  iou,
  type LabelMap,
  MeanIoU,
  meanStd,
} from "../src/segment/metrics.ts";
import { type RefCase, refTensor, type RefValue, torchRef } from "./helpers/torch_ref.ts";

// ---------------------------------------------------------------------------------------------------
// Helpers

/** Parses a picture: one string per row; '.' is 0, other characters map through `ids` (default digits). */
function grid(rows: string[], ids: Record<string, number> = {}): { map: Int32Array; w: number; h: number } {
  const h = rows.length, w = rows[0].length;
  const map = new Int32Array(w * h);
  rows.forEach((r, y) => {
    assert.equal(r.length, w, "ragged grid");
    for (let x = 0; x < w; x++) {
      const ch = r[x];
      map[y * w + x] = ch === "." ? 0 : ids[ch] ?? Number(ch);
    }
  });
  return { map, w, h };
}

const u8 = (a: ArrayLike<number>) => Uint8Array.from(a);

/** Random binary mask with foreground probability `p`. */
function randomMask(rng: Rng, n: number, p: number): Uint8Array {
  const m = new Uint8Array(n);
  for (let i = 0; i < n; i++) m[i] = rng.next() < p ? 1 : 0;
  return m;
}

/** Random blobs: uniform noise, box-blurred (radius r), thresholded at `level` (lower → bigger blobs). */
function blobs(rng: Rng, w: number, h: number, r: number, level: number): Uint8Array {
  const noise = new Float64Array(w * h).map(() => rng.next());
  const out = new Uint8Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let s = 0, n = 0;
      for (let dy = -r; dy <= r; dy++) {
        for (let dx = -r; dx <= r; dx++) {
          const yy = y + dy, xx = x + dx;
          if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
          s += noise[yy * w + xx];
          n++;
        }
      }
      out[y * w + x] = s / n > level ? 1 : 0;
    }
  }
  return out;
}

/** Paints a filled ellipse with id `id` (overwriting what is there). */
function paintEllipse(map: LabelMap, w: number, h: number, cx: number, cy: number, rx: number, ry: number, id: number) {
  for (let y = Math.max(0, Math.floor(cy - ry)); y <= Math.min(h - 1, Math.ceil(cy + ry)); y++) {
    for (let x = Math.max(0, Math.floor(cx - rx)); x <= Math.min(w - 1, Math.ceil(cx + rx)); x++) {
      if (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1) map[y * w + x] = id;
    }
  }
}

/**
 * A random GT instance map of `n` nuclei (ellipses, later ones occluding earlier ones) and a prediction
 * that perturbs it the ways segmenters fail: shifted/resized nuclei, dropped nuclei (missed GT), nuclei
 * split into two ids, neighbours merged under one id, and extra false positives. Ids are drawn sparsely
 * from [1, maxId] so nothing relies on contiguous ids.
 */
function instancePair(rng: Rng, w: number, h: number, n: number, rMin: number, rMax: number, maxId = 60000) {
  const gt = new Int32Array(w * h), pred = new Int32Array(w * h);
  const ids = new Set<number>();
  const freshId = () => {
    let id;
    do id = 1 + rng.int(maxId); while (ids.has(id));
    ids.add(id);
    return id;
  };
  let prevPredId = 0;
  for (let k = 0; k < n; k++) {
    const cx = rng.uniform(0, w), cy = rng.uniform(0, h);
    const rx = rng.uniform(rMin, rMax), ry = rng.uniform(rMin, rMax);
    paintEllipse(gt, w, h, cx, cy, rx, ry, freshId());
    const u = rng.next();
    const px = cx + rng.uniform(-0.3, 0.3) * rx, py = cy + rng.uniform(-0.3, 0.3) * ry;
    const prx = rx * rng.uniform(0.7, 1.3), pry = ry * rng.uniform(0.7, 1.3);
    if (u < 0.1) continue; // missed
    if (u < 0.2) { // split into a left and a right half
      const a = freshId(), b = freshId();
      paintEllipse(pred, w, h, px, py, prx, pry, a);
      for (let y = 0; y < h; y++) {
        for (let x = Math.ceil(px); x < w; x++) if (pred[y * w + x] === a) pred[y * w + x] = b;
      }
      prevPredId = b;
      continue;
    }
    // Merged with the previous prediction's id when that exists (a far-apart merge is still a merge).
    const id = u < 0.3 && prevPredId !== 0 ? prevPredId : freshId();
    paintEllipse(pred, w, h, px, py, prx, pry, id);
    prevPredId = id;
  }
  for (let k = 0; k < Math.max(1, n / 10); k++) { // false positives
    paintEllipse(
      pred,
      w,
      h,
      rng.uniform(0, w),
      rng.uniform(0, h),
      rng.uniform(rMin, rMax),
      rng.uniform(rMin, rMax),
      freshId(),
    );
  }
  return { gt, pred };
}

/** True when two label maps define the same partition (same background, labels equal up to a bijection). */
function samePartition(a: Int32Array, b: Int32Array): string | null {
  if (a.length !== b.length) return `lengths ${a.length} vs ${b.length}`;
  const ab = new Map<number, number>(), ba = new Map<number, number>();
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = b[i];
    if ((x === 0) !== (y === 0)) return `pixel ${i}: background in one map only (${x} vs ${y})`;
    if (x === 0) continue;
    if ((ab.get(x) ?? y) !== y) return `pixel ${i}: label ${x} maps to both ${ab.get(x)} and ${y}`;
    if ((ba.get(y) ?? x) !== x) return `pixel ${i}: reference label ${y} maps to both ${ba.get(y)} and ${x}`;
    ab.set(x, y);
    ba.set(y, x);
  }
  return null;
}

function num(v: RefValue | undefined, what: string): number {
  if (v !== null && typeof v === "object" && "error" in v) {
    throw new Error(`${what}: ${(v as Record<string, RefValue>).error}`);
  }
  if (typeof v !== "number" && v !== null) throw new Error(`${what}: not a number: ${JSON.stringify(v)}`);
  return v === null ? NaN : v; // None (e.g. 0/0 in a reference) arrives as null
}

function nums(v: RefValue | undefined, what: string): number[] {
  if (v !== null && typeof v === "object" && "error" in v) {
    throw new Error(`${what}: ${(v as Record<string, RefValue>).error}`);
  }
  if (!Array.isArray(v)) throw new Error(`${what}: not a list: ${JSON.stringify(v)}`);
  return v.map((x, i) => num(x, `${what}[${i}]`));
}

// ---------------------------------------------------------------------------------------------------
// Python oracles, all in one batch (one process).

const tensors: Tensor[] = [];
const t2 = (a: LabelMap, h: number, w: number): Tensor => {
  const t = tensor(a instanceof Int32Array ? a : Int32Array.from(a), { shape: [h, w] });
  tensors.push(t);
  return t;
};
const cases: Record<string, RefCase> = {};

// Binary masks for sklearn: random at several densities, structured (rectangles), and the degenerate
// cases (both empty, one empty, both full), which is where zero_division matters.
const binaryCases: { name: string; pred: Uint8Array; target: Uint8Array; h: number; w: number }[] = [];
{
  const rng = new Rng(11);
  const [h, w] = [37, 53];
  for (const p of [0.02, 0.3, 0.5, 0.9]) {
    binaryCases.push({
      name: `random p=${p}`,
      pred: randomMask(rng, h * w, p),
      target: randomMask(rng, h * w, p),
      h,
      w,
    });
  }
  const rect = (x0: number, y0: number, x1: number, y1: number) => {
    const m = new Uint8Array(h * w);
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) m[y * w + x] = 1;
    return m;
  };
  binaryCases.push({ name: "overlapping rectangles", pred: rect(3, 4, 30, 20), target: rect(10, 8, 40, 33), h, w });
  binaryCases.push({ name: "disjoint rectangles", pred: rect(0, 0, 5, 5), target: rect(20, 20, 30, 30), h, w });
  binaryCases.push({ name: "nested rectangles", pred: rect(5, 5, 25, 25), target: rect(10, 10, 20, 20), h, w });
  binaryCases.push({ name: "blobs", pred: blobs(rng, w, h, 3, 0.52), target: blobs(rng, w, h, 3, 0.5), h, w });
  binaryCases.push({ name: "both empty", pred: new Uint8Array(h * w), target: new Uint8Array(h * w), h, w });
  binaryCases.push({ name: "empty prediction", pred: new Uint8Array(h * w), target: rect(1, 1, 4, 4), h, w });
  binaryCases.push({ name: "empty target", pred: rect(1, 1, 4, 4), target: new Uint8Array(h * w), h, w });
  binaryCases.push({
    name: "both full",
    pred: new Uint8Array(h * w).fill(1),
    target: new Uint8Array(h * w).fill(1),
    h,
    w,
  });
}
for (const c of binaryCases) {
  cases[`sklearn ${c.name}`] = {
    inputs: { p: t2(c.pred, c.h, c.w), t: t2(c.target, c.h, c.w) },
    code: `
import warnings
from sklearn.metrics import f1_score, jaccard_score
yp, yt = p.numpy().ravel(), t.numpy().ravel()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # zero_division warnings for the empty cases
    result = [float(f1_score(yt, yp, zero_division=1)), float(jaccard_score(yt, yp, zero_division=1)),
              float(f1_score(yt, yp, zero_division=0)), float(jaccard_score(yt, yp, zero_division=0))]`,
  };
}

// Multi-class confusion against sklearn's confusion_matrix (with an ignored value masked out first).
const confusionCase = (() => {
  const rng = new Rng(12);
  const n = 2000, classes = 6;
  const pred = new Uint8Array(n), target = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    target[i] = rng.next() < 0.1 ? 255 : rng.int(classes - 1); // class 5 never in the target
    pred[i] = rng.next() < 0.7 && target[i] !== 255 ? target[i] : rng.int(classes);
  }
  return { pred, target, classes };
})();
cases["confusion_matrix"] = {
  inputs: { p: t2(confusionCase.pred, 40, 50), t: t2(confusionCase.target, 40, 50) },
  code: `
from sklearn.metrics import confusion_matrix
yp, yt = p.numpy().ravel(), t.numpy().ravel()
keep = yt != 255
m = confusion_matrix(yt[keep], yp[keep], labels=list(range(${confusionCase.classes})))  # rows: true, cols: pred
d = np.diag(m)
result = [d.tolist(), (m.sum(0) - d).tolist(), (m.sum(1) - d).tolist()]`,
};

// Connected components against scipy.ndimage.label: 4-connectivity is scipy's default cross structure,
// 8-connectivity the full 3×3 structure.
const ccCases: { name: string; mask: Uint8Array; w: number; h: number }[] = [];
{
  const rng = new Rng(13);
  ccCases.push({ name: "blobs 64x48 small", mask: blobs(rng, 64, 48, 1, 0.55), w: 64, h: 48 });
  ccCases.push({ name: "blobs 64x48 large", mask: blobs(rng, 64, 48, 3, 0.5), w: 64, h: 48 });
  ccCases.push({ name: "blobs 101x67", mask: blobs(rng, 101, 67, 2, 0.52), w: 101, h: 67 });
  // Dense noise: many diagonal-only contacts, where 4- and 8-connectivity differ most.
  ccCases.push({ name: "noise p=0.45", mask: randomMask(rng, 40 * 40, 0.45), w: 40, h: 40 });
  ccCases.push({ name: "noise p=0.6", mask: randomMask(rng, 33 * 29, 0.6), w: 33, h: 29 });
  ccCases.push({ name: "single row", mask: randomMask(rng, 50, 0.5), w: 50, h: 1 });
  ccCases.push({ name: "single column", mask: randomMask(rng, 50, 0.5), w: 1, h: 50 });
  ccCases.push({ name: "full", mask: new Uint8Array(12 * 7).fill(1), w: 12, h: 7 });
  ccCases.push({ name: "empty", mask: new Uint8Array(12 * 7), w: 12, h: 7 });
}
for (const c of ccCases) {
  cases[`label ${c.name}`] = {
    inputs: { m: t2(c.mask, c.h, c.w) },
    code: `
from scipy import ndimage
a = m.numpy() != 0
l4, n4 = ndimage.label(a)
l8, n8 = ndimage.label(a, structure=np.ones((3, 3), dtype=int))
result = [torch.from_numpy(l4.astype(np.int32)), int(n4), torch.from_numpy(l8.astype(np.int32)), int(n8)]`,
  };
}

// The official AJI, transcribed literally from Aggregated_Jaccard_Index_v1_0.m into numpy: for each GT
// nucleus, among the predictions it overlaps take the first (ascending id) with strictly greatest IoU;
// add its intersection to C and its union to U; count the match; GTs overlapping nothing add their area to U;
// predictions never matched add their area to U. Deliberately the slow O(instances × pixels) form.
const PY_AJI = `
def official_aji(gt_map, predicted_map):
    gt_list = [int(v) for v in np.unique(gt_map) if v != 0]
    pr_list = [int(v) for v in np.unique(predicted_map) if v != 0]
    used = {v: 0 for v in pr_list}
    C = 0
    U = 0
    for g in gt_list:
        gt = gt_map == g
        predicted_match = np.unique(predicted_map[gt])
        predicted_match = predicted_match[predicted_match != 0]
        if len(predicted_match) == 0:
            U += int(gt.sum())
            continue
        JI = 0.0
        best = None
        for s in predicted_match:
            matched = predicted_map == s
            nJI = np.logical_and(gt, matched).sum() / np.logical_or(gt, matched).sum()
            if nJI > JI:
                best, JI = int(s), nJI
        pn = predicted_map == best
        C += int(np.logical_and(gt, pn).sum())
        U += int(np.logical_or(gt, pn).sum())
        used[best] += 1
    for s in pr_list:
        if used[s] == 0:
            U += int((predicted_map == s).sum())
    return [C, U, (C / U) if U else None]
`;
const ajiCases: { name: string; pred: LabelMap; gt: LabelMap; w: number; h: number }[] = [];
{
  const rng = new Rng(14);
  for (let k = 0; k < 8; k++) {
    const [w, h] = [64 + 8 * k, 48];
    const { gt, pred } = instancePair(rng, w, h, 6 + 3 * k, 3, 9);
    ajiCases.push({ name: `random ${k}`, pred, gt, w, h });
  }
  // Uint16Array ids (the MoNuSeg instance-map type), crowded so nuclei touch and occlude.
  const { gt, pred } = instancePair(rng, 80, 60, 60, 3, 7, 65535);
  ajiCases.push({ name: "uint16 crowded", pred: Uint16Array.from(pred), gt: Uint16Array.from(gt), w: 80, h: 60 });
  // Tie: G (id 1, 3 px) overlaps A (1 px, inside G: IoU 1/3) and B (2 px inside G + 3 outside: IoU 2/(3+5-2)
  // = 1/3). The official loop keeps the smaller id. A chosen: C = 1, U = 3 + |B| = 8 → 1/8. B chosen:
  // C = 2, U = 6 + |A| = 7 → 2/7. Both id orders are tested, so the tie-break is pinned down.
  for (const [a, b, name] of [[5, 9, "tie, smaller id is A"], [9, 5, "tie, smaller id is B"]] as const) {
    const g = grid(["111...."]);
    const p = grid(["abbbbb."], { a, b });
    ajiCases.push({ name, pred: p.map, gt: g.map, w: g.w, h: g.h });
  }
  const g = instancePair(new Rng(15), 30, 20, 5, 3, 5).gt;
  ajiCases.push({ name: "empty prediction", pred: new Int32Array(600), gt: g, w: 30, h: 20 });
  ajiCases.push({ name: "empty GT", pred: g, gt: new Int32Array(600), w: 30, h: 20 });
  ajiCases.push({ name: "both empty", pred: new Int32Array(600), gt: new Int32Array(600), w: 30, h: 20 });
  ajiCases.push({ name: "identical", pred: g, gt: g, w: 30, h: 20 });
}
for (const c of ajiCases) {
  cases[`aji ${c.name}`] = {
    inputs: { p: t2(c.pred, c.h, c.w), g: t2(c.gt, c.h, c.w) },
    code: PY_AJI + "result = official_aji(g.numpy(), p.numpy())",
  };
}

// Performance-sized case: 1000×1000 with 500 GT nuclei (MoNuSeg scale), also checked against the literal
// official code (slow in Python, a few seconds, but it is the reference).
const big = instancePair(new Rng(16), 1000, 1000, 500, 6, 16);
cases["aji 1000x1000"] = {
  inputs: { p: t2(big.pred, 1000, 1000), g: t2(big.gt, 1000, 1000) },
  code: PY_AJI + "result = official_aji(g.numpy(), p.numpy())",
};

// mIoU: ddpm-segmentation's compute_iou (src/pixel_classifier.py), as written there, on images without
// ignored pixels; and the same loop with ignored pixels masked out for the case that has some.
const PY_MIOU = `
from collections import Counter
def compute_iou(preds, gts, number_class, ignore_label=255, mask_ignored=False):
    ids = range(number_class)
    unions = Counter()
    intersections = Counter()
    for pred, gt in zip(preds, gts):
        valid = (gt != ignore_label) if mask_ignored else np.ones_like(gt, dtype=bool)
        for target_num in ids:
            if target_num == ignore_label:
                continue
            preds_tmp = ((pred == target_num) & valid).astype(int)
            gts_tmp = ((gt == target_num) & valid).astype(int)
            unions[target_num] += (preds_tmp | gts_tmp).sum()
            intersections[target_num] += (preds_tmp & gts_tmp).sum()
    ious = [intersections[c] / (1e-8 + unions[c]) for c in ids if c != ignore_label]
    present = [intersections[c] / unions[c] for c in ids if unions[c] > 0]
    return [float(np.mean(ious)), [float(x) for x in ious], float(np.mean(present))]
`;
const miouCases: { name: string; preds: Uint8Array[]; gts: Uint8Array[]; classes: number; h: number; w: number }[] = [];
{
  const rng = new Rng(17);
  const [h, w, classes] = [32, 40, 8];
  for (const withIgnore of [false, true]) {
    const preds: Uint8Array[] = [], gts: Uint8Array[] = [];
    for (let k = 0; k < 5; k++) {
      // Classes 0..5 appear in the GT (image-dependent subsets); class 6 only in predictions; class 7 nowhere.
      const gt = new Uint8Array(h * w), pred = new Uint8Array(h * w);
      for (let i = 0; i < h * w; i++) {
        gt[i] = withIgnore && rng.next() < 0.05 ? 255 : rng.int(3 + (k % 4));
        const r = rng.next();
        pred[i] = r < 0.6 && gt[i] !== 255 ? gt[i] : r < 0.65 ? 6 : rng.int(6);
      }
      preds.push(pred);
      gts.push(gt);
    }
    miouCases.push({ name: withIgnore ? "with ignored pixels" : "ddpm-segmentation data", preds, gts, classes, h, w });
  }
}
for (const c of miouCases) {
  const stack = (xs: Uint8Array[]) => {
    const all = new Int32Array(xs.length * c.h * c.w);
    xs.forEach((x, k) => all.set(x, k * c.h * c.w));
    const t = tensor(all, { shape: [xs.length, c.h, c.w] });
    tensors.push(t);
    return t;
  };
  cases[`miou ${c.name}`] = {
    inputs: { p: stack(c.preds), g: stack(c.gts) },
    code: PY_MIOU +
      `result = compute_iou(p.numpy(), g.numpy(), ${c.classes}, mask_ignored=${
        c.name === "with ignored pixels" ? "True" : "False"
      })`,
  };
}

const stdValues = [91.95, 90.45, 89.71, 85.93, 91.6, 90.3, 88.56, 53.46, 81.01, 80.31];
cases["std"] = {
  code: `v = np.array(${JSON.stringify(stdValues)}, dtype=np.float64)
result = [float(v.mean()), float(v.std(ddof=1)), float(v.std()), float(torch.tensor(v).std())]`,
};

const t0 = performance.now();
// Every value here is an oracle of its own (sklearn, SciPy, numpy): Debian's Python.
const ref = await torchRef(cases, 1, { oracle: true });
console.log(`metrics_test: Python oracles took ${((performance.now() - t0) / 1000).toFixed(1)} s`);
for (const t of tensors) t.dispose();

// ---------------------------------------------------------------------------------------------------
// Hand-computed cases

Deno.test("dice and iou by hand", () => {
  // pred          target
  // 1 1 0         1 0 0
  // 1 0 0         1 1 0
  // 0 0 0         0 0 0
  // TP = 2 ((0,0), (1,0)), FP = 1 ((0,1)), FN = 1 ((1,1)): Dice = 4/6 = 2/3, IoU = 2/4 = 1/2.
  const p = u8([1, 1, 0, 1, 0, 0, 0, 0, 0]), t = u8([1, 0, 0, 1, 1, 0, 0, 0, 0]);
  assert.equal(dice(p, t), 2 / 3);
  assert.equal(iou(p, t), 0.5);
  // Per image, IoU = D / (2 − D): (2/3) / (4/3) = 1/2 (up to rounding of 2/3: 1 ulp).
  assert.ok(Math.abs(glasIoUFromDice(dice(p, t)) - iou(p, t)) <= 1e-15);
  // Empty-vs-empty is 1 (documented convention); one side empty is 0.
  const z = new Uint8Array(9);
  assert.equal(dice(z, z), 1);
  assert.equal(iou(z, z), 1);
  assert.equal(dice(z, t), 0);
  assert.equal(iou(p, z), 0);
  // Other array types hold the same masks.
  assert.equal(dice(Int32Array.from(p), Uint16Array.from(t)), 2 / 3);
});

Deno.test("binary metrics reject non-binary values and size mismatches", () => {
  assert.throws(() => dice(u8([0, 255]), u8([0, 1])), /binary masks hold 0 or 1.*prediction 255/);
  assert.throws(() => iou(u8([0, 1]), u8([2, 1])), /target 2 at pixel 0/);
  assert.throws(() => iou(Int32Array.from([-1]), Int32Array.from([0])), /binary masks/);
  assert.throws(() => dice(u8([0, 1]), u8([0])), /2 pixels, target 1/);
});

Deno.test("glasIoUFromDice against the paper's GlaS Dice/IoU pairs", () => {
  // The paper's Table 1 gives mean Dice and IoU over 10 runs, to 2 decimals. glasIoUFromDice(mean Dice)
  // is not exactly the published IoU: D / (2 − D) is convex, so the mean over runs of each run's IoU is
  // ≥ the map of the mean Dice (Jensen), with a gap that grows with the spread across runs. The table
  // fits that: every published IoU is at least glasIoUFromDice(Dice) − 0.005 (rounding of both numbers),
  // within 0.11 points for the stable rows and 0.76 for the supervised UNet on 8 labels (53.46 → 36.48 vs
  // 37.24, the high-variance row). Bounds: [−0.006, 0.12] and [−0.006, 0.8] for that row.
  const rows: [number, number, number][] = [
    [91.95, 85.13, 0.12],
    [90.45, 82.56, 0.12],
    [89.71, 81.35, 0.12],
    [85.93, 75.44, 0.12],
    [91.6, 84.51, 0.12],
    [90.3, 82.32, 0.12],
    [88.56, 79.47, 0.12],
    [53.46, 37.24, 0.8],
  ];
  for (const [d, published, maxGap] of rows) {
    const gap = published - 100 * glasIoUFromDice(d / 100);
    assert.ok(gap >= -0.006 && gap <= maxGap, `Dice ${d}: published IoU ${published} − mapped ${published - gap}`);
  }
  assert.equal(glasIoUFromDice(1), 1);
  assert.equal(glasIoUFromDice(0), 0);
  assert.throws(() => glasIoUFromDice(91.95), /fraction in \[0, 1\]/); // a percentage by mistake
});

Deno.test("confusion by hand, with an ignored pixel", () => {
  // i:      0  1  2  3    4  5
  // pred:   0  1  2  2    1  0
  // target: 0  1  1  255  2  0   (pixel 3 ignored, whatever was predicted)
  // TP: class 0 at 0 and 5, class 1 at 1. Pixel 2: pred 2 / target 1 → FP[2], FN[1]. Pixel 4: pred 1 /
  // target 2 → FP[1], FN[2].
  const c = confusion(u8([0, 1, 2, 2, 1, 0]), u8([0, 1, 1, 255, 2, 0]), 3);
  assert.deepEqual([...c.tp], [2, 1, 0]);
  assert.deepEqual([...c.fp], [0, 1, 1]);
  assert.deepEqual([...c.fn], [0, 1, 1]);
  assert.equal(c.pixels, 5);
  assert.throws(() => confusion(u8([3]), u8([0]), 3), /prediction value 3/);
  assert.throws(() => confusion(u8([0]), u8([7]), 3), /target value 7/);
  // With another ignore value, 255 is an ordinary (out-of-range) value again.
  assert.throws(() => confusion(u8([0]), u8([255]), 3, 9), /target value 255/);
});

Deno.test("instance AJI by hand: split, merged, missed and false-positive nuclei", () => {
  // GT (ids 1-4)       prediction (a=10, b=11, c=20, d=30)
  // 1111..44           aabbb...
  // 1111..44           aabbb...
  // ........           ........
  // 22.33...           ccccc..d
  // 22.33...           ccccc..d
  // ........           ........
  // G1 (8 px) is split into a (4 px, all in G1: IoU 4/8 = 0.5) and b (6 px, 4 in G1: IoU 4/10 = 0.4):
  //   best a → C += 4, U += |G1 ∪ a| = 8; b is nobody's best → U += 6.
  // G2 and G3 (4 px each) are merged in c (10 px): each pairs with c at IoU 4/10 → C += 4 + 4,
  //   U += 10 + 10 (c's pixels enter U once per GT it is the best match of, as in the official code).
  // G4 (4 px) overlaps nothing (missed) → U += 4. d (2 px) is a false positive → U += 2.
  // C = 12, U = 8 + 6 + 20 + 4 + 2 = 40, AJI = 0.3.
  const g = grid(["1111..44", "1111..44", "........", "22.33...", "22.33...", "........"]);
  const p = grid(["aabbb...", "aabbb...", "........", "ccccc..d", "ccccc..d", "........"], {
    a: 10,
    b: 11,
    c: 20,
    d: 30,
  });
  const d = ajiInstanceDetail(p.map, g.map);
  assert.deepEqual(d, {
    aji: 0.3,
    intersection: 12,
    union: 40,
    gtCount: 4,
    predCount: 4,
    gtUnmatched: 1,
    predUnused: 2,
  });
  assert.equal(ajiInstance(Uint16Array.from(p.map), Uint16Array.from(g.map)), 0.3);
  // The authors' binary "AJI" on the same images: GT foreground 20 px, predicted 22 px, overlap
  // 8 (G1) + 8 (G2, G3) = 16 → IoU 16 / (20 + 22 − 16) = 16/26; Dice 32/42.
  const bin = (m: Int32Array) => u8(Array.from(m, (v) => (v ? 1 : 0)));
  assert.equal(ajiBinary(bin(p.map), bin(g.map)), 16 / 26);
  assert.equal(dice(bin(p.map), bin(g.map)), 32 / 42);
});

Deno.test("instance AJI: degenerate cases and bad input", () => {
  const g = grid(["11.22"]).map;
  assert.equal(ajiInstance(g, g), 1); // identical
  assert.equal(ajiInstance(new Int32Array(5), g), 0); // C = 0, U = 4
  assert.equal(ajiInstance(g, new Int32Array(5)), 0);
  assert.equal(ajiInstance(new Int32Array(5), new Int32Array(5)), 1); // documented: nothing vs nothing
  // Relabelling instances does not change AJI (no tie here).
  const p = grid(["1222."]).map;
  assert.equal(ajiInstance(p, g), ajiInstance(p.map((v) => (v ? 100 - v : 0)), g.map((v) => (v ? 7 * v : 0))));
  assert.throws(() => ajiInstance(Int32Array.from([-3]), Int32Array.from([1])), /negative instance id -3/);
  assert.throws(() => ajiInstance(new Int32Array(2), new Int32Array(3)), /2 pixels, target 3/);
});

Deno.test("connected components by hand", () => {
  // 1 . 1      8-connectivity: one component (diagonals touch the centre);
  // . 1 .      4-connectivity: five single pixels, numbered in raster order.
  // 1 . 1
  const x = grid(["1.1", ".1.", "1.1"]);
  assert.equal(connectedComponents(x.map, 3, 3, 8).count, 1);
  const c4 = connectedComponents(x.map, 3, 3, 4);
  assert.equal(c4.count, 5);
  assert.deepEqual([...c4.labels], [1, 0, 2, 0, 3, 0, 4, 0, 5]);
  // A "U" needs a union of two provisional labels (the arms meet only on the last row); the "W" chains
  // three. Labels are 1..n in raster order of first pixels.
  const w = grid(["1.1.1", "1.1.1", "11111", ".....", "1...."]);
  const cw = connectedComponents(w.map, 5, 5, 4);
  assert.equal(cw.count, 2);
  assert.deepEqual([...cw.labels].slice(0, 5), [1, 0, 1, 0, 1]);
  assert.equal(cw.labels[20], 2);
  // Any non-zero value is foreground.
  assert.equal(connectedComponents(Uint16Array.from([0, 7, 7, 0, 300]), 5, 1, 4).count, 2);
  assert.equal(connectedComponents(new Uint8Array(0), 0, 0).count, 0);
  assert.throws(() => connectedComponents(new Uint8Array(5), 2, 2), /5 pixels, 2×2 needs 4/);
  assert.throws(() => connectedComponents(new Uint8Array(4), 2, 2, 6 as 4), /connectivity must be 4 or 8/);
});

Deno.test("MeanIoU by hand: dataset-level sums, absent classes", () => {
  // 3 classes. Image 1: pred 0 0 1 1 / target 0 1 1 1 → class 0: I 1, U 2; class 1: I 2, U 3.
  //            Image 2: pred 0 0 / target 0 0 → class 0: I 2, U 2.
  // Summed: class 0: 3/4, class 1: 2/3, class 2: U = 0.
  // absent "zero" (ddpm-segmentation): (3/4 + 2/3 + 0) / 3; "skip": (3/4 + 2/3) / 2.
  // (Averaging per image would give class 0 (1/2 + 1)/2 = 3/4 by chance; class 1 only exists in image 1.)
  for (const [absent, expected] of [["zero", (3 / 4 + 2 / 3) / 3], ["skip", (3 / 4 + 2 / 3) / 2]] as const) {
    const m = new MeanIoU(3, { absent });
    m.update(u8([0, 0, 1, 1]), u8([0, 1, 1, 1]));
    m.update(u8([0, 0]), u8([0, 0]));
    assert.equal(m.images, 2);
    assert.deepEqual([...m.intersections], [3, 2, 0]);
    assert.deepEqual([...m.unions], [4, 3, 0]);
    assert.ok(Math.abs(m.mean() - expected) < 1e-15);
    const pc = m.perClass();
    assert.deepEqual([pc[0], pc[1]], [3 / 4, 2 / 3]);
    assert.ok(Number.isNaN(pc[2]));
    m.reset();
    assert.ok(Number.isNaN(m.mean()) === (absent === "skip"));
  }
});

Deno.test("meanStd: sample std by default, population on request", () => {
  // [1, 2, 3, 4]: mean 2.5, squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5 → sample var 5/3, population 5/4.
  assert.deepEqual(meanStd([1, 2, 3, 4]), { mean: 2.5, std: Math.sqrt(5 / 3), n: 4 });
  assert.deepEqual(meanStd([1, 2, 3, 4], { population: true }), { mean: 2.5, std: Math.sqrt(5 / 4), n: 4 });
  assert.ok(Number.isNaN(meanStd([3]).std));
  assert.equal(meanStd([3], { population: true }).std, 0);
  assert.ok(Number.isNaN(meanStd([]).mean));
});

// ---------------------------------------------------------------------------------------------------
// Against the Python oracles

Deno.test("dice/iou equal sklearn f1_score/jaccard_score (zero_division=1)", async (t) => {
  for (const c of binaryCases) {
    await t.step(c.name, () => {
      const [f1, jac, f1z, jacz] = nums(ref[`sklearn ${c.name}`], c.name);
      // Same integer counts on both sides; sklearn computes precision/recall first, so its F1 can differ
      // in the last bits: 1e-12 relative.
      assert.ok(
        Math.abs(dice(c.pred, c.target) - f1) <= 1e-12 * Math.max(1, f1),
        `dice ${dice(c.pred, c.target)} vs ${f1}`,
      );
      assert.ok(Math.abs(iou(c.pred, c.target) - jac) <= 1e-12, `iou ${iou(c.pred, c.target)} vs ${jac}`);
      assert.equal(ajiBinary(c.pred, c.target), iou(c.pred, c.target));
      // The convention only shows when both masks are empty: sklearn's zero_division=0 then gives 0.
      const bothEmpty = c.pred.every((v) => v === 0) && c.target.every((v) => v === 0);
      assert.equal(bothEmpty, f1z !== f1, "zero_division matters exactly for empty-vs-empty");
      assert.equal(bothEmpty, jacz !== jac);
    });
  }
});

Deno.test("confusion equals sklearn confusion_matrix", () => {
  const [tp, fp, fn] = (ref["confusion_matrix"] as RefValue[]).map((v, i) => nums(v, `confusion ${i}`));
  const c = confusion(confusionCase.pred, confusionCase.target, confusionCase.classes);
  assert.deepEqual([...c.tp], tp);
  assert.deepEqual([...c.fp], fp);
  assert.deepEqual([...c.fn], fn);
});

Deno.test("connectedComponents partitions like scipy.ndimage.label", async (t) => {
  for (const c of ccCases) {
    await t.step(c.name, () => {
      const r = ref[`label ${c.name}`] as RefValue[];
      if (!Array.isArray(r)) throw new Error(JSON.stringify(r));
      for (const [conn, labels, count] of [[4, r[0], r[1]], [8, r[2], r[3]]] as const) {
        const ours = connectedComponents(c.mask, c.w, c.h, conn);
        const theirs = refTensor(labels).data as Int32Array;
        assert.equal(ours.count, num(count, "count"), `${conn}-connectivity count`);
        const why = samePartition(ours.labels, theirs);
        assert.equal(why, null, `${conn}-connectivity: ${why}`);
        // Our numbering is raster order of first pixels: label k first appears after label k−1.
        let seen = 0;
        for (const l of ours.labels) if (l > seen) assert.equal(l, ++seen);
      }
    });
  }
});

Deno.test("ajiInstance equals the official AJI code", async (t) => {
  for (const c of ajiCases) {
    await t.step(c.name, () => {
      const r = ref[`aji ${c.name}`];
      if (!Array.isArray(r)) throw new Error(JSON.stringify(r));
      const [C, U] = [num(r[0], "C"), num(r[1], "U")];
      const d = ajiInstanceDetail(c.pred, c.gt);
      assert.equal(d.intersection, C);
      assert.equal(d.union, U);
      // Python returns None for 0/0 (MATLAB would give NaN); we return 1 by convention.
      assert.equal(d.aji, U === 0 ? 1 : C / U);
    });
  }
  // The tie cases differ, so the tie-break is really exercised (1/8 vs 2/7, worked out where they are built).
  assert.equal(
    ajiInstance(ajiCases.find((c) => c.name === "tie, smaller id is A")!.pred, grid(["111...."]).map),
    1 / 8,
  );
  assert.equal(
    ajiInstance(ajiCases.find((c) => c.name === "tie, smaller id is B")!.pred, grid(["111...."]).map),
    2 / 7,
  );
});

Deno.test("1000×1000 with 500 nuclei: instance AJI, components, binary metrics complete (no timing assertion)", () => {
  const n = 1000 * 1000;
  const binPred = new Uint8Array(n), binGt = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    binPred[i] = big.pred[i] ? 1 : 0;
    binGt[i] = big.gt[i] ? 1 : 0;
  }
  let t0 = performance.now();
  const d = ajiInstanceDetail(big.pred, big.gt);
  const tAji = performance.now() - t0;
  t0 = performance.now();
  const cc = connectedComponents(binPred, 1000, 1000, 8);
  const tCc = performance.now() - t0;
  t0 = performance.now();
  const dc = dice(binPred, binGt);
  const tDice = performance.now() - t0;
  const ajiCc = ajiInstance(cc.labels, big.gt); // the binary-prediction → instances route
  console.log(
    `  ${d.gtCount} GT / ${d.predCount} predicted instances: ajiInstance ${tAji.toFixed(0)} ms, ` +
      `connectedComponents ${tCc.toFixed(0)} ms (${cc.count} components), dice ${tDice.toFixed(0)} ms; ` +
      `AJI ${d.aji.toFixed(4)}, AJI of components ${ajiCc.toFixed(4)}, Dice ${dc.toFixed(4)}, binary AJI ${
        ajiBinary(binPred, binGt).toFixed(4)
      }`,
  );
  const r = ref["aji 1000x1000"] as RefValue[];
  assert.equal(d.intersection, num(r[0], "C"));
  assert.equal(d.union, num(r[1], "U"));
  assert.ok(d.gtCount > 400 && d.aji > 0 && d.aji < 1);
});

Deno.test("MeanIoU equals ddpm-segmentation's compute_iou", async (t) => {
  for (const c of miouCases) {
    await t.step(c.name, () => {
      const r = ref[`miou ${c.name}`] as RefValue[];
      if (!Array.isArray(r)) throw new Error(JSON.stringify(r));
      const [mean, perClass, presentMean] = [num(r[0], "mean"), nums(r[1], "per class"), num(r[2], "present mean")];
      const m = new MeanIoU(c.classes), skip = new MeanIoU(c.classes, { absent: "skip" });
      c.preds.forEach((p, k) => {
        m.update(p, c.gts[k]);
        skip.update(p, c.gts[k]);
      });
      // compute_iou divides by (1e-8 + U); we divide by U: |I/U − I/(U + 1e-8)| ≤ 1e-8 / U ≤ 1e-8.
      assert.ok(Math.abs(m.mean() - mean) <= 1e-8, `${m.mean()} vs ${mean}`);
      const ours = m.perClass();
      perClass.forEach((v, k) => {
        if (m.unions[k] === 0) assert.ok(Number.isNaN(ours[k]) && v === 0, `class ${k}: U = 0 gives ${v} there`);
        else assert.ok(Math.abs(ours[k] - v) <= 1e-8, `class ${k}: ${ours[k]} vs ${v}`);
      });
      assert.ok(m.unions[7] === 0 && m.unions[6] > 0, "class 7 absent everywhere, class 6 only predicted");
      assert.ok(Math.abs(skip.mean() - presentMean) <= 1e-15);
    });
  }
});

Deno.test("meanStd equals numpy (ddof=1 and 0) and torch.std", () => {
  const [mean, sample, population, torchStd] = nums(ref["std"], "std");
  const s = meanStd(stdValues), p = meanStd(stdValues, { population: true });
  // Two-pass sums on both sides but different summation orders (numpy's pairwise): 1e-12 relative.
  for (const [a, b] of [[s.mean, mean], [s.std, sample], [p.std, population], [s.std, torchStd]]) {
    assert.ok(Math.abs(a - b) <= 1e-12 * Math.abs(b), `${a} vs ${b}`);
  }
});
