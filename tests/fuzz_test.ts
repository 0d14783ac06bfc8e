// Fuzzing of every file reader mdm has (PNG, TIFF, BMP, NPY, MoNuSeg XML, safetensors, .pt
// archives and the pickles inside them): a few thousand seeded mutations of small valid files
// (tests/helpers/fuzz_cases.ts), each decoded in a child process (tests/helpers/fuzz_worker.ts)
// so that a crash or a hang is seen from outside. A case fails when its child dies, when it
// takes more than CASE_TIMEOUT_MS, or when the child reports a broken rule (a wrong error class,
// a silent wrong result, an output or peak memory over the limits). Every failure names the seed
// that reproduces it: deno run -A tests/helpers/fuzz_worker.ts --seed N
//
// MDM_FUZZ_CASES (default 10000, about 10 s on two cores) and MDM_FUZZ_FIRST (default 1) choose
// the seeds.
import assert from "node:assert/strict";

const CASES = Number(Deno.env.get("MDM_FUZZ_CASES") ?? 10_000);
const FIRST = Number(Deno.env.get("MDM_FUZZ_FIRST") ?? 1);
const WORKERS = 2;
const CASE_TIMEOUT_MS = 10_000;
// Start-up loads libtorch and builds and decodes the corpus: generous, but not unbounded.
const START_TIMEOUT_MS = 60_000;
const WORKER = new URL("./helpers/fuzz_worker.ts", import.meta.url).pathname;

/** Lines of a child's stdout, with a timeout on each. */
class Lines {
  #reader: ReadableStreamDefaultReader<string>;
  #buffer = "";
  #pending: Promise<ReadableStreamReadResult<string>> | null = null;
  constructor(stream: ReadableStream<Uint8Array>) {
    this.#reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  }
  /** The next line; null at the end of the stream; "timeout" after `ms`. */
  async next(ms: number): Promise<string | null | "timeout"> {
    const deadline = Date.now() + ms;
    for (;;) {
      const nl = this.#buffer.indexOf("\n");
      if (nl >= 0) {
        const line = this.#buffer.slice(0, nl);
        this.#buffer = this.#buffer.slice(nl + 1);
        return line;
      }
      this.#pending ??= this.#reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), Math.max(0, deadline - Date.now()));
      });
      const got = await Promise.race([this.#pending, timeout]);
      clearTimeout(timer);
      if (got === "timeout") return "timeout";
      this.#pending = null;
      if (got.done) return null;
      this.#buffer += got.value;
    }
  }
}

/** One child process and the tail of what it wrote to stderr. */
class Worker {
  readonly child: Deno.ChildProcess;
  readonly lines: Lines;
  readonly stdin: WritableStreamDefaultWriter<Uint8Array>;
  stderr = "";
  /** The child's scratch folder, named in its "ready" line. */
  scratch = "";
  readonly #stderrDone: Promise<void>;

  constructor() {
    this.child = new Deno.Command(Deno.execPath(), {
      // A capped V8 heap turns a runaway allocation into a crash the parent reports.
      args: ["run", "-A", "--v8-flags=--max-old-space-size=1024", WORKER],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.lines = new Lines(this.child.stdout);
    this.stdin = this.child.stdin.getWriter();
    const stderr = this.child.stderr;
    this.#stderrDone = (async () => {
      for await (const chunk of stderr.pipeThrough(new TextDecoderStream())) {
        this.stderr = (this.stderr + chunk).slice(-2000);
      }
    })();
  }

  async send(seed: number): Promise<void> {
    await this.stdin.write(new TextEncoder().encode(`${seed}\n`));
  }

