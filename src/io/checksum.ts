// SHA-256 checksums of a folder's files in the `sha256sum` format (`<hex>  <name>` per line), so
// that damage to a saved file (a flipped byte, a cut end) is found when it is read back rather
// than trained on; `sha256sum -c SHA256SUMS` checks the same file from a shell.
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, openSync, readFileSync } from "node:fs";
import { fdWriter } from "./atomic.ts";
import { errorCode, ReadableFile } from "./fs.ts";

/** The checksum file's name. */
export const SUMS_FILE = "SHA256SUMS";

/** A file's SHA-256, hex, read in chunks (checkpoints can be gigabytes). */
export function sha256File(path: string): string {
  const hash = createHash("sha256");
  using f = new ReadableFile(path);
  const buf = new Uint8Array(1 << 20);
  for (let at = 0, n = f.readAt(buf, 0); n > 0; at += n, n = f.readAt(buf, at)) hash.update(buf.subarray(0, n));
  return hash.digest("hex");
}

/** Writes `<dir>/SHA256SUMS` for `names` (files in `dir`), flushed to disk. */
export function writeSums(dir: string, names: readonly string[]): void {
  const text = names.map((n) => `${sha256File(`${dir}/${n}`)}  ${n}\n`).join("");
  const path = `${dir}/${SUMS_FILE}`;
  const fd = openSync(path, "wx");
  try {
    fdWriter(fd).write(new TextEncoder().encode(text));
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Checks the files of `dir` against its SHA256SUMS, which must list exactly `names`. Returns null
 * when all match, else the first problem as [file, what is wrong].
 */
export function checkSums(dir: string, names: readonly string[]): [string, string] | null {
  const sumsPath = `${dir}/${SUMS_FILE}`;
  let text: string;
  try {
    text = readFileSync(sumsPath, "utf8");
  } catch (e) {
    return [sumsPath, errorCode(e) === "ENOENT" ? "missing" : `unreadable (${(e as Error).message})`];
  }
  const listed = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const m = /^([0-9a-f]{64}) {2}(.+)$/.exec(line);
    if (!m || listed.has(m[2])) return [sumsPath, `damaged (line ${JSON.stringify(line.slice(0, 80))})`];
    listed.set(m[2], m[1]);
  }
  const missing = names.filter((n) => !listed.has(n)), extra = [...listed.keys()].filter((n) => !names.includes(n));
  if (missing.length || extra.length) {
    return [sumsPath, `damaged (it lists ${[...listed.keys()].join(", ") || "nothing"}; expected ${names.join(", ")})`];
  }
  for (const n of names) {
    const path = `${dir}/${n}`;
    let actual: string;
    try {
      actual = sha256File(path);
    } catch (e) {
      return [
        path,
        errorCode(e) === "ENOENT" ? "missing (listed in SHA256SUMS)" : `unreadable (${(e as Error).message})`,
      ];
    }
    if (actual !== listed.get(n)) return [path, `damaged (its SHA-256 differs from the one in ${SUMS_FILE})`];
  }
  return null;
}
