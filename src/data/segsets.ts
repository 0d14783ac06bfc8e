// Labelled segmentation datasets: MoNuSeg, GlaS, the ddpm-segmentation face sets, generic
// images/ + masks/ folders and the embedded synthetic set, all behind one shape.
//
// A loader lists and pairs the files up front (a missing label file fails there, naming it) and
// returns splits whose items decode on demand: `split.load(i)` for one image, `split.loadAll()` for
// all (MoNuSeg's 44 images of 1000x1000 take about 0.3 GB with instance maps). Nothing is cached;
// callers keep what they load. Few-shot subsets are `split.first(n)`.
//
// Every decoding problem is an error naming the file: corrupt or truncated images (ImageError),
// annotations (AnnotationError), .npy files (NpyError), and for pairs a label whose size differs
// from its image, out-of-range label values or a missing label (DatasetError).
import { decodeBmp, isBmp } from "./bmp.ts";
import { listImages } from "./folder.ts";
import { decodeImage, type Image, ImageError, type ReadOptions, toRGB } from "./image.ts";
import { npyToLabel, readNpy } from "./npy.ts";
import { readMoNuSegAnnotation } from "./polygons.ts";
import { ensureSyntheticDataset, type SyntheticDatasetOptions } from "./synthetic.ts";

/** A dataset's files do not fit together; the message starts with the offending file's path. */
export class DatasetError extends Error {
  constructor(readonly path: string, problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
    this.name = "DatasetError";
  }
}

/** Label value that losses and metrics skip. */
export const IGNORE_LABEL = 255;

export interface LabelledImage {
  /** The image file's stem (name without folder and extension). */
  name: string;
  /** RGB. */
  image: Image;
  /** H×W class indices (255 = ignore). */
  label: Uint8Array;
  /** H×W instance ids, 0 = background (MoNuSeg with XML, GlaS, synthetic). */
  instances?: Int32Array;
  /** Non-fatal notes about the files (e.g. degenerate annotation regions skipped). */
  warnings?: string[];
}

/** One labelled image, not yet read. */
export interface SegItem {
  readonly name: string;
  /** The files it is made from (image, label, and instances/annotation where present). */
  readonly files: Readonly<Record<string, string>>;
  load(): Promise<LabelledImage>;
}

/** An ordered list of labelled images, decoded on demand. */
export class SegSplit {
  constructor(readonly items: readonly SegItem[]) {}

  get length(): number {
    return this.items.length;
  }

  get names(): string[] {
    return this.items.map((it) => it.name);
  }

  /** Reads and decodes item `i`. */
  load(i: number): Promise<LabelledImage> {
    if (!Number.isInteger(i) || i < 0 || i >= this.items.length) {
      return Promise.reject(new RangeError(`index ${i} out of range for a split of ${this.items.length}`));
    }
    return this.items[i].load();
  }

  /** Reads every item, one after another (so at most one file's bytes are in flight). */
  async loadAll(): Promise<LabelledImage[]> {
    const out: LabelledImage[] = [];
    for (const it of this.items) out.push(await it.load());
    return out;
  }

  /** The first `n` items (the paper's few-shot subsets). */
  first(n: number): SegSplit {
    if (!Number.isInteger(n) || n < 0 || n > this.items.length) {
      throw new RangeError(`first(${n}): the split has ${this.items.length} items`);
    }
    return new SegSplit(this.items.slice(0, n));
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LabelledImage> {
    for (const it of this.items) yield await it.load();
  }
}

export interface SegDataset {
  name: string;
  /** Number of classes (labels are 0..classes-1, plus 255 = ignore). */
  classes: number;
  classNames?: string[];
  train: SegSplit;
  test: SegSplit;
  /** Further named splits (GlaS: testA, testB). */
  extra?: Record<string, SegSplit>;
}

// ---------------------------------------------------------------- files

async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new DatasetError(path, "file not found", { cause: e });
    throw new ImageError(path, `cannot read file (${(e as Error).message})`, { cause: e });
  }
}

/** Reads a PNG, JPEG, TIFF or BMP image (format from the bytes). */
export async function readAnyImage(path: string, opts: ReadOptions = {}): Promise<Image> {
  const bytes = await readBytes(path);
  return isBmp(bytes) ? decodeBmp(bytes, path, opts) : decodeImage(bytes, path, opts);
}

