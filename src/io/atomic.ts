// Crash-safe file replacement: a reader of `path` sees the old file or the complete new one, never
// a half-written one, whatever happens (an exception, a killed process, a power cut) mid-write.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from "node:fs";

/** A file being written: `write` appends all of its bytes (a single write may take fewer). */
export interface WritableFile {
  write(bytes: Uint8Array): void;
}

/** The writer of an open file descriptor. */
export function fdWriter(fd: number): WritableFile {
  return {
    write(bytes: Uint8Array): void {
      for (let at = 0; at < bytes.byteLength;) at += writeSync(fd, bytes, at, bytes.byteLength - at);
    },
  };
}

function dirOf(path: string): string {
  const i = path.lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

function baseOf(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * Runs `write` on a new temporary file next to `path` (rename is only atomic within a file
 * system), flushes it to disk, and renames it over `path`. If `write` throws, the temporary file
 * is removed and `path` is untouched.
 */
export function writeFileAtomic(path: string, write: (file: WritableFile) => void): void {
  const dir = dirOf(path);
  const tmp = `${dir}/.${baseOf(path)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const fd = openSync(tmp, "wx");
  try {
    try {
      write(fdWriter(fd));
      // The data must be on disk before the rename is: otherwise a crash could leave the new name
      // pointing at a file whose blocks were never written.
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  syncDir(dir);
}

/** Persists the rename itself (the folder entry). Best effort: not every platform can open a folder. */
function syncDir(dir: string): void {
  try {
    const fd = openSync(dir, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch { /* the file is complete either way; only its name's durability is not guaranteed */ }
}
