// File access for both runtimes, through node:fs (which Deno implements too): the one place that
// knows how a file is opened for random-access reads, so that readers stay the same under Node.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { readFile } from "node:fs/promises";

/** A file opened for reading at any position; close it with `close()` or `using`. */
export class ReadableFile implements Disposable {
  readonly #fd: number;
  #closed = false;
  /** The file's size in bytes when it was opened. */
  readonly size: number;

  /** Opens `path` for reading; throws node:fs's error (its `code` is "ENOENT" for a missing file). */
  constructor(readonly path: string) {
    this.#fd = openSync(path, "r");
    try {
      this.size = fstatSync(this.#fd).size;
    } catch (e) {
      closeSync(this.#fd);
      throw e;
    }
  }

  /** Reads up to `into.length` bytes at `position`; returns how many were read (fewer at the end). */
  readAt(into: Uint8Array, position: number): number {
    let at = 0;
    while (at < into.length) {
      const got = readSync(this.#fd, into, at, into.length - at, position + at);
      if (got === 0) break;
      at += got;
    }
    return at;
  }

  /** Closes the file; safe to call twice. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.#fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A file-system error's code ("ENOENT", "EACCES", ...), or undefined for other errors. */
export function errorCode(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** A file's bytes, in an array of their own (offset 0, so DataViews over `.buffer` see them alone). */
export async function readBytes(path: string): Promise<Uint8Array<ArrayBuffer>> {
  const buf = await readFile(path);
  return buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength
    ? new Uint8Array(buf.buffer as ArrayBuffer)
    : new Uint8Array(buf);
}
