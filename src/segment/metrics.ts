// Segmentation metrics on host label maps (H×W row-major typed arrays), in plain TypeScript,
// following the paper's Appendix A.2 (Dice and IoU as UCTransNet, AJI as the MoNuSeg challenge,
// mIoU as ddpm-segmentation). Every function is linear in the pixel count (plus a term in the
// number of overlapping GT/prediction pairs for instance AJI), so 1000×1000 MoNuSeg tiles with ~500
// nuclei are cheap.
//
// Conventions (each documented where it applies):
// - Binary masks hold 0 (background) or 1 (foreground); any other value throws, which catches 0/255 PNG
//   masks and unmapped ignore values early instead of silently counting them.
// - Empty-vs-empty: `dice`/`iou`/`ajiBinary` return 1 when neither mask has foreground (nothing to find,
//   nothing found), which is sklearn's f1_score/jaccard_score with zero_division=1. sklearn's default
//   (zero_division="warn") gives 0 there instead.
// - Instance maps: 0 is background, every other non-negative integer is one instance; ids need not be
//   contiguous.

/** A label map: class ids, binary mask values or instance ids, one per pixel. */
export type LabelMap = Uint8Array | Uint16Array | Int32Array;

function checkSameSize(a: LabelMap, b: LabelMap, what: string): void {
  if (a.length !== b.length) throw new RangeError(`${what}: prediction has ${a.length} pixels, target ${b.length}`);
}

/** Per-class pixel counts from `confusion`. */
export interface Confusion {
  /** Pixels of class c in both prediction and target. */
  tp: Float64Array;
  /** Pixels predicted c whose target is another (non-ignored) class. */
  fp: Float64Array;
  /** Pixels of target class c predicted as another class. */
  fn: Float64Array;
  /** Pixels counted (target != ignore). */
  pixels: number;
}

/**
 * Per-class TP/FP/FN over one image (or any pair of equally long maps). Pixels whose target equals
 * `ignore` are skipped entirely (they count for no class, whatever was predicted there). Other target
 * values and all prediction values must lie in [0, classes); anything else throws.
 */
export function confusion(pred: LabelMap, target: LabelMap, classes: number, ignore = 255): Confusion {
  checkSameSize(pred, target, "confusion");
  if (!Number.isInteger(classes) || classes < 1) throw new RangeError(`confusion: classes must be ≥ 1, got ${classes}`);
  const tp = new Float64Array(classes), fp = new Float64Array(classes), fn = new Float64Array(classes);
  let pixels = 0;
  for (let i = 0; i < pred.length; i++) {
    const t = target[i];
    if (t === ignore) continue;
    const p = pred[i];
    if (!(t >= 0 && t < classes)) throw new RangeError(`confusion: target value ${t} at pixel ${i} is not a class`);
    if (!(p >= 0 && p < classes)) throw new RangeError(`confusion: prediction value ${p} at pixel ${i} is not a class`);
    pixels++;
    if (p === t) tp[p]++;
    else {
      fp[p]++;
      fn[t]++;
    }
  }
  return { tp, fp, fn, pixels };
}

/** Foreground counts of two binary masks: TP, FP, FN (throws on values other than 0/1). */
function binaryCounts(pred: LabelMap, target: LabelMap, what: string): { tp: number; fp: number; fn: number } {
  checkSameSize(pred, target, what);
  let tp = 0, fp = 0, fn = 0;
  for (let i = 0; i < pred.length; i++) {
    const p = pred[i], t = target[i];
    if ((p | t) > 1 || p < 0 || t < 0) {
      throw new RangeError(`${what}: binary masks hold 0 or 1, found prediction ${p}, target ${t} at pixel ${i}`);
    }
    if (p === 1) {
      if (t === 1) tp++;
      else fp++;
    } else if (t === 1) fn++;
  }
  return { tp, fp, fn };
}

/**
 * Dice = 2TP / (2TP + FP + FN) of the foreground (value 1) of two binary masks, for one image.
 * Both masks empty → 1 (see the module conventions).
 */