interface ClassMap {
  width: number;
  height: number;
  data: Uint8Array;
}

/**
 * Reads a label image as raw 8-bit values: gray as is, palette images as their indices, and
 * RGB(A) only when R = G = B everywhere (alpha ignored). 16-bit PNGs are refused, since the image
 * reader scales them to 8 bits, which would destroy class values.
 */
export async function readClassMap(path: string): Promise<ClassMap> {
  const bytes = await readBytes(path);
  if (bytes.length > 24 && bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[24] === 16) {
    throw new DatasetError(path, "16-bit PNG label maps are not supported (store class indices as 8-bit)");
  }
  const img = isBmp(bytes)
    ? decodeBmp(bytes, path, { paletteIndices: true })
    : decodeImage(bytes, path, { paletteIndices: true });
  const { width, height, channels, data } = img;
  if (channels === 1) return { width, height, data };
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) {
    const r = data[i * channels], g = data[i * channels + 1], b = data[i * channels + 2];
    if (r !== g || g !== b) {
      throw new DatasetError(
        path,
        `label image has ${channels} channels with colours (pixel ${i % width}, ${
          Math.floor(i / width)
        } is ${r},${g},${b}); expected a gray or palette class map`,
      );
    }
    out[i] = r;
  }
  return { width, height, data: out };
}

function checkSize(labelPath: string, what: string, w: number, h: number, image: Image, imagePath: string): void {
  if (w !== image.width || h !== image.height) {
    throw new DatasetError(
      labelPath,
      `${what} is ${w}x${h} but its image ${imagePath} is ${image.width}x${image.height}`,
    );
  }
}

/** Checks every value is < `classes` or 255 (ignore). */
function checkValues(path: string, data: Uint8Array, width: number, classes: number, what = "label"): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v >= classes && v !== IGNORE_LABEL) {
      throw new DatasetError(
        path,
        `${what} value ${v} at pixel ${i % width}, ${Math.floor(i / width)} is not a class ` +
          `(expected 0..${classes - 1} or ${IGNORE_LABEL})`,
      );
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function isDir(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** Files directly in `dir` whose lower-cased name ends with one of `exts`. */
async function listFiles(dir: string, exts: readonly string[]): Promise<string[]> {
  if (!(await isDir(dir))) throw new DatasetError(dir, "folder not found");
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile && exts.some((x) => e.name.toLowerCase().endsWith(x))) names.push(e.name);
  }
  return names;
}

