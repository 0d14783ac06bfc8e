// Image folders for pre-training: listing image files, and a loader that keeps decoded images in
// memory and draws batches of random flipped crops, reproducibly and resumably.
import { readdir, realpath, stat } from "node:fs/promises";
import { tensor, zeros } from "../create.ts";
import type { Device } from "../device.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { type Image, readImage, toRGB, validateImage } from "./image.ts";
import { Rng, type RngState } from "./rng.ts";

/** The file extensions taken as images (lower case; matched case-insensitively). */
export const IMAGE_EXTENSIONS: readonly string[] = [".png", ".jpg", ".jpeg", ".tif", ".tiff"];

/**
 * Folders whose images are labels, not pictures (matched case-insensitively): a dataset root such
 * as MoNuSeg's holds `train/images/` beside `train/masks/`, and pre-training must see only the former.
 */
export const LABEL_FOLDERS: readonly string[] = ["mask", "masks", "label", "labels", "annotation", "annotations"];

/** What `findImages` found under a folder. */
export interface ImageListing {
  /** Image files, sorted by code unit (locale-independent order). Paths through links stay as found. */
  paths: string[];
  /** Label folders passed over (see LABEL_FOLDERS), relative to the root. */
  skippedFolders: string[];
  /**
   * Links whose target does not exist, and folders reached a second time through links (as in a
   * cycle), relative to the root.
   */
  skippedLinks: string[];
}

/** Options of findImages. */
export interface FindImagesOptions {
  /** Pass over folders named as LABEL_FOLDERS (default true). */
  skipLabelFolders?: boolean;
}

/**
 * Image files (by extension, IMAGE_EXTENSIONS) under `dir`, recursively. Symbolic links are
 * followed, to files and to folders alike (a folder reached twice, as through a link cycle, is read
 * once); folders named as LABEL_FOLDERS are skipped unless `skipLabelFolders` is false.
 * @throws node:fs's error with code ENOENT when `dir` does not exist, ENOTDIR when it is a file.
 */
export async function findImages(dir: string, opts: FindImagesOptions = {}): Promise<ImageListing> {
  const skipLabels = opts.skipLabelFolders ?? true;
  const root = dir.replace(/\/+$/, "") || "/";
  const listing: ImageListing = { paths: [], skippedFolders: [], skippedLinks: [] };
  const seen = new Set<string>();
  const rel = (p: string) => p.slice(root.length + 1);
  const walk = async (d: string) => {
    const real = await realpath(d);
    if (seen.has(real)) {
      if (d !== root) listing.skippedLinks.push(rel(d));
      return;
    }
    seen.add(real);
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = `${d}/${e.name}`;
      let isDir = e.isDirectory(), isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const target = await stat(p);
          isDir = target.isDirectory();
          isFile = target.isFile();
        } catch {
          listing.skippedLinks.push(rel(p));
          continue;
        }
      }
      if (isDir) {
        if (skipLabels && LABEL_FOLDERS.includes(e.name.toLowerCase())) listing.skippedFolders.push(rel(p));
        else await walk(p);
      } else if (isFile && IMAGE_EXTENSIONS.some((x) => e.name.toLowerCase().endsWith(x))) listing.paths.push(p);
    }
  };
  const info = await stat(root);
  if (!info.isDirectory()) throw Object.assign(new Error(`${root}: not a folder`), { code: "ENOTDIR" });
  await walk(root);
  const byCodeUnit = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  listing.paths.sort(byCodeUnit);
  listing.skippedFolders.sort(byCodeUnit);
  listing.skippedLinks.sort(byCodeUnit);
  return listing;
}

/**
 * Image files under `dir`, recursively, as paths sorted by code unit: `findImages`'s paths, links
 * followed, label folders included unless `skipLabelFolders` is true (`findImages` skips them by
 * default; this lists every image, as a dataset loader needs).
 */
export async function listImages(dir: string, opts: FindImagesOptions = {}): Promise<string[]> {
  return (await findImages(dir, { skipLabelFolders: opts.skipLabelFolders ?? false })).paths;
}

/**
 * Where the images of a listing are: "N in a/b, M in c" per folder relative to `root` ("." for the
 * root itself), for a user to check that the right images were taken.
 */
export function describeListing(root: string, paths: readonly string[]): string {
  const base = root.replace(/\/+$/, "") || "/";
  const counts = new Map<string, number>();
  for (const p of paths) {
    const r = p.slice(base.length + 1);
    const folder = r.includes("/") ? r.slice(0, r.lastIndexOf("/")) : ".";
    counts.set(folder, (counts.get(folder) ?? 0) + 1);
  }
  const parts = [...counts].map(([f, n]) => `${n} in ${f}`);
  return parts.length > 6 ? `${parts.slice(0, 6).join(", ")} and ${parts.length - 6} more folders` : parts.join(", ");
}

