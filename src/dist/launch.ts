// Starting the ranks of a data-parallel run on this machine, as torchrun does: N child processes
// of the same program, each told its place by torchrun's variables (WORLD_SIZE, RANK, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), rank 0's output passed through, the others' lines
// prefixed with their rank, and the rest stopped as soon as one fails. On node: APIs, so that it
// runs under Deno and Node alike.
import { type ChildProcess, spawn } from "node:child_process";
import { createServer } from "node:net";
import process from "node:process";

/** A port on `host` that nobody listens on now: the OS picks it, the listener closes. */
export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => (port ? resolve(port) : reject(new Error(`no free port on ${host}`))));
    });
  });
}

/**
 * The command line that runs the script `script` (a file path) in the runtime running now: Deno's
 * `deno run -A script`, or Node's `node [its flags] script`.
 */
export function scriptCommand(script: string): { command: string; args: string[] } {
  const deno = (globalThis as { Deno?: { version?: { deno?: string } } }).Deno?.version?.deno;
  return deno
    ? { command: process.execPath, args: ["run", "-A", script] }
    : { command: process.execPath, args: [...process.execArgv, script] };
}

/** What `launchLocal` starts. */
export interface LocalLaunch {
  /** How many processes (ranks 0..nproc-1). */
  nproc: number;
  /** The executable, and its arguments before the per-rank ones (see `scriptCommand`). */
  command: string;
  args: readonly string[];
  /** Arguments of rank r after `args`. */
  rankArgs: (rank: number) => string[];
  /** The rendezvous port on 127.0.0.1 (MASTER_PORT); a free one by default. */
  masterPort?: number;
  /** Writes a line of a rank above 0, already prefixed with "[rank r] " (default: stderr). */
  write?: (line: string, stream: "stdout" | "stderr") => void;
  /** Told when a rank fails and the others are being stopped. */
  onFailure?: (failure: RankExit) => void;
  /** Milliseconds between SIGTERM and SIGKILL when stopping the other ranks (5000). */
  killGraceMs?: number;
}

/** How a rank ended. */
export interface RankExit {
  rank: number;
  /** The exit code, or null when a signal ended it. */
  code: number | null;
  signal: string | null;
}

/** "exited with code 2", "was killed by SIGKILL". */
export function describeExit(e: RankExit): string {
  return e.signal ? `was killed by ${e.signal}` : `exited with code ${e.code}`;
}

/**
 * Runs `nproc` ranks of a program on this machine and waits for all of them. Each gets the parent's
 * environment plus WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR (127.0.0.1) and
 * MASTER_PORT. Rank 0 shares this process's stdout and stderr; the others' lines are prefixed
 * "[rank r] ". When a rank fails (a non-zero exit or a signal), the others are stopped (SIGTERM, then
 * SIGKILL after the grace period): they would fail anyway, after the group's timeout. SIGINT and
 * SIGTERM sent to this process are passed on to the ranks.
 * Returns the first failure (null when every rank exited with 0) and every rank's exit.
 */
export async function launchLocal(opts: LocalLaunch): Promise<{ failure: RankExit | null; exits: RankExit[] }> {
  const port = opts.masterPort ?? await freePort();
  const write = opts.write ?? ((line: string) => process.stderr.write(line + "\n"));
  const children: ChildProcess[] = [];
  let failure: RankExit | null = null;
  const grace = opts.killGraceMs ?? 5000;
  const stopOthers = () => {
    for (const c of children) {
      if (c.exitCode !== null || c.signalCode !== null) continue;
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), grace);
      c.once("exit", () => clearTimeout(timer));
    }
  };
  const forward = (signal: NodeJS.Signals) => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  };
  process.on("SIGINT", forward);
  process.on("SIGTERM", forward);
  try {
    const exits = await Promise.all(Array.from({ length: opts.nproc }, (_, rank) => {
      const child = spawn(opts.command, [...opts.args, ...opts.rankArgs(rank)], {
        env: {
          ...process.env,
          WORLD_SIZE: String(opts.nproc),
          RANK: String(rank),
          LOCAL_RANK: String(rank),
          LOCAL_WORLD_SIZE: String(opts.nproc),
          MASTER_ADDR: "127.0.0.1",
          MASTER_PORT: String(port),
        },
        stdio: rank === 0 ? ["ignore", "inherit", "inherit"] : ["ignore", "pipe", "pipe"],
      });
      children.push(child);
      const drained: Promise<void>[] = [];
      if (rank !== 0) {
        for (const stream of ["stdout", "stderr"] as const) {
          drained.push(prefixLines(child[stream]!, (line) => write(`[rank ${rank}] ${line}`, stream)));
        }
      }
      return new Promise<RankExit>((resolve) => {
        child.on("error", (e) => {
          write(`[rank ${rank}] cannot start ${opts.command}: ${e.message}`, "stderr");
          resolve({ rank, code: 127, signal: null });
        });
        child.on("exit", (code, signal) => resolve({ rank, code, signal }));
      }).then(async (exit) => {
        await Promise.all(drained);
        if (failure === null && (exit.code !== 0 || exit.signal !== null)) {
          failure = exit;
          opts.onFailure?.(exit);
          stopOthers();
        }
        return exit;
      });
    }));
    return { failure, exits };
  } finally {
    process.off("SIGINT", forward);
    process.off("SIGTERM", forward);
  }
}

/** Calls `line` for each line the stream carries (the last one even without a newline). */
function prefixLines(stream: NodeJS.ReadableStream, line: (text: string) => void): Promise<void> {
  return new Promise((resolve) => {
    let rest = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const l of lines) line(l.replace(/\r$/, ""));
    });
    stream.on("end", () => {
      if (rest) line(rest);
      resolve();
    });
    stream.on("error", () => resolve());
  });
}