export function dice(pred: LabelMap, target: LabelMap): number {
  const { tp, fp, fn } = binaryCounts(pred, target, "dice");
  const d = 2 * tp + fp + fn;
  return d === 0 ? 1 : (2 * tp) / d;
}

/**
 * IoU = TP / (TP + FP + FN) of the foreground (value 1) of two binary masks, for one image.
 * Both masks empty → 1 (see the module conventions).
 */
export function iou(pred: LabelMap, target: LabelMap): number {
  const { tp, fp, fn } = binaryCounts(pred, target, "iou");
  const d = tp + fp + fn;
  return d === 0 ? 1 : tp / d;
}

/**
 * GlaS IoU as the paper publishes it: meanDice / (2 − meanDice), from the mean per-image Dice (a
 * fraction in [0, 1], not a percentage). Per image IoU = D / (2 − D) exactly, but this mapping of the
 * *mean* Dice is not the mean per-image IoU (the map is convex, so it is ≤ that mean by Jensen);
 * report `iou` averaged per image too.
 */
export function glasIoUFromDice(meanDice: number): number {
  if (!(meanDice >= 0 && meanDice <= 1)) {
    throw new RangeError(`glasIoUFromDice: mean Dice must be a fraction in [0, 1], got ${meanDice}`);
  }
  return meanDice / (2 - meanDice);
}

/**
 * The MoNuSeg "AJI" the MDM authors computed: AJI applied to *binary* masks, where the whole foreground
 * is one instance, so it equals the per-image foreground IoU (`iou`, both empty → 1). This is NOT the
 * challenge's Aggregated Jaccard Index; use `ajiInstance` on instance maps for that.
 */
export function ajiBinary(pred: LabelMap, target: LabelMap): number {
  return iou(pred, target);
}

/** Details of one `ajiInstanceDetail` evaluation. */
export interface AjiDetail {
  /** C / U (1 when U = 0, i.e. neither map has an instance). */
  aji: number;
  /** C = Σ over GT nuclei of |G ∩ S*|. */
  intersection: number;
  /** U = Σ over GT nuclei of |G ∪ S*| (|G| when G overlaps nothing) + Σ over unused predictions of |S|. */
  union: number;
  /** Ground-truth instances (distinct non-zero ids). */
  gtCount: number;
  /** Predicted instances (distinct non-zero ids). */
  predCount: number;
  /** GT nuclei that overlap no predicted instance (missed). */
  gtUnmatched: number;
  /** Predicted instances that are nobody's best match (their area was added to U). */
  predUnused: number;
}

/**
 * Compacts instance ids: returns, per pixel, a dense index 0..n-1 (or -1 for background), the original
 * id of each index and each instance's area. Ids are kept in a Map, so sparse ids (e.g. 65535) are fine.
 */
function compactInstances(map: LabelMap, what: string): { index: Int32Array; ids: number[]; area: number[] } {
  const index = new Int32Array(map.length);
  const lookup = new Map<number, number>();
  const ids: number[] = [], area: number[] = [];
  let lastId = -1, lastIdx = -1; // runs of one id are the common case: skip the Map for them
  for (let i = 0; i < map.length; i++) {
    const v = map[i];
    if (v === 0) {
      index[i] = -1;
      continue;
    }
    if (v !== lastId) {
      if (v < 0) throw new RangeError(`${what}: negative instance id ${v} at pixel ${i}`);
      let k = lookup.get(v);
      if (k === undefined) {
        k = ids.length;
        lookup.set(v, k);
        ids.push(v);
        area.push(0);
      }
      lastId = v;
      lastIdx = k;
    }
    index[i] = lastIdx;
    area[lastIdx]++;
  }
  return { index, ids, area };
}