const stemOf = (file: string) => {
  const base = file.slice(file.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
};

/** Code-unit order, locale-independent (Python's sorted() for names without astral characters). */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Natural order: digit runs compare as numbers (train_2 < train_10), the rest by code unit. */
export function compareNatural(a: string, b: string): number {
  const ta = a.match(/\d+|\D+/g) ?? [], tb = b.match(/\d+|\D+/g) ?? [];
  for (let i = 0; i < Math.min(ta.length, tb.length); i++) {
    const x = ta[i], y = tb[i];
    if (x === y) continue;
    const dx = /^\d/.test(x), dy = /^\d/.test(y);
    if (dx && dy) {
      const nx = x.replace(/^0+(?=\d)/, ""), ny = y.replace(/^0+(?=\d)/, "");
      if (nx.length !== ny.length) return nx.length - ny.length;
      if (nx !== ny) return compareCodeUnits(nx, ny);
      return compareCodeUnits(x, y); // same number, different leading zeros
    }
    return compareCodeUnits(x, y);
  }
  return ta.length - tb.length;
}

// ---------------------------------------------------------------- MoNuSeg

export interface MoNuSegOptions {
  /** Vertex tolerance beyond the image, px (see polygons.ts; default 4). */
  tolerance?: number;
}

function binaryMaskCheck(path: string, data: Uint8Array, width: number): void {
  for (let i = 0; i < data.length; i++) {
    if (data[i] > 1) {
      throw new DatasetError(
        path,
        `mask value ${data[i]} at pixel ${i % width}, ${Math.floor(i / width)}; expected 0 or 1`,
      );
    }
  }
}

/**
 * MoNuSeg 2018 (layout in shared/data/monuseg/README.md):
 * - train: `train/images/*.tif` with `train/masks/<stem>.png` (values {0, 1}) as the label; where
 *   `train/annotations/<stem>.xml` exists (13 of 30) also `instances` filled from it. The label
 *   stays the shipped PNG, so `instances > 0` may differ from it at a few boundary pixels.
 * - test: `test/images/*.tif` with `test/annotations/<stem>.xml` required: instances from the
 *   polygons, label = their union.
 * Both sorted by name (code-unit order, as Python's sorted(); few-shot = `train.first(3)`).
 */
export async function loadMoNuSeg(root: string, opts: MoNuSegOptions = {}): Promise<SegDataset> {
  root = root.replace(/\/+$/, "");
  const tifs = async (split: string) =>
    (await listFiles(`${root}/${split}/images`, [".tif", ".tiff"])).sort(compareCodeUnits);
  const readRgb = async (path: string) => toRGB(await readAnyImage(path));
  const annotation = async (xml: string, image: Image) => {
    const ann = await readMoNuSegAnnotation(xml, image.width, image.height, opts);
    const warnings = ann.skipped.map((s) =>
      `${xml}: region ${s.index} (Id ${s.id ?? "?"}) has ${s.vertices} vertices; skipped`
    );
    return { ann, warnings };
  };

  const trainItems: SegItem[] = [];
  for (const file of await tifs("train")) {
    const name = stemOf(file);
    const image = `${root}/train/images/${file}`;
    const mask = `${root}/train/masks/${name}.png`;
    if (!(await exists(mask))) throw new DatasetError(mask, `missing mask for ${image}`);
    const xml = `${root}/train/annotations/${name}.xml`;
    const hasXml = await exists(xml);
    const files: Record<string, string> = hasXml ? { image, label: mask, annotation: xml } : { image, label: mask };
    trainItems.push({
      name,
      files,
      load: async () => {
        const img = await readRgb(image);
        const m = await readClassMap(mask);
        checkSize(mask, "mask", m.width, m.height, img, image);
        binaryMaskCheck(mask, m.data, m.width);
        const out: LabelledImage = { name, image: img, label: m.data };
        if (hasXml) {
          const { ann, warnings } = await annotation(xml, img);
          out.instances = ann.instances;
          if (warnings.length) out.warnings = warnings;
        }
        return out;
      },
    });
  }

  const testItems: SegItem[] = [];
  for (const file of await tifs("test")) {
    const name = stemOf(file);
    const image = `${root}/test/images/${file}`;
    const xml = `${root}/test/annotations/${name}.xml`;
    if (!(await exists(xml))) throw new DatasetError(xml, `missing annotation for ${image}`);
    testItems.push({
      name,
      files: { image, annotation: xml },
      load: async () => {
        const img = await readRgb(image);
        const { ann, warnings } = await annotation(xml, img);
        const out: LabelledImage = { name, image: img, label: ann.mask, instances: ann.instances };
        if (warnings.length) out.warnings = warnings;
        return out;
      },
    });
  }
  return {
    name: "monuseg",
    classes: 2,
    classNames: ["background", "nucleus"],
    train: new SegSplit(trainItems),
    test: new SegSplit(testItems),
  };
}

// ---------------------------------------------------------------- GlaS

export interface GlaSOptions {
  /**
   * Order of the images, which fixes the few-shot subsets (default "lexicographic"). The MDM
   * code lists GlaS with Python's sorted() over file paths (src/datasets.py, ImageLabelPNGDataset,
   * then `[:num_images]`), i.e. code-unit order, where train_10..train_16 come before train_2:
   * its 8-label subset is train_1, train_10, ..., train_16. "natural" orders by the number
   * (train_1..train_8).
   */
  order?: "lexicographic" | "natural";
}

/**
 * GlaS (Warwick QU) from its original single folder: `train_N.bmp`, `testA_N.bmp`, `testB_N.bmp`,
 * each with `<stem>_anno.bmp`, an 8-bit indexed map read as raw palette indices (0 background,
 * one id per gland). label = id > 0, instances = ids. test = testA then testB (in `order`); the
 * two are also `extra.testA` / `extra.testB`.
 */
export async function loadGlaS(dir: string, opts: GlaSOptions = {}): Promise<SegDataset> {
  dir = dir.replace(/\/+$/, "");
  const cmp = (opts.order ?? "lexicographic") === "natural" ? compareNatural : compareCodeUnits;
  const files = await listFiles(dir, [".bmp"]);
  const groups: Record<string, SegItem[]> = { train: [], testA: [], testB: [] };
  const names = files.map(stemOf).filter((s) => /^(train|testA|testB)_\d+$/.test(s)).sort(cmp);
  if (names.length === 0) throw new DatasetError(dir, "no GlaS images (train_N.bmp, testA_N.bmp, testB_N.bmp)");
  for (const name of names) {
    const image = `${dir}/${files.find((f) => stemOf(f) === name)}`;
    const annoFile = files.find((f) => f.toLowerCase() === `${name.toLowerCase()}_anno.bmp`);
    const label = `${dir}/${annoFile ?? `${name}_anno.bmp`}`;
    if (!annoFile) throw new DatasetError(label, `missing annotation for ${image}`);
    groups[name.slice(0, name.indexOf("_"))].push({
      name,
      files: { image, label },
      load: async () => {
        const img = toRGB(await readAnyImage(image));
        const ids = await readClassMap(label);
        checkSize(label, "annotation", ids.width, ids.height, img, image);
        const instances = Int32Array.from(ids.data);
        const bin = ids.data.map((v) => (v > 0 ? 1 : 0));
        return { name, image: img, label: bin, instances };
      },
    });
  }
  const testA = new SegSplit(groups.testA), testB = new SegSplit(groups.testB);
  return {
    name: "glas",
    classes: 2,
    classNames: ["background", "gland"],
    train: new SegSplit(groups.train),
    test: new SegSplit([...groups.testA, ...groups.testB]),
    extra: { testA, testB },
  };
}

// ---------------------------------------------------------------- ddpm-segmentation

/** Class counts of the ddpm-segmentation datasets (names as in its data_util.py). */
export const DDPM_SEG_CLASSES: Record<string, number> = { ffhq_34: 34, celeba_19: 19 };

export interface DdpmSegOptions {
  /**
   * Model resolution: images are resized to size×size (bilinear with antialiasing, as
   * torchvision's Resize on a PIL image) and labels nearest-neighbour (as cv2.INTER_NEAREST).
   * Default: the image's own size (labels of another size are still resized to it).
   */
  size?: number;
  /** Number of classes; when given, label values must be below it or 255. */
  classes?: number;
}

/**
 * The ddpm-segmentation layout: `<root>/<split>/` (searched recursively, as its loader does) holding
 * square .png/.jpg/.jpeg images, each with a .npy class map of the same path and stem; sorted by
 * path in code-unit order (Python's sorted()). Labels must be square too: one whose side differs
 * from the target is resized nearest-neighbour, as ddpm-segmentation resizes every label to the
 * resolution; one of another shape is an error.
 */
export async function loadDdpmSeg(
  root: string,
  split: "train" | "test",
  opts: DdpmSegOptions = {},
): Promise<SegSplit> {
  const dir = `${root.replace(/\/+$/, "")}/${split}`;
  if (!(await isDir(dir))) throw new DatasetError(dir, "folder not found");
  if (opts.size !== undefined && !(Number.isInteger(opts.size) && opts.size > 0)) {
    throw new RangeError(`size must be a positive integer, got ${opts.size}`);
  }
  const images = (await listImages(dir)).filter((p) => /\.(png|jpe?g)$/i.test(p));
  const items: SegItem[] = [];
  for (const image of images) {
    const npy = image.slice(0, image.lastIndexOf(".")) + ".npy";
    if (!(await exists(npy))) throw new DatasetError(npy, `missing class map for ${image}`);
    const name = stemOf(image);
    items.push({
      name,
      files: { image, label: npy },
      load: async () => {
        let img = toRGB(await readAnyImage(image));
        if (img.width !== img.height) {
          throw new DatasetError(image, `image is ${img.width}x${img.height}; only square images are supported`);
        }
        const lab = npyToLabel(await readNpy(npy), npy);
        if (lab.width !== lab.height) {
          throw new DatasetError(npy, `class map is ${lab.width}x${lab.height} but its image ${image} is square`);
        }
        // Values are checked before resizing, so an error gives the position in the file.
        if (opts.classes !== undefined) checkValues(npy, lab.data, lab.width, opts.classes);
        const s = opts.size ?? img.width;
        if (img.width !== s) img = resizeImageBilinear(img, s, s);
        const label = lab.width === s ? lab.data : resizeLabelNearest(lab.data, lab.width, lab.height, s, s);
        return { name, image: img, label };
      },
    });
  }
  return new SegSplit(items);
}

/** Both splits of a ddpm-segmentation dataset (`name` e.g. "ffhq_34" picks the class count). */
export async function loadDdpmSegDataset(
  root: string,
  opts: DdpmSegOptions & { name?: string } = {},
): Promise<SegDataset> {
  const name = opts.name ?? stemOf(root.replace(/\/+$/, ""));
  const classes = opts.classes ?? DDPM_SEG_CLASSES[name];
  if (classes === undefined) throw new RangeError(`unknown class count for ${name}: pass opts.classes`);
  const o = { ...opts, classes };
  return { name, classes, train: await loadDdpmSeg(root, "train", o), test: await loadDdpmSeg(root, "test", o) };
}

// ---------------------------------------------------------------- generic folders

const MASK_EXTENSIONS = [".png", ".bmp", ".tif", ".tiff"];

export interface FolderPairOptions {
  /** When given, mask values must be below it or 255. */
  classes?: number;
}

/**
 * `<root>/images/` and `<root>/masks/` (not recursive) paired by stem, in code-unit order of the
 * image names. Masks are read as raw values (palette images as indices; see readClassMap). An
 * image without a mask, or with two (same stem, different extensions), is an error; masks
 * without an image are ignored.
 */
export async function loadFolderPair(root: string, opts: FolderPairOptions = {}): Promise<SegSplit> {
  root = root.replace(/\/+$/, "");
  const imgs = (await listFiles(`${root}/images`, [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"]))
    .sort(compareCodeUnits);
  const masks = new Map<string, string[]>();
  for (const m of await listFiles(`${root}/masks`, MASK_EXTENSIONS)) {
    masks.set(stemOf(m), [...(masks.get(stemOf(m)) ?? []), m]);
  }
  const items: SegItem[] = [];
  for (const file of imgs) {
    const name = stemOf(file), image = `${root}/images/${file}`;
    const found = masks.get(name) ?? [];
    if (found.length === 0) {
      throw new DatasetError(
        `${root}/masks/${name}.png`,
        `missing mask for ${image} (looked for ${name}.{png,bmp,tif,tiff})`,
      );
    }
    if (found.length > 1) {
      throw new DatasetError(`${root}/masks/${found[0]}`, `several masks for ${image}: ${found.join(", ")}`);
    }
    const label = `${root}/masks/${found[0]}`;
    items.push({
      name,
      files: { image, label },
      load: async () => {
        const img = toRGB(await readAnyImage(image));
        const m = await readClassMap(label);
        checkSize(label, "mask", m.width, m.height, img, image);
        if (opts.classes !== undefined) checkValues(label, m.data, m.width, opts.classes, "mask");
        return { name, image: img, label: m.data };
      },
    });
  }
  return new SegSplit(items);
}

// ---------------------------------------------------------------- synthetic

/**
 * The embedded synthetic H&E set (generated into `cacheDir` on first use, see synthetic.ts): masks
 * {0, 1} as labels and the 8-bit instance maps as instances; the two must agree.
 */
export async function loadSynthetic(cacheDir: string, opts: SyntheticDatasetOptions = {}): Promise<SegDataset> {
  const ds = await ensureSyntheticDataset(cacheDir, opts);
  const split = (s: typeof ds.train) =>
    new SegSplit(s.images.map((image, i) => {
      const label = s.masks[i], inst = s.instances[i], name = stemOf(image);
      return {
        name,
        files: { image, label, instances: inst },
        load: async () => {
          const img = toRGB(await readAnyImage(image));
          const m = await readClassMap(label);
          checkSize(label, "mask", m.width, m.height, img, image);
          binaryMaskCheck(label, m.data, m.width);
          const ids = await readClassMap(inst);
          checkSize(inst, "instance map", ids.width, ids.height, img, image);
          for (let k = 0; k < ids.data.length; k++) {
            if ((ids.data[k] > 0 ? 1 : 0) !== m.data[k]) {
              throw new DatasetError(
                inst,
                `instance map and mask ${label} disagree at pixel ${k % m.width}, ${Math.floor(k / m.width)}`,
              );
            }
          }
          return { name, image: img, label: m.data, instances: Int32Array.from(ids.data) };
        },
      };
    }));
  return {
    name: "synthetic",
    classes: 2,
    classNames: ["background", "nucleus"],
    train: split(ds.train),
    test: split(ds.test),
  };
}

// ---------------------------------------------------------------- resizing

/**
 * Nearest-neighbour resize of an H×W label map, top-left aligned as cv2.INTER_NEAREST and
 * torch's mode="nearest": output (x, y) takes input (floor(x·w/outW), floor(y·h/outH)), computed
 * exactly in integers.
 */
export function resizeLabelNearest(
  label: Uint8Array,
  width: number,
  height: number,
  outWidth: number,
  outHeight: number,
): Uint8Array {
  if (label.length !== width * height) {
    throw new RangeError(`resizeLabelNearest: ${label.length} values for ${width}x${height}`);
  }
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`resizeLabelNearest: invalid output size ${outWidth}x${outHeight}`);
  }
  const out = new Uint8Array(outWidth * outHeight);
  const sx = Int32Array.from({ length: outWidth }, (_, x) => Math.min(width - 1, Math.floor((x * width) / outWidth)));
  for (let y = 0; y < outHeight; y++) {
    const row = Math.min(height - 1, Math.floor((y * height) / outHeight)) * width;
    for (let x = 0; x < outWidth; x++) out[y * outWidth + x] = label[row + sx[x]];
  }
  return out;
}

const PRECISION_BITS = 22; // PIL's fixed point for 8-bit resampling (32 - 8 - 2)

// Per output pixel: first input index, count and fixed-point weights of PIL's bilinear
// (triangle) filter, its support widened by the downscale factor (antialiasing).
function bilinearCoeffs(inSize: number, outSize: number) {
  const scale = inSize / outSize, filterscale = Math.max(scale, 1);
  const support = filterscale, ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize), count = new Int32Array(outSize);
  const kk = new Float64Array(outSize * ksize);
  for (let x = 0; x < outSize; x++) {
    const center = (x + 0.5) * scale;
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    const w = new Float64Array(xmax);
    for (let k = 0; k < xmax; k++) {
      const t = Math.abs((k + xmin - center + 0.5) / filterscale);
      w[k] = t < 1 ? 1 - t : 0;
      ww += w[k];
    }
    for (let k = 0; k < xmax; k++) {
      const v = ww !== 0 ? w[k] / ww : w[k];
      kk[x * ksize + k] = Math.trunc(0.5 + v * (1 << PRECISION_BITS)); // weights are >= 0
    }
    first[x] = xmin;
    count[x] = xmax;
  }
  return { first, count, kk, ksize };
}

const clip8 = (ss: number) => {
  const v = Math.floor(ss / (1 << PRECISION_BITS));
  return v < 0 ? 0 : v > 255 ? 255 : v;
};

/**
 * Resizes an 8-bit image with PIL's Image.resize(..., BILINEAR) algorithm (the triangle filter
 * widened when shrinking, fixed-point weights, a horizontal pass rounded to 8 bits then a vertical
 * one), which is what torchvision's Resize does to the PIL images ddpm-segmentation feeds it.
 */
export function resizeImageBilinear(image: Image, outWidth: number, outHeight: number): Image {
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`resizeImageBilinear: invalid output size ${outWidth}x${outHeight}`);
  }
  const { width: w, height: h, channels: c } = image;
  let data = image.data, cw = w;
  if (outWidth !== w) {
    const { first, count, kk, ksize } = bilinearCoeffs(w, outWidth);
    const tmp = new Uint8Array(outWidth * h * c);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < outWidth; x++) {
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let k = 0; k < count[x]; k++) ss += data[(y * w + first[x] + k) * c + ch] * kk[x * ksize + k];
          tmp[(y * outWidth + x) * c + ch] = clip8(ss);
        }
      }
    }
    data = tmp;
    cw = outWidth;
  }
  if (outHeight !== h) {
    const { first, count, kk, ksize } = bilinearCoeffs(h, outHeight);
    const tmp = new Uint8Array(cw * outHeight * c);
    for (let y = 0; y < outHeight; y++) {
      for (let x = 0; x < cw; x++) {
        for (let ch = 0; ch < c; ch++) {
          let ss = 1 << (PRECISION_BITS - 1);
          for (let k = 0; k < count[y]; k++) ss += data[((first[y] + k) * cw + x) * c + ch] * kk[y * ksize + k];
          tmp[(y * cw + x) * c + ch] = clip8(ss);
        }
      }
    }
    data = tmp;
  }
  return { width: outWidth, height: outHeight, channels: c, data: data === image.data ? data.slice() : data };
}
