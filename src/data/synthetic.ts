// The embedded default dataset: procedural H&E-like tissue tiles with stained nuclei and their
// exact masks, so pre-training and segmentation run end to end without any downloaded data.
//
// Colour follows the Beer-Lambert stain model used in stain deconvolution: each pixel has an
// eosin and a hematoxylin concentration, its optical density is their mix of per-stain absorption
// vectors, and intensity is 255 * exp(-density). Nuclei are irregular ellipses (radius modulated
// by a few random harmonics) drawn with anti-aliased edges; the mask is their coverage >= 1/2.
import { mkdir, readFile, rm, stat } from "node:fs/promises";
import { type Image, writeFileAtomic, writePng } from "./image.ts";
import { Rng } from "./rng.ts";

/** Bump when the generator's output changes, so cached datasets are regenerated. */
export const SYNTHETIC_VERSION = 1;

/** What `generateSynthetic` makes. */
export interface SyntheticOptions {
  /** Number of tiles. */
  count: number;
  /** Side of the square tiles (default 256). */
  size?: number;
  /** Seed of the whole set (default 0). */
  seed?: number;
}

/** One synthetic H&E tile with its nucleus labels. */
export interface SyntheticSample {
  /** RGB tile. */
  image: Image;
  /** 1-channel, 1 on nuclei and 0 elsewhere. */
  mask: Image;
  /** Nucleus id per pixel (0 = background, 1..n); the mask is `instances > 0`. */
  instances: Uint16Array;
  /** Number of nuclei (at most 255, so instance maps fit 8-bit PNGs). */
  nuclei: number;
}

const MAX_NUCLEI = 255;

// Absorption per unit concentration in R, G, B (natural-log optical density); eosin absorbs green
// most (pink), hematoxylin red and green (blue-purple). Tuned against MoNuSeg tile colours.
const EOSIN = [0.25, 0.85, 0.55];
const HEMATOXYLIN = [0.85, 1.0, 0.6];

/** `count` tiles; tile i depends only on (seed, i, size), so more tiles extend a smaller set. */
export function generateSynthetic(opts: SyntheticOptions): SyntheticSample[] {
  const size = opts.size ?? 256, seed = opts.seed ?? 0;
  if (!Number.isInteger(opts.count) || opts.count < 0) throw new RangeError(`count must be a non-negative integer`);
  if (!Number.isInteger(size) || size < 32) throw new RangeError(`size must be an integer >= 32, got ${size}`);
  return Array.from({ length: opts.count }, (_, i) => generateTile(size, seed, i));
}

// Smooth random field in [0, 1]: random values on a grid of `cell` pixels, smoothstep-interpolated.
function valueNoise(rng: Rng, n: number, cell: number): Float32Array {
  const g = Math.ceil(n / cell) + 2;
  const grid = Float32Array.from({ length: g * g }, () => rng.next());
  const out = new Float32Array(n * n);
  const ox = rng.next() * cell, oy = rng.next() * cell; // random phase so grids of images differ
  for (let y = 0; y < n; y++) {
    const fy = (y + oy) / cell, iy = Math.floor(fy), ty = fy - iy, sy = ty * ty * (3 - 2 * ty);
    for (let x = 0; x < n; x++) {
      const fx = (x + ox) / cell, ix = Math.floor(fx), tx = fx - ix, sx = tx * tx * (3 - 2 * tx);
      const a = grid[iy * g + ix], b = grid[iy * g + ix + 1];
      const c = grid[(iy + 1) * g + ix], d = grid[(iy + 1) * g + ix + 1];
      out[y * n + x] = (a + (b - a) * sx) * (1 - sy) + (c + (d - c) * sx) * sy;
    }
  }
  return out;
}