/**
 * The MoNuSeg challenge's Aggregated Jaccard Index (Kumar et al., IEEE TMI 2017) on instance maps
 * (0 = background, any other id = one nucleus), with all the details. Follows the official MATLAB code
 * (Aggregated_Jaccard_Index_v1_0.m):
 * - each GT nucleus G is paired with the predicted instance S* of highest IoU among those overlapping it;
 *   ties go to the smallest predicted id (the official loop walks the sorted ids and keeps a strictly
 *   greater IoU). C += |G ∩ S*|, U += |G ∪ S*|. A GT that overlaps no prediction adds |G| to U only.
 * - the pairing is not exclusive: a prediction that is the best match of several GT nuclei (a merge) is
 *   paired with each of them, so its pixels enter U once per such GT. The official code does exactly
 *   this (it only counts how often each prediction was used); we follow it because the published AJI
 *   numbers, and every comparison against them, use that code. (AJI+ of Graham et al. makes the
 *   pairing unique instead; that is a different metric.)
 * - every predicted instance that is nobody's best match (false positives, extra fragments of split
 *   nuclei) adds its full area to U, once.
 * AJI = C / U; when U = 0 (no instance in either map) this returns 1, matching `iou`'s empty convention
 * (the official code would give 0/0 = NaN). Cost: one pass over the pixels building the sparse
 * GT × prediction intersection table, then one pass over its non-zero entries.
 */
export function ajiInstanceDetail(predInstances: LabelMap, gtInstances: LabelMap): AjiDetail {
  checkSameSize(predInstances, gtInstances, "ajiInstance");
  const g = compactInstances(gtInstances, "ajiInstance (GT)");
  const p = compactInstances(predInstances, "ajiInstance (prediction)");
  const nG = g.ids.length, nP = p.ids.length;
  // Sparse intersection table keyed by gtIndex·nP + predIndex (< 2^53 for any realistic image).
  const inter = new Map<number, number>();
  const gi = g.index, pi = p.index;
  for (let i = 0; i < gi.length; i++) {
    const a = gi[i], b = pi[i];
    if (a < 0 || b < 0) continue;
    const key = a * nP + b;
    inter.set(key, (inter.get(key) ?? 0) + 1);
  }
  // Best match per GT: highest IoU, ties to the smallest predicted id.
  const bestPred = new Int32Array(nG).fill(-1);
  const bestIoU = new Float64Array(nG);
  const bestInter = new Float64Array(nG);
  for (const [key, n] of inter) {
    const a = Math.floor(key / nP), b = key - a * nP;
    const j = n / (g.area[a] + p.area[b] - n); // exact for equal fractions: division is correctly rounded
    const cur = bestPred[a];
    if (cur < 0 || j > bestIoU[a] || (j === bestIoU[a] && p.ids[b] < p.ids[cur])) {
      bestPred[a] = b;
      bestIoU[a] = j;
      bestInter[a] = n;
    }
  }
  const used = new Uint8Array(nP);
  let c = 0, u = 0, gtUnmatched = 0;
  for (let a = 0; a < nG; a++) {
    const b = bestPred[a];
    if (b < 0) {
      u += g.area[a];
      gtUnmatched++;
      continue;
    }
    c += bestInter[a];
    u += g.area[a] + p.area[b] - bestInter[a];
    used[b] = 1;
  }
  let predUnused = 0;
  for (let b = 0; b < nP; b++) {
    if (!used[b]) {
      u += p.area[b];
      predUnused++;
    }
  }
  return {
    aji: u === 0 ? 1 : c / u,
    intersection: c,
    union: u,
    gtCount: nG,
    predCount: nP,
    gtUnmatched,
    predUnused,
  };
}

/** The MoNuSeg challenge's AJI on instance maps; see `ajiInstanceDetail` for the exact definition. */
export function ajiInstance(predInstances: LabelMap, gtInstances: LabelMap): number {
  return ajiInstanceDetail(predInstances, gtInstances).aji;
}

/** Result of `connectedComponents`. */
export interface Components {
  /** Per pixel: 0 for background, 1..count for the component it belongs to. */
  labels: Int32Array;
  /** Number of components. */
  count: number;
}