/** Options of a RandomCropLoader. */
export interface RandomCropOptions {
  /** Side S of the square crops. */
  cropSize: number;
  /** Seed of the loader's own PRNG (default 0). */
  seed?: number;
  /** Mirror each crop left-right with probability 1/2 (default true). */
  flip?: boolean;
  /**
   * Images smaller than the crop: an error when false (the default); padded up to the crop size
   * (centred) when true or "reflect" (mirror without repeating the edge) or "zero".
   */
  padSmall?: boolean | "reflect" | "zero";
  /** Device of the returned batches (the default device when omitted). */
  device?: Device;
}

/** Options of `RandomCropLoader.nextBatch`. */
export interface BatchOptions {
  /** Copy only crops start..end-1 of the batch (the others are drawn but left 0). */
  only?: readonly [start: number, end: number];
}

/** Everything needed to continue the exact sample sequence, as plain JSON. */
export interface LoaderState {
  /** The loader's PRNG. */
  rng: RngState;
  /** This epoch's image order and the position in it. */
  order: number[];
  /** The next position in `order`. */
  cursor: number;
  /** Completed passes over the images. */
  epoch: number;
}

/** An image with the name it is known by (its path, for images from files). */
export interface NamedImage {
  /** Where the image came from, for messages. */
  name: string;
  /** The pixels (converted to RGB by the loader). */
  image: Image;
}

/**
 * Random square crops of a set of images, each flipped left-right with probability 1/2, every image
 * once per epoch in a reshuffled order, as [B, 3, S, S] float32 batches in [-1, 1]; from a seeded PRNG
 * of its own, whose state a checkpoint saves.
 */
export class RandomCropLoader {
  /** The crops' side S, pixels. */
  readonly cropSize: number;
  /** The images' names, in the order given. */
  readonly names: readonly string[];
  readonly #images: Image[]; // RGB, each at least cropSize in both dimensions
  readonly #flip: boolean;
  readonly #device?: Device;
  #rng: Rng;
  #order: number[] = [];
  #cursor = 0;
  #epoch = 0;