// Octaves of value noise, normalised back to roughly [0, 1].
function fbm(rng: Rng, n: number, cell: number, octaves: number): Float32Array {
  const out = new Float32Array(n * n);
  let amp = 1, total = 0;
  for (let o = 0; o < octaves; o++, amp *= 0.5) {
    const layer = valueNoise(rng, n, Math.max(2, cell / 2 ** o));
    for (let i = 0; i < out.length; i++) out[i] += amp * layer[i];
    total += amp;
  }
  for (let i = 0; i < out.length; i++) out[i] /= total;
  return out;
}

const smoothstep = (a: number, b: number, x: number) => {
  const t = Math.min(1, Math.max(0, (x - a) / (b - a)));
  return t * t * (3 - 2 * t);
};

interface Nucleus {
  cx: number;
  cy: number;
  a: number; // semi-axes (px)
  b: number;
  angle: number;
  harmonics: { k: number; amp: number; phase: number }[];
  stain: number; // hematoxylin concentration at the centre
  texture: number; // chromatin contrast
  nucleolus: boolean;
}

// Nucleus kinds as seen in H&E: small dark round lymphocytes, large pale irregular epithelial
// nuclei with chromatin texture, and thin elongated fibroblasts aligned with the stroma.
function sampleNucleus(rng: Rng, cx: number, cy: number, fibreAngle: number, epiBias: number): Nucleus {
  const u = rng.next();
  let a: number, b: number, angle: number, stain: number, texture: number, irregular: number;
  let nucleolus = false;
  if (u < 0.3 * (1 - epiBias)) { // lymphocyte
    a = rng.uniform(4.5, 6.5);
    b = a * rng.uniform(0.85, 1);
    angle = rng.uniform(0, Math.PI);
    stain = rng.uniform(1.5, 1.9);
    texture = 0.12;
    irregular = 0.03;
  } else if (u < 0.5 * (1 - epiBias)) { // fibroblast
    a = rng.uniform(9, 14);
    b = rng.uniform(3, 4.5);
    angle = fibreAngle + rng.normal() * 0.25;
    stain = rng.uniform(1.2, 1.6);
    texture = 0.15;
    irregular = 0.04;
  } else { // epithelial / tumour
    a = rng.uniform(8.5, 15);
    b = a * rng.uniform(0.6, 0.95);
    angle = rng.uniform(0, Math.PI);
    stain = rng.uniform(0.8, 1.4);
    texture = rng.uniform(0.5, 0.9);
    irregular = 0.07;
    nucleolus = rng.next() < 0.4;
  }
  const harmonics = [2, 3, 4, 5, 7].map((k) => ({
    k,
    amp: (irregular * rng.normal() * 2) / k,
    phase: rng.uniform(0, 2 * Math.PI),
  }));
  return { cx, cy, a, b, angle, harmonics, stain, texture, nucleolus };
}