/**
 * Labels the connected components of the foreground (non-zero pixels) of an H×W row-major mask, with
 * 4- or 8-connectivity, by two-pass union-find. Components are numbered 1..count in raster order of
 * their first (top-most, then left-most) pixel, as scipy.ndimage.label numbers them.
 */
export function connectedComponents(
  mask: LabelMap,
  width: number,
  height: number,
  connectivity: 4 | 8 = 8,
): Components {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 0 || height < 0) {
    throw new RangeError(`connectedComponents: bad size ${width}×${height}`);
  }
  if (mask.length !== width * height) {
    throw new RangeError(
      `connectedComponents: mask has ${mask.length} pixels, ${width}×${height} needs ${width * height}`,
    );
  }
  if (connectivity !== 4 && connectivity !== 8) {
    throw new RangeError(`connectedComponents: connectivity must be 4 or 8, got ${connectivity}`);
  }
  const labels = new Int32Array(mask.length);
  // parent[k] for provisional label k (1-based; at most one per foreground pixel).
  let parent = new Int32Array(1024);
  let next = 1;
  const find = (x: number): number => {
    while (parent[x] !== x) {
      parent[x] = parent[parent[x]]; // path halving
      x = parent[x];
    }
    return x;
  };
  const union = (a: number, b: number): number => {
    a = find(a);
    b = find(b);
    if (a === b) return a;
    // Keep the smaller root: roots then stay the earliest provisional label of their set.
    if (a < b) {
      parent[b] = a;
      return a;
    }
    parent[a] = b;
    return b;
  };
  const eight = connectivity === 8;
  for (let y = 0; y < height; y++) {
    const row = y * width;
    for (let x = 0; x < width; x++) {
      const i = row + x;
      if (mask[i] === 0) continue;
      let l = 0;
      // Already-visited neighbours: left, and the row above (up-left, up, up-right for 8-connectivity).
      if (x > 0 && labels[i - 1] !== 0) l = labels[i - 1];
      if (y > 0) {
        const up = i - width;
        if (labels[up] !== 0) l = l === 0 ? labels[up] : union(l, labels[up]);
        if (eight) {
          if (x > 0 && labels[up - 1] !== 0) l = l === 0 ? labels[up - 1] : union(l, labels[up - 1]);
          if (x + 1 < width && labels[up + 1] !== 0) l = l === 0 ? labels[up + 1] : union(l, labels[up + 1]);
        }
      }
      if (l === 0) {
        if (next >= parent.length) {
          const grown = new Int32Array(parent.length * 2);
          grown.set(parent);
          parent = grown;
        }
        parent[next] = next;
        l = next++;
      }
      labels[i] = l;
    }
  }
  // Second pass: resolve roots and renumber in raster order of each component's first pixel.
  const final = new Int32Array(next);
  let count = 0;
  for (let i = 0; i < labels.length; i++) {
    const l = labels[i];
    if (l === 0) continue;
    const r = find(l);
    if (final[r] === 0) final[r] = ++count;
    labels[i] = final[r];
  }
  return { labels, count };
}

/** Options of `MeanIoU`. */
export interface MeanIoUOptions {
  /** Target value whose pixels are skipped (default 255). */
  ignoreIndex?: number;
  /**
   * What a class with U = 0 over the whole dataset (in neither GT nor prediction) contributes:
   * "zero" (default) counts it as IoU 0 in the mean, as ddpm-segmentation's compute_iou does
   * (I / (1e-8 + U) = 0); "skip" leaves it out of the mean.
   */
  absent?: "zero" | "skip";
}

/**
 * Dataset-level mIoU (faces protocol, as ddpm-segmentation's compute_iou): per class,
 * intersections and unions are summed over all images, IoU_c = I_c / U_c, and the mean runs over all
 * classes, background included. Differences from ddpm-segmentation, both immaterial on its data:
 * - it divides by (1e-8 + U); we divide by U exactly (relative difference ≤ 1e-8), and a class with
 *   U = 0 gets IoU 0 (their value too) unless `absent: "skip"`.
 * - pixels whose target is `ignoreIndex` are skipped here. Their code's ignore_label (255) only skips a
 *   class id outside range(number_class), so it never excludes pixels; their face labels contain no 255,
 *   where both agree.
 */
