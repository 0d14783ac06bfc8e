// An exclusive lock on an output folder, so that two runs never write the same files: their log
// lines would interleave and their checkpoints mix. The lock is the operating system's advisory
// lock (flock) on `<folder>/.lock`, which the kernel releases when its holder exits, however it
// exits: a run killed with SIGKILL leaves no stale lock behind. The file itself stays, holding the
// last holder's pid, host and start time, which the error shows to whoever finds the folder taken.
import { readFileSync } from "node:fs";
import { hostname as osHostname } from "node:os";
import process from "node:process";
import { STATUS, sym, takeError } from "../../ffi/lib.ts";

/** Who holds (or last held) a folder's lock. */
export interface LockHolder {
  program: string;
  pid: number;
  host: string;
  /** ISO 8601 start time of the holder's run. */
  started: string;
}

/** The folder is locked by another run (or cannot be locked); the message names the holder. */
export class LockError extends Error {
  override name = "LockError";
  constructor(readonly path: string, readonly holder: LockHolder | null, problem: string) {
    super(`${path}: ${problem}`);
  }
}

function readHolder(path: string): LockHolder | null {
  try {
    const h = JSON.parse(readFileSync(path, "utf8"));
    if (typeof h?.pid === "number" && typeof h?.host === "string" && typeof h?.started === "string") {
      return { program: String(h.program ?? "?"), pid: h.pid, host: h.host, started: h.started };
    }
  } catch { /* being written, or not ours: the holder is unknown */ }
  return null;
}

function hostname(): string {
  try {
    return osHostname();
  } catch {
    return "unknown host";
  }
}

/** A held lock on a folder; release it (or let `using` do it) when the run ends. */
export class FolderLock implements Disposable {
  #fd: number;

  private constructor(readonly path: string, readonly holder: LockHolder, fd: number) {
    this.#fd = fd;
  }

  /**
   * Takes the lock of `dir` (which must exist) for `program`, without waiting.
   * @throws LockError naming the holder (program, pid, host, start time) when another process holds
   * it, or why the lock cannot be taken.
   */
  static acquire(dir: string, program: string): FolderLock {
    const path = `${dir.replace(/\/+$/, "") || "/"}/.lock`;
    const holder: LockHolder = { program, pid: process.pid, host: hostname(), started: new Date().toISOString() };
    const record = new TextEncoder().encode(JSON.stringify(holder) + "\n");
    // flock through the native library (node:fs has none); the kernel drops it when this process ends.
    const fd = sym.mdm_lock_file(new TextEncoder().encode(path + "\0"), record, record.length, STATUS);
    if (fd === -1) throw new LockError(path, null, takeError() ?? "cannot take the lock");
    if (fd === -2) {
      const h = readHolder(path);
      const who = h ? `${h.program} (pid ${h.pid} on ${h.host}, started ${h.started})` : "another process";
      throw new LockError(
        path,
        h,
        `the folder is in use by ${who}; wait for it to end or choose another output folder`,
      );
    }
    return new FolderLock(path, holder, fd);
  }

  /** Releases the lock (the file stays, naming its last holder). Idempotent. */
  release(): void {
    if (this.#fd < 0) return;
    sym.mdm_unlock_file(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.release();
  }
}
