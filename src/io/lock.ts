// An exclusive lock on an output folder, so that two runs never write the same files: their log
// lines would interleave and their checkpoints mix. The lock is the operating system's advisory
// lock (flock) on `<folder>/.lock`, which the kernel releases when its holder exits, however it
// exits: a run killed with SIGKILL leaves no stale lock behind. The file itself stays, holding the
// last holder's pid, host and start time, which the error shows to whoever finds the folder taken.
import { writeAll } from "./atomic.ts";

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
    const h = JSON.parse(Deno.readTextFileSync(path));
    if (typeof h?.pid === "number" && typeof h?.host === "string" && typeof h?.started === "string") {
      return { program: String(h.program ?? "?"), pid: h.pid, host: h.host, started: h.started };
    }
  } catch { /* being written, or not ours: the holder is unknown */ }
  return null;
}

function hostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown host";
  }
}

/** A held lock on a folder; release it (or let `using` do it) when the run ends. */
export class FolderLock implements Disposable {
  #file: Deno.FsFile | null;

  private constructor(readonly path: string, readonly holder: LockHolder, file: Deno.FsFile) {
    this.#file = file;
  }

  /**
   * Takes the lock of `dir` (which must exist) for `program`, without waiting.
   * @throws LockError naming the holder (program, pid, host, start time) when another process holds
   * it, or why the lock cannot be taken.
   */
  static acquire(dir: string, program: string): FolderLock {
    const path = `${dir.replace(/\/+$/, "") || "/"}/.lock`;
    let file: Deno.FsFile;
    try {
      file = Deno.openSync(path, { read: true, write: true, create: true });
    } catch (e) {
      throw new LockError(path, null, `cannot create the lock file (${(e as Error).message})`);
    }
    let locked: boolean;
    try {
      locked = file.tryLockSync(true);
    } catch (e) {
      file.close();
      throw new LockError(path, null, `this file system refuses locks (${(e as Error).message})`);
    }
    if (!locked) {
      file.close();
      const h = readHolder(path);
      const who = h ? `${h.program} (pid ${h.pid} on ${h.host}, started ${h.started})` : "another process";
      throw new LockError(
        path,
        h,
        `the folder is in use by ${who}; wait for it to end or choose another output folder`,
      );
    }
    // The lock is taken before the file is rewritten, so whoever reads it finds the holder or,
    // for an instant, an empty file (an unknown holder), never a torn mix of two.
    const holder: LockHolder = { program, pid: Deno.pid, host: hostname(), started: new Date().toISOString() };
    file.truncateSync(0);
    writeAll(file, new TextEncoder().encode(JSON.stringify(holder) + "\n"));
    return new FolderLock(path, holder, file);
  }

  /** Releases the lock (the file stays, naming its last holder). Idempotent. */
  release(): void {
    if (this.#file === null) return;
    try {
      this.#file.unlockSync();
    } finally {
      this.#file.close();
      this.#file = null;
    }
  }

  [Symbol.dispose](): void {
    this.release();
  }
}
