// The one shape every labelled segmentation dataset takes (MoNuSeg, GlaS, the ddpm-segmentation
// face sets, generic images/ + masks/ folders, the embedded synthetic set; one loader per file
// beside this one).
//
// A loader lists and pairs the files up front (a missing label file fails there, naming it) and
// returns splits whose items decode on demand: `split.load(i)` for one image, `split.loadAll()` for
// all (MoNuSeg's 44 images of 1000x1000 take about 0.3 GB with instance maps). Nothing is cached;
// callers keep what they load. Few-shot subsets are `split.first(n)`.
//
// Every decoding problem is an error naming the file: corrupt or truncated images (ImageError),
// annotations (AnnotationError), .npy files (NpyError), and for pairs a label whose size differs
// from its image, out-of-range label values or a missing label (DatasetError).
import type { Image } from "../image.ts";

/** A dataset's files do not fit together; the message starts with the offending file's path. */
export class DatasetError extends Error {
  /** `problem` is what is wrong with the file at `path` (the message is "path: problem"). */
  constructor(readonly path: string, problem: string, options?: ErrorOptions) {
    super(`${path}: ${problem}`, options);
    this.name = "DatasetError";
  }
}

/** Label value that losses and metrics skip. */
export const IGNORE_LABEL = 255;

/** One decoded image of a dataset with its labels, [H, W] each, row-major. */
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
  /** The image file's stem. */
  readonly name: string;
  /** The files it is made from (image, label, and instances/annotation where present). */
  readonly files: Readonly<Record<string, string>>;
  /** Reads and decodes the files; rejects with an error naming the file that cannot be read. */
  load(): Promise<LabelledImage>;
}

/** An ordered list of labelled images, decoded on demand. */
export class SegSplit {
  /** A split of these items, in this order. */
  constructor(readonly items: readonly SegItem[]) {}

  /** How many images the split holds. */
  get length(): number {
    return this.items.length;
  }

  /** The images' names (file stems), in order. */
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

  /** Reads the items one after another: `for await (const image of split)`. */
  async *[Symbol.asyncIterator](): AsyncGenerator<LabelledImage> {
    for (const it of this.items) yield await it.load();
  }
}

/** A labelled segmentation dataset: its train and test splits (and others), and its classes. */
export interface SegDataset {
  /** The dataset's name in reports. */
  name: string;
  /** Number of classes (labels are 0..classes-1, plus 255 = ignore). */
  classes: number;
  /** Names of the classes, by label value, where the dataset has them. */
  classNames?: string[];
  /** The labelled training images. */
  train: SegSplit;
  /** The test images. */
  test: SegSplit;
  /** Further named splits (GlaS: testA, testB). */
  extra?: Record<string, SegSplit>;
}
