// Running the project's programs (train.ts, segment.ts) as a user does, in subprocesses, for the
// end-to-end tests; and their scratch folder.
import assert from "node:assert/strict";

export const ROOT = new URL("../..", import.meta.url).pathname;

/** A temporary folder, removed when the test file's process unloads. */
export function tempDir(prefix: string): string {
  const dir = Deno.makeTempDirSync({ prefix });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* already gone */ }
  });
  return dir;
}

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run -A` of a script in the repository root, output captured, colours off. */
export function scriptCommand(script: string, args: string[]): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}${script}`, ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
}

export async function runScript(script: string, args: string[]): Promise<Run> {
  const out = await scriptCommand(script, args).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** Runs a script and insists that it succeeded, showing its stderr otherwise. */
export async function runScriptOk(script: string, args: string[]): Promise<Run> {
  const r = await runScript(script, args);
  assert.equal(r.code, 0, `${script} ${args.join(" ")} exited with ${r.code}:\n${r.stderr.slice(-3000)}`);
  return r;
}