/** One tile: stroma and nuclei stain fields -> RGB via Beer-Lambert, then blur and noise. */
export function generateTile(size: number, seed: number, index: number): SyntheticSample {
  const rng = new Rng([seed, index]);
  const n = size, np = n * n;

  // Per-tile look: stain strength and balance vary between slides, as in TCGA.
  const eScale = rng.uniform(0.75, 1.2), hScale = rng.uniform(0.85, 1.15);
  const hBackground = rng.uniform(0.04, 0.2); // bluish cytoplasm in some tissues
  const targetFraction = rng.uniform(0.12, 0.32);
  const fibreAngle = rng.uniform(0, Math.PI);
  const gapAmount = rng.next() < 0.6 ? rng.uniform(0.3, 1) : 0;
  const epiBias = rng.next(); // 0: stroma with lymphocytes and fibroblasts, 1: sheets of epithelium

  // Nuclei first (their instance map fixes the foreground fraction), stains afterwards. Centres
  // are drawn more often where a cluster field is high; touching and slight overlaps are allowed,
  // near-duplicates rejected; later nuclei lie over earlier ones.
  const cluster = fbm(rng, n, 64, 2);
  const instances = new Uint16Array(np);
  const nuclei: Nucleus[] = [];
  let covered = 0;
  for (let attempt = 0; attempt < 4000 && covered < targetFraction * np && nuclei.length < MAX_NUCLEI; attempt++) {
    const cx = rng.uniform(-4, n + 4), cy = rng.uniform(-4, n + 4);
    const ci = clampInt(Math.round(cy), n) * n + clampInt(Math.round(cx), n);
    if (rng.next() > 0.15 + 1.7 * cluster[ci] ** 2) continue;
    const nuc = sampleNucleus(rng, cx, cy, fibreAngle, epiBias);
    const r = Math.sqrt(nuc.a * nuc.b);
    if (nuclei.some((o) => Math.hypot(o.cx - cx, o.cy - cy) < 0.85 * (r + Math.sqrt(o.a * o.b)))) continue;
    nuclei.push(nuc);
    const id = nuclei.length;
    rasterize(nuc, n, (i, coverage) => {
      if (coverage < 0.5) return;
      if (instances[i] === 0) covered++;
      instances[i] = id;
    });
  }

  const { eos, hem } = stroma(rng, n, fibreAngle, hBackground, gapAmount, 1 - 0.8 * epiBias);
  if (epiBias > 0.4) cellBorders(rng, nuclei, n, eos, (epiBias - 0.4) / 0.6);

  // Nuclear stain: anti-aliased coverage blends chromatin-textured hematoxylin over the stroma,
  // with a darker membrane rim and, in some large nuclei, a nucleolus.
  const chromatin = fbm(rng, n, 5, 3);
  for (const nuc of nuclei) {
    const nx = rng.uniform(-0.3, 0.3), ny = rng.uniform(-0.3, 0.3);
    rasterize(nuc, n, (i, coverage, u, v, rel) => {
      let stain = nuc.stain * (1 - nuc.texture * 0.5 + nuc.texture * chromatin[i]);
      stain *= 1 + 0.3 * smoothstep(0.7, 0.95, rel);
      if (nuc.nucleolus && Math.hypot(u - nx, v - ny) < 0.16) stain *= 1.5;
      hem[i] = hem[i] * (1 - coverage) + stain * coverage;
      eos[i] *= 1 - 0.6 * coverage;
    });
  }

  // Stains -> RGB (absorption vectors jittered per tile: stain batches differ in hue), a light
  // blur (optics), then sensor noise.
  const eVec = EOSIN.map((v) => v * eScale * (1 + 0.07 * rng.normal()));
  const hVec = HEMATOXYLIN.map((v) => v * hScale * (1 + 0.07 * rng.normal()));
  const rgb = new Float32Array(np * 3);
  for (let i = 0; i < np; i++) {
    const e = Math.max(0, eos[i]), h = Math.max(0, hem[i]);
    for (let k = 0; k < 3; k++) rgb[3 * i + k] = 250 * Math.exp(-(e * eVec[k] + h * hVec[k]));
  }
  blur3(rgb, n);
  const data = new Uint8Array(np * 3);
  for (let i = 0; i < rgb.length; i++) data[i] = Math.min(255, Math.max(0, Math.round(rgb[i] + 2.5 * rng.normal())));
  const mask = new Uint8Array(np);
  for (let i = 0; i < np; i++) mask[i] = instances[i] > 0 ? 1 : 0;
  return {
    image: { width: n, height: n, channels: 3, data },
    mask: { width: n, height: n, channels: 1, data: mask },
    instances,
    nuclei: nuclei.length,
  };
}

const clampInt = (v: number, n: number) => Math.min(n - 1, Math.max(0, v));

// Lattice noise at arbitrary coordinates (a periodic 64x64 grid of random values), for fields
// sampled in rotated or stretched coordinates.
function lattice(rng: Rng): (u: number, v: number) => number {
  const g = Float32Array.from({ length: 64 * 64 }, () => rng.next());
  return (u, v) => {
    const iu = Math.floor(u), iv = Math.floor(v);
    let tu = u - iu, tv = v - iv;
    tu = tu * tu * (3 - 2 * tu);
    tv = tv * tv * (3 - 2 * tv);
    const a = g[(iv & 63) * 64 + (iu & 63)], b = g[(iv & 63) * 64 + ((iu + 1) & 63)];
    const c = g[((iv + 1) & 63) * 64 + (iu & 63)], d = g[((iv + 1) & 63) * 64 + ((iu + 1) & 63)];
    return (a + (b - a) * tu) * (1 - tv) + (c + (d - c) * tu) * tv;
  };
}