  /** A loader over images already in memory (each converted to RGB, padded if asked). */
  constructor(images: readonly NamedImage[], opts: RandomCropOptions) {
    const s = opts.cropSize;
    if (!Number.isInteger(s) || s < 1) {
      throw new RangeError(`RandomCropLoader: cropSize must be a positive integer, got ${s}`);
    }
    if (images.length === 0) throw new RangeError("RandomCropLoader: no images");
    const pad = opts.padSmall === true ? "reflect" : opts.padSmall || null;
    this.cropSize = s;
    this.names = images.map((x) => x.name);
    this.#images = images.map(({ name, image }) => {
      validateImage(image, name);
      if (image.width >= s && image.height >= s) return toRGB(image);
      if (!pad) {
        throw new RangeError(
          `${name}: image is ${image.width}x${image.height}, smaller than the ${s}x${s} crop (set padSmall to pad it)`,
        );
      }
      return padTo(toRGB(image), s, pad);
    });
    this.#flip = opts.flip ?? true;
    this.#device = opts.device;
    this.#rng = new Rng(opts.seed ?? 0);
  }

  /** Reads and decodes `paths` into memory. */
  static async fromFiles(paths: readonly string[], opts: RandomCropOptions): Promise<RandomCropLoader> {
    const images: NamedImage[] = [];
    for (const p of paths) images.push({ name: p, image: await readImage(p) });
    return new RandomCropLoader(images, opts);
  }

  /** Reads every image under `dir` for pre-training (see `findImages`: links followed, label folders skipped). */
  static async fromDir(dir: string, opts: RandomCropOptions): Promise<RandomCropLoader> {
    const { paths } = await findImages(dir);
    if (paths.length === 0) throw new RangeError(`${dir}: no .png/.jpg/.jpeg/.tif/.tiff images found`);
    return RandomCropLoader.fromFiles(paths, opts);
  }

  /** The number of images. */
  get length(): number {
    return this.#images.length;
  }

  /** Completed passes over the images. */
  get epoch(): number {
    return this.#epoch;
  }

  // Every image is used once per epoch, in an order the PRNG shuffles afresh each epoch.
  #nextImage(): number {
    if (this.#cursor >= this.#order.length) {
      if (this.#order.length > 0) this.#epoch++;
      this.#order = this.#rng.shuffle(Array.from(this.#images, (_, i) => i));
      this.#cursor = 0;
    }
    return this.#order[this.#cursor++];
  }

  /**
   * The next batch on the host: `batchSize` crops, float32 [B, 3, S, S] in [-1, 1]. With `only`
   * [start, end), every crop is still drawn (the sequence advances exactly as for the whole batch)
   * but only crops start..end-1 are copied; the others stay 0. A data-parallel rank fills its own
   * share of the global batch this way.
   * @throws RangeError when `batchSize` is not a positive integer or `only` is not a range within it.
   */
  nextBatchData(batchSize: number, opts: BatchOptions = {}): Float32Array {
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be a positive integer`);
    const [lo, hi] = opts.only ?? [0, batchSize];
    if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 0 || lo > hi || hi > batchSize) {
      throw new RangeError(`only must be a range [start, end) within the batch of ${batchSize}, got [${lo}, ${hi})`);
    }
    const s = this.cropSize, plane = s * s;
    const out = new Float32Array(batchSize * 3 * plane);
    for (let b = 0; b < batchSize; b++) {
      const img = this.#images[this.#nextImage()];
      // Draw order is fixed (x, y, flip) so a saved state replays the same crops.
      const x0 = this.#rng.int(img.width - s + 1);
      const y0 = this.#rng.int(img.height - s + 1);
      const flip = this.#flip && this.#rng.next() < 0.5;
      if (b < lo || b >= hi) continue;
      const base = b * 3 * plane, w = img.width, d = img.data;
      for (let y = 0; y < s; y++) {
        const row = ((y0 + y) * w + x0) * 3;
        for (let x = 0; x < s; x++) {
          const src = row + (flip ? s - 1 - x : x) * 3, dst = base + y * s + x;
          out[dst] = d[src] / 127.5 - 1;
          out[dst + plane] = d[src + 1] / 127.5 - 1;
          out[dst + 2 * plane] = d[src + 2] / 127.5 - 1;
        }
      }
    }
    return out;
  }

  /** The next batch as a float32 tensor [B, 3, S, S] in [-1, 1] (`only`: see `nextBatchData`). */
  nextBatch(batchSize: number, opts: BatchOptions = {}): Tensor<"float32", Device> {
    const s = this.cropSize, device = this.#device;
    const data = this.nextBatchData(batchSize, opts);
    const [lo, hi] = opts.only ?? [0, batchSize];
    if (lo === 0 && hi === batchSize) return tensor(data, { shape: [batchSize, 3, s, s], device });
    // Only the copied crops cross to the device; the blank ones are zeros made there.
    return tidy(() => {
      const batch = zeros([batchSize, 3, s, s], { device });
      const crop = 3 * s * s;
      const own = tensor(data.subarray(lo * crop, hi * crop), { shape: [hi - lo, 3, s, s], device });
      if (hi > lo) batch.narrow(0, lo, hi - lo).copy_(own);
      return batch;
    });
  }

  /** The state to save with a checkpoint, to continue the same crops with setState. */
  getState(): LoaderState {
    return { rng: this.#rng.getState(), order: [...this.#order], cursor: this.#cursor, epoch: this.#epoch };
  }

  /** Restores a state from `getState` (e.g. after JSON round trip) to continue the same sequence. */
  setState(state: LoaderState): void {
    const n = this.#images.length;
    const order = state?.order;
    const okOrder = Array.isArray(order) && (order.length === 0 || order.length === n) &&
      new Set(order).size === order.length && order.every((i) => Number.isInteger(i) && i >= 0 && i < n);
    const epoch = state?.epoch ?? 0;
    if (
      !okOrder || !Number.isInteger(state.cursor) || state.cursor < 0 || state.cursor > order.length ||
      !Number.isSafeInteger(epoch) || epoch < 0
    ) {
      throw new TypeError(`RandomCropLoader.setState: state does not fit a loader over ${n} images`);
    }
    this.#rng.setState(state.rng);
    this.#order = [...order];
    this.#cursor = state.cursor;
    this.#epoch = epoch;
  }
}

// Index into [0, n) after padding by `before`: mirrored without repeating the edge, bouncing as
// often as needed (so any pad works, even wider than the image).
function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * (n - 1);
  const m = ((i % period) + period) % period;
  return m < n ? m : period - m;
}

function padTo(img: Image, s: number, mode: "reflect" | "zero"): Image {
  const w = Math.max(img.width, s), h = Math.max(img.height, s);
  const left = Math.floor((w - img.width) / 2), top = Math.floor((h - img.height) / 2);
  const out = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    const sy = y - top;
    const inY = sy >= 0 && sy < img.height;
    for (let x = 0; x < w; x++) {
      const sx = x - left;
      if (mode === "zero" && !(inY && sx >= 0 && sx < img.width)) continue;
      const src = (reflectIndex(sy, img.height) * img.width + reflectIndex(sx, img.width)) * 3;
      const dst = (y * w + x) * 3;
      out[dst] = img.data[src];
      out[dst + 1] = img.data[src + 1];
      out[dst + 2] = img.data[src + 2];
    }
  }
  return { width: w, height: h, channels: 3, data: out };
}