export class MeanIoU {
  /** Number of classes; class ids are 0..classes-1. */
  readonly classes: number;
  /** Per class: pixels of that class in both prediction and target, summed over the images. */
  readonly intersections: Float64Array;
  /** Per class: pixels of that class in prediction or target (ignored targets left out), summed over the images. */
  readonly unions: Float64Array;
  readonly #ignore: number;
  readonly #absent: "zero" | "skip";
  #images = 0;

  /**
   * An empty accumulator for `classes` classes.
   * @throws RangeError when `classes` is not a positive integer or `absent` is neither "zero" nor "skip".
   */
  constructor(classes: number, opts: MeanIoUOptions = {}) {
    if (!Number.isInteger(classes) || classes < 1) throw new RangeError(`MeanIoU: classes must be ≥ 1, got ${classes}`);
    this.classes = classes;
    this.intersections = new Float64Array(classes);
    this.unions = new Float64Array(classes);
    this.#ignore = opts.ignoreIndex ?? 255;
    this.#absent = opts.absent ?? "zero";
    if (this.#absent !== "zero" && this.#absent !== "skip") {
      throw new RangeError(`MeanIoU: absent must be "zero" or "skip", got ${this.#absent}`);
    }
  }

  /** Adds one image's prediction and target (same length, class ids). */
  update(pred: LabelMap, target: LabelMap): void {
    const { tp, fp, fn } = confusion(pred, target, this.classes, this.#ignore);
    for (let c = 0; c < this.classes; c++) {
      this.intersections[c] += tp[c];
      this.unions[c] += tp[c] + fp[c] + fn[c];
    }
    this.#images++;
  }

  /** Images added so far. */
  get images(): number {
    return this.#images;
  }

  /** IoU per class; NaN for a class with U = 0. */
  perClass(): Float64Array {
    const out = new Float64Array(this.classes);
    for (let c = 0; c < this.classes; c++) out[c] = this.unions[c] === 0 ? NaN : this.intersections[c] / this.unions[c];
    return out;
  }

  /** Mean IoU over classes (U = 0 classes per the `absent` option); NaN if no class is counted. */
  mean(): number {
    let sum = 0, n = 0;
    for (let c = 0; c < this.classes; c++) {
      if (this.unions[c] === 0) {
        if (this.#absent === "skip") continue;
      } else sum += this.intersections[c] / this.unions[c];
      n++;
    }
    return n === 0 ? NaN : sum / n;
  }

  /** Forgets every image added, as a fresh accumulator. */
  reset(): void {
    this.intersections.fill(0);
    this.unions.fill(0);
    this.#images = 0;
  }
}

/** Mean and standard deviation of a list of values (e.g. one metric over 10 runs). */
export interface MeanStd {
  /** Arithmetic mean (NaN for no values). */
  mean: number;
  /** Standard deviation, sample or population as `meanStd` was asked (NaN for too few values). */
  std: number;
  /** Number of values. */
  n: number;
}

/**
 * Mean ± std. By default the *sample* std (divide by n − 1, Bessel's correction), like torch.std's
 * default and numpy.std(ddof=1): "mean ± std over 10 runs" describes a spread estimated from a sample
 * of runs. `{ population: true }` divides by n instead (numpy.std's default). With n = 1 the sample std
 * is NaN (as in torch and numpy); with n = 0 both are NaN. Uses a two-pass sum for accuracy.
 */
export function meanStd(values: ArrayLike<number>, opts: { population?: boolean } = {}): MeanStd {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: NaN, n };
  let s = 0;
  for (let i = 0; i < n; i++) s += values[i];
  const mean = s / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i] - mean) ** 2;
  const dof = opts.population ? n : n - 1;
  return { mean, std: dof === 0 ? NaN : Math.sqrt(ss / dof), n };
}