// Eosin and background hematoxylin of the tissue between nuclei: slowly varying density, streaky
// collagen fibres (noise stretched along a domain-warped direction) in patches, fine granularity,
// and white gaps (lumen, fat, tears).
function stroma(rng: Rng, n: number, angle: number, hBackground: number, gapAmount: number, fibreAmount: number) {
  const np = n * n;
  const density = fbm(rng, n, 96, 3);
  const warpX = fbm(rng, n, 48, 2), warpY = fbm(rng, n, 48, 2);
  const fibreZone = valueNoise(rng, n, 80);
  const grain = valueNoise(rng, n, 3);
  const gaps = fbm(rng, n, 48, 3);
  const streak = lattice(rng), streak2 = lattice(rng);
  const ca = Math.cos(angle), sa = Math.sin(angle);
  const eos = new Float32Array(np), hem = new Float32Array(np);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const i = y * n + x;
      const wx = x + 40 * (warpX[i] - 0.5), wy = y + 40 * (warpY[i] - 0.5);
      const along = wx * ca + wy * sa, across = -wx * sa + wy * ca;
      const f = 0.65 * streak(along / 28, across / 2.5) + 0.35 * streak2(along / 14, across / 1.4);
      const zone = fibreAmount * smoothstep(0.3, 0.6, fibreZone[i]);
      const fibre = smoothstep(0.45, 0.75, f) * zone;
      let e = 0.45 + 0.5 * density[i] + 0.35 * fibre - 0.2 * (1 - fibre) * zone + 0.15 * (grain[i] - 0.5);
      let h = hBackground * (0.6 + 0.8 * density[i]);
      const gap = gapAmount * smoothstep(0.62, 0.7, gaps[i]);
      e *= 1 - 0.92 * gap;
      h *= 1 - 0.92 * gap;
      eos[i] = e;
      hem[i] = h;
    }
  }
  return { eos, hem };
}

// Epithelial cell borders: pixels about equidistant from their two nearest nuclei (a Voronoi
// edge) within a cell's reach get more eosin, broken up by noise so they read as membranes rather
// than a drawn diagram. Nuclei are bucketed so each pixel checks only those that can matter.
function cellBorders(rng: Rng, nuclei: readonly Nucleus[], n: number, eos: Float32Array, strength: number): void {
  if (nuclei.length < 2) return;
  const reach = 22, bucket = 16, nb = Math.ceil(n / bucket);
  const rmax = Math.max(...nuclei.map((o) => Math.sqrt(o.a * o.b)));
  const wobble = valueNoise(rng, n, 6), patchy = valueNoise(rng, n, 24);
  for (let by = 0; by < nb; by++) {
    for (let bx = 0; bx < nb; bx++) {
      // A nucleus farther than this from the bucket centre cannot be the nearest or a second
      // nearest within the 2.2 px edge band for any pixel of the bucket.
      const bcx = (bx + 0.5) * bucket, bcy = (by + 0.5) * bucket, limit = reach + 3 + bucket * 0.75 + 2 * rmax;
      const near = nuclei.filter((o) => Math.hypot(o.cx - bcx, o.cy - bcy) < limit);
      if (near.length < 2) continue;
      for (let y = by * bucket; y < Math.min(n, (by + 1) * bucket); y++) {
        for (let x = bx * bucket; x < Math.min(n, (bx + 1) * bucket); x++) {
          const i = y * n + x;
          let d1 = Infinity, d2 = Infinity;
          for (const o of near) {
            const d = Math.hypot(o.cx - x, o.cy - y) - Math.sqrt(o.a * o.b);
            if (d < d1) {
              d2 = d1;
              d1 = d;
            } else if (d < d2) d2 = d;
          }
          if (d1 > reach) continue;
          const gap = d2 - d1 + 2.5 * (wobble[i] - 0.5);
          const edge = (1 - smoothstep(0.3, 2.5, gap)) * smoothstep(0.25, 0.6, patchy[i]);
          const inCell = strength * (1 - smoothstep(reach - 8, reach, d1)); // fades out: no disc outlines
          eos[i] = eos[i] * (1 - 0.3 * inCell) + inCell * 0.45 * edge;
        }
      }
    }
  }
}

