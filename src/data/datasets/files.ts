// Listing and ordering a dataset's files: existence checks, one folder's files by extension, file
// stems, and the two name orders the loaders use (Python's sorted() and natural order).
import { readdir, stat } from "node:fs/promises";
import { DatasetError } from "./dataset.ts";

/** Whether `path` is a file (false for folders and for anything that cannot be stat'ed). */
export async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/** Whether `path` is a folder. */
export async function isDir(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch {
    return false;
  }
}

/**
 * Files directly in `dir` whose lower-cased name ends with one of `exts`, in directory order.
 * Symbolic links to files count as the files (a folder of links is a folder of images); links
 * whose target is missing are an error naming them, rather than images silently left out.
 * @throws DatasetError when `dir` is not a folder, or for a broken link.
 */
export async function listFiles(dir: string, exts: readonly string[]): Promise<string[]> {
  if (!(await isDir(dir))) throw new DatasetError(dir, "folder not found");
  const names: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (!exts.some((x) => e.name.toLowerCase().endsWith(x))) continue;
    let isFile = e.isFile();
    if (e.isSymbolicLink()) {
      const path = `${dir}/${e.name}`;
      try {
        isFile = (await stat(path)).isFile();
      } catch (err) {
        throw new DatasetError(path, `a link to nothing (${(err as Error).message})`, { cause: err });
      }
    }
    if (isFile) names.push(e.name);
  }
  return names;
}

/** A path's file name without folder and extension. */
export function stemOf(file: string): string {
  const base = file.slice(file.lastIndexOf("/") + 1);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

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