  /** Ends the child: killed, or told there is no more input; returns the peak memory rise it reported. */
  async stop(kill: boolean): Promise<number> {
    let peak = 0;
    if (kill) {
      try {
        this.child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.stdin.close().catch(() => {});
    for (let line = kill ? null : await this.lines.next(CASE_TIMEOUT_MS); typeof line === "string";) {
      if (line.startsWith("peak ")) peak = Number(line.slice(5));
      line = await this.lines.next(CASE_TIMEOUT_MS);
    }
    await this.child.status;
    await this.#stderrDone.catch(() => {});
    await this.child.stdout.cancel().catch(() => {});
    // A killed child could not remove its scratch folder.
    if (kill && this.scratch) await Deno.remove(this.scratch, { recursive: true }).catch(() => {});
    return peak;
  }
}

interface Tally {
  accepted: number;
  rejected: number;
}

Deno.test({
  name: "fuzz: mutated PNG, TIFF, BMP, NPY, XML, safetensors, .pt and pickle files never crash, hang or decode wrongly",
  // The children are awaited and their streams closed, but a killed child's pipes can close late.
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const queue = Array.from({ length: CASES }, (_, i) => FIRST + i);
    const failures: string[] = [];
    const byFormat = new Map<string, Tally>();
    const started = performance.now();
    let peak = 0;

    const run = async () => {
      let worker: Worker | null = null;
      const fresh = async () => {
        const w = new Worker();
        const ready = await w.lines.next(START_TIMEOUT_MS);
        if (typeof ready !== "string" || !ready.startsWith("ready")) {
          await w.stop(true);
          throw new Error(`the fuzz worker did not start (${ready}): ${w.stderr}`);
        }
        w.scratch = ready.split(" ")[2] ?? "";
        return w;
      };
      try {
        while (queue.length > 0) {
          const seed = queue.shift()!;
          worker ??= await fresh();
          await worker.send(seed);
          const start = await worker.lines.next(CASE_TIMEOUT_MS);
          const done = start === `start ${seed}` ? await worker.lines.next(CASE_TIMEOUT_MS) : start;
          const reproduce = `(reproduce: deno run -A tests/helpers/fuzz_worker.ts --seed ${seed})`;
          if (done === "timeout") {
            failures.push(`seed ${seed}: hang, no result within ${CASE_TIMEOUT_MS} ms ${reproduce}`);
            await worker.stop(true);
            worker = null;
          } else if (done === null || !done.startsWith(`done ${seed} `)) {
            const status = await worker.child.status;
            failures.push(
              `seed ${seed}: crash (exit code ${status.code}, signal ${status.signal}) ${reproduce}: ${
                worker.stderr.slice(-500)
              }`,
            );
            await worker.stop(true);
            worker = null;
          } else {
            const [, , format, ...rest] = done.split(" ");
            const outcome = rest.join(" ");
            const tally = byFormat.get(format) ?? { accepted: 0, rejected: 0 };
            byFormat.set(format, tally);
            if (outcome === "accepted") tally.accepted++;
            else if (outcome === "rejected") tally.rejected++;
            else {
              failures.push(`seed ${seed} (${format}): ${outcome} ${reproduce}`);
              if (outcome.startsWith("FAIL peak memory")) {
                await worker.stop(true);
                worker = null;
              }
            }
          }
        }
      } finally {
        if (worker) peak = Math.max(peak, await worker.stop(false));
      }
    };
    await Promise.all(Array.from({ length: WORKERS }, run));

    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const summary = [...byFormat].map(([f, t]) => `${f} ${t.accepted}/${t.accepted + t.rejected}`).join(", ");
    console.log(
      `fuzz: ${CASES} cases (seeds ${FIRST}..${FIRST + CASES - 1}) in ${seconds} s; accepted/run: ${summary}; ` +
        `peak memory rise in a child: ${(peak / 2 ** 20).toFixed(0)} MiB`,
    );
    assert.deepEqual(failures, [], `${failures.length} of ${CASES} cases failed:\n${failures.join("\n")}`);
    // Every format was exercised, and the mutations were neither all fatal nor all harmless.
    assert.equal(byFormat.size, 8);
    for (const [format, t] of byFormat) assert.ok(t.rejected > 0 && t.accepted > 0, `${format}: ${JSON.stringify(t)}`);
  },
});