// Visits the pixels a nucleus touches with their anti-aliased coverage in (0, 1], the nucleus-frame
// coordinates (u, v) (unit = semi-axes) and the relative radius (1 at the boundary).
function rasterize(
  nuc: Nucleus,
  n: number,
  visit: (i: number, coverage: number, u: number, v: number, rel: number) => void,
): void {
  const reach = nuc.a * (1 + nuc.harmonics.reduce((s, h) => s + Math.abs(h.amp), 0)) + 2;
  const x0 = Math.max(0, Math.floor(nuc.cx - reach)), x1 = Math.min(n - 1, Math.ceil(nuc.cx + reach));
  const y0 = Math.max(0, Math.floor(nuc.cy - reach)), y1 = Math.min(n - 1, Math.ceil(nuc.cy + reach));
  const c = Math.cos(nuc.angle), s = Math.sin(nuc.angle);
  const scale = Math.sqrt(nuc.a * nuc.b); // px per unit of normalised radius, for the edge width
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x - nuc.cx, dy = y - nuc.cy;
      const u = (dx * c + dy * s) / nuc.a, v = (-dx * s + dy * c) / nuc.b;
      const rho = Math.hypot(u, v), theta = Math.atan2(v, u);
      let edge = 1;
      for (const h of nuc.harmonics) edge += h.amp * Math.cos(h.k * theta + h.phase);
      const coverage = Math.min(1, (edge - rho) * scale + 0.5);
      if (coverage > 0) visit(y * n + x, coverage, u, v, rho / edge);
    }
  }
}

// In-place separable [1 2 1]/4 blur on an interleaved RGB float image (edges clamped).
function blur3(rgb: Float32Array, n: number): void {
  const tmp = new Float32Array(rgb.length);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const l = Math.max(0, x - 1), r = Math.min(n - 1, x + 1);
      for (let k = 0; k < 3; k++) {
        tmp[(y * n + x) * 3 + k] = 0.25 * rgb[(y * n + l) * 3 + k] + 0.5 * rgb[(y * n + x) * 3 + k] +
          0.25 * rgb[(y * n + r) * 3 + k];
      }
    }
  }
  for (let y = 0; y < n; y++) {
    const u = Math.max(0, y - 1), d = Math.min(n - 1, y + 1);
    for (let x = 0; x < n; x++) {
      for (let k = 0; k < 3; k++) {
        rgb[(y * n + x) * 3 + k] = 0.25 * tmp[(u * n + x) * 3 + k] + 0.5 * tmp[(y * n + x) * 3 + k] +
          0.25 * tmp[(d * n + x) * 3 + k];
      }
    }
  }
}

/** The size of the synthetic dataset `ensureSyntheticDataset` caches. */
export interface SyntheticDatasetOptions {
  /** Tiles in each split (defaults 16 and 8). */
  train?: number;
  /** Tiles in the test split (8). */
  test?: number;
  /** Side of the square tiles in pixels (256). */
  size?: number;
  /** Seed of the whole set (0). */
  seed?: number;
}

/** The files of one split, index-aligned. */
export interface SyntheticSplit {
  /** RGB tile PNGs. */
  images: string[];
  /** Mask PNGs, 1 on nuclei, 0 elsewhere. */
  masks: string[];
  /** 8-bit instance maps (0 = background, 1..n one id per nucleus). */
  instances: string[];
}

