// Crash-safe file replacement: a reader of `path` sees the old file or the complete new one, never
// a half-written one, whatever happens (an exception, a killed process, a power cut) mid-write.

/** Writes all of `bytes`: writeSync may write fewer bytes than asked. */
export function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  for (let at = 0; at < bytes.byteLength;) at += file.writeSync(bytes.subarray(at));
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
export function writeFileAtomic(path: string, write: (file: Deno.FsFile) => void): void {
  const dir = dirOf(path);
  const tmp = `${dir}/.${baseOf(path)}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  const file = Deno.openSync(tmp, { write: true, createNew: true });
  try {
    try {
      write(file);
      // The data must be on disk before the rename is: otherwise a crash could leave the new name
      // pointing at a file whose blocks were never written.
      file.syncSync();
    } finally {
      file.close();
    }
    Deno.renameSync(tmp, path);
  } catch (e) {
    try {
      Deno.removeSync(tmp);
    } catch { /* already gone: nothing to clean up */ }
    throw e;
  }
  syncDir(dir);
}

/** Persists the rename itself (the folder entry). Best effort: not every platform can open a folder. */
function syncDir(dir: string): void {
  try {
    using d = Deno.openSync(dir, { read: true });
    d.syncSync();
  } catch { /* the file is complete either way; only its name's durability is not guaranteed */ }
}