/** The cached synthetic dataset's location and files. */
export interface SyntheticDataset {
  /** The cache folder. */
  dir: string;
  /** The training split. */
  train: SyntheticSplit;
  /** The test split. */
  test: SyntheticSplit;
  /** Whether this call wrote the files (false when the cache was already valid). */
  generated: boolean;
}

const GENERATOR = "mdm-synthetic-he";

interface Manifest {
  generator: string;
  version: number;
  options: Required<SyntheticDatasetOptions>;
  files: string[];
}

function splitPaths(dir: string, split: string, count: number, offset: number): SyntheticSplit {
  const names = Array.from({ length: count }, (_, i) => `syn_${String(offset + i).padStart(4, "0")}.png`);
  return {
    images: names.map((f) => `${dir}/${split}/images/${f}`),
    masks: names.map((f) => `${dir}/${split}/masks/${f}`),
    instances: names.map((f) => `${dir}/${split}/instances/${f}`),
  };
}

async function readManifest(path: string): Promise<Manifest | null> {
  try {
    return JSON.parse(await readFile(path, "utf8")) as Manifest;
  } catch {
    return null; // missing or unreadable: regenerate
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * The synthetic dataset cached under `dir`: `{train,test}/{images,masks,instances}/syn_NNNN.png`
 * (masks hold 0/1). Files are written once; a later call with the same generator version and
 * options only checks them. The manifest is written last, so an interrupted run regenerates.
 */
export async function ensureSyntheticDataset(
  dir: string,
  opts: SyntheticDatasetOptions = {},
): Promise<SyntheticDataset> {
  const options = { train: opts.train ?? 16, test: opts.test ?? 8, size: opts.size ?? 256, seed: opts.seed ?? 0 };
  const train = splitPaths(dir, "train", options.train, 0);
  const test = splitPaths(dir, "test", options.test, options.train); // test tiles continue the index
  // The manifest lists files relative to `dir`, so the cache stays valid when `dir` is spelled differently.
  const files = [train, test].flatMap((s) => [...s.images, ...s.masks, ...s.instances]).map((f) =>
    f.slice(dir.length + 1)
  );
  const manifestPath = `${dir}/manifest.json`;
  const old = await readManifest(manifestPath);
  const same = old?.generator === GENERATOR && old.version === SYNTHETIC_VERSION &&
    JSON.stringify(old.options) === JSON.stringify(options);
  if (same && (await Promise.all(files.map((f) => exists(`${dir}/${f}`)))).every(Boolean)) {
    return { dir, train, test, generated: false };
  }

  // Remove what an older manifest listed and this one does not, so folders hold only this set.
  if (old?.generator === GENERATOR && Array.isArray(old.files)) {
    const keep = new Set(files);
    for (const f of old.files) if (!keep.has(f)) await rm(`${dir}/${f}`, { force: true });
  }
  await rm(manifestPath, { force: true });
  const samples = generateSynthetic({ count: options.train + options.test, size: options.size, seed: options.seed });
  for (const [name, split, first] of [["train", train, 0], ["test", test, options.train]] as const) {
    for (const sub of ["images", "masks", "instances"]) await mkdir(`${dir}/${name}/${sub}`, { recursive: true });
    for (let i = 0; i < split.images.length; i++) {
      const s = samples[first + i];
      await writePng(split.images[i], s.image);
      await writePng(split.masks[i], s.mask);
      const inst = Uint8Array.from(s.instances); // ids <= MAX_NUCLEI = 255
      await writePng(split.instances[i], { width: options.size, height: options.size, channels: 1, data: inst });
    }
  }
  const manifest: Manifest = { generator: GENERATOR, version: SYNTHETIC_VERSION, options, files };
  await writeFileAtomic(manifestPath, new TextEncoder().encode(JSON.stringify(manifest, null, 2) + "\n"));
  return { dir, train, test, generated: true };
}
