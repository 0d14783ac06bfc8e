// Process groups on c10d (src/dist, native/dist.cpp), over loopback: each rank is a Deno process of
// its own (tests/helpers/dist_worker.ts). Results are compared with sums worked out here from the
// ranks' inputs; failures (a killed or silent peer, a wrong master, inconsistent launches) must be
// errors that name the call, the rank and the address, within the timeout.
import assert from "node:assert/strict";
import { tensor } from "../src/create.ts";
import { DisposedError } from "../src/error.ts";
import { distEnv } from "../src/dist/env.ts";
import { backendAvailable, DistributedError, ProcessGroup } from "../src/dist/process_group.ts";
import { BUCKET_CASE, bucketValues, input, third, type WorkerConfig, type WorkerEvent } from "./helpers/dist_worker.ts";

const WORKER = new URL("./helpers/dist_worker.ts", import.meta.url).pathname;
const GLOO = backendAvailable("gloo");
const NO_GLOO = "this build has no Gloo (see native/build.sh): process groups cannot run";
// What a failure may take beyond the timeout: waking up, unwinding, reporting.
const SLACK_MS = 2000;

/** A port nobody listens on now: the OS picks it, the listener closes. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** One worker process and the events it has reported so far. */
class Rank {
  readonly events: WorkerEvent[] = [];
  #child: Deno.ChildProcess;
  #stderr: Promise<string>;
  #stdout: Promise<void>;
  #released = false;

  constructor(readonly cfg: WorkerConfig) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", WORKER, JSON.stringify(cfg)],
      env: { NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stderr = new Response(this.#child.stderr).text();
    this.#stdout = this.#read();
  }

  async #read(): Promise<void> {
    let rest = "";
    for await (const chunk of this.#child.stdout.pipeThrough(new TextDecoderStream())) {
      const lines = (rest + chunk).split("\n");
      rest = lines.pop()!;
      for (const line of lines) if (line.trim()) this.events.push(JSON.parse(line));
    }
  }

  /**
   * The first event of that kind, waiting up to `ms` for it. An error reported first throws, unless
   * the scenario expects one (`errors`).
   */
  async event(kind: string, ms = 30_000, errors = false): Promise<WorkerEvent> {
    const deadline = Date.now() + ms;
    while (Date.now() < deadline) {
      const e = this.events.find((x) => x.event === kind || (!errors && x.event === "error"));
      if (e?.event === kind) return e;
      if (e) throw new Error(`rank ${this.cfg.rank} failed before "${kind}": ${e.message}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`rank ${this.cfg.rank} reported no "${kind}" within ${ms} ms: ${JSON.stringify(this.events)}`);
  }

  /** Lets a rank that holds (WorkerConfig.hold) leave. */
  async release(): Promise<void> {
    if (!this.#released) {
      this.#released = true;
      await this.#child.stdin.close();
    }
  }

  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch { /* already exited */ }
  }

  /** Waits for the process to exit; returns its status and its stderr. */
  async exit(): Promise<{ code: number; stderr: string }> {
    await this.release();
    const [status, stderr] = await Promise.all([this.#child.status, this.#stderr, this.#stdout]);
    return { code: status.code, stderr };
  }

  /** The events of the given kind. */
  all(kind: string): WorkerEvent[] {
    return this.events.filter((e) => e.event === kind);
  }
}

/** Runs ranks to completion (killing any left when `body` throws) and returns them. */
async function run(cfgs: WorkerConfig[], body: (ranks: Rank[]) => Promise<void> = async () => {}): Promise<Rank[]> {
  const ranks = cfgs.map((c) => new Rank(c));
  try {
    await body(ranks);
  } finally {
    const exits = ranks.map((r) => r.exit());
    // A rank still running after `body` is one the scenario leaves waiting (or a failure's leftover).
    await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, 60_000))]);
    for (const r of ranks) r.kill();
    await Promise.all(exits);
  }
  return ranks;
}

function config(
  scenario: WorkerConfig["scenario"],
  rank: number,
  worldSize: number,
  masterPort: number,
  timeoutMs = 20_000,
) {
  return { scenario, rank, worldSize, masterPort, timeoutMs };
}

function assertExit(rank: Rank, exit: { code: number; stderr: string }): void {
  assert.equal(exit.code, 0, `rank ${rank.cfg.rank} exited with ${exit.code}:\n${exit.stderr}`);
}

const f32 = Math.fround;

Deno.test({
  name: "dist: two ranks broadcast, all-reduce (sum, mean; float32, float64, int64) and bucket",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    const ranks = await run([config("collectives", 0, 2, port), config("collectives", 1, 2, port)]);
    const results = await Promise.all(ranks.map(async (r) => {
      assertExit(r, await r.exit());
      assert.equal(r.all("barrier").length, 1);
      return Object.fromEntries(r.all("result").map((e) => [e.name as string, e]));
    }));
    const range = (n: number) => Array.from({ length: n }, (_, i) => i);
    // Both ranks hold the same values after every collective; one set of expectations serves both.
    for (const [rank, got] of results.entries()) {
      const at = (name: string) => {
        assert.ok(got[name], `rank ${rank} did not report "${name}"`);
        return got[name];
      };
      assert.deepEqual(at("broadcast float32 from 0").values, range(6).map((i) => input(1, 0, i)));
      assert.deepEqual(at("broadcast float32 from 0").shape, [2, 3]);
      assert.deepEqual(at("broadcast float64 from 1").values, range(5).map((i) => third(1, i)));
      const sum32 = range(5).map((i) => f32(input(2, 0, i) + input(2, 1, i)));
      assert.deepEqual(at("sum float32").values, sum32);
      assert.deepEqual(at("mean float32").values, sum32.map((v) => f32(v / 2)));
      const sum64 = range(5).map((i) => third(0, i) + third(1, i));
      assert.deepEqual(at("sum float64").values, sum64);
      assert.deepEqual(at("mean float64").values, sum64.map((v) => v / 2));
      assert.deepEqual(at("sum int64").values, [10, 12, 14, 16]);
      const view = at("sum through a transposed view");
      assert.deepEqual(view.shape, [3, 2]);
      assert.deepEqual(view.values, range(6).map((i) => f32(input(3, 0, i) + input(3, 1, i))));
      const param = at("broadcast a parameter");
      assert.deepEqual(param.values, range(4).map((i) => input(4, 1, i)));
      assert.equal(param.requiresGrad, true);

      // 1024-byte buckets over 12, 4000, 40, 588, 4, 0, 32 (float64) and 24 bytes: [12] [4000]
      // [40 588 4] [32] [24]; the empty tensor takes no part.
      for (const op of ["sum", "mean"]) {
        const b = at(`buckets ${op}`);
        assert.equal(b.buckets, 5, `${op}: bucket count`);
        assert.deepEqual(b.shapes, BUCKET_CASE.map((c) => c.shape));
        BUCKET_CASE.forEach((c, k) => {
          const round = c.dtype === "float32" ? f32 : (v: number) => v;
          const expected = bucketValues(0, k).map((v, i) => round(v + bucketValues(1, k)[i]));
          const want = op === "sum" ? expected : expected.map((v) => round(v / 2));
          assert.deepEqual((b.values as number[][])[k], want, `${op}: tensor ${k} of shape [${c.shape}]`);
        });
      }
      const bb = at("buckets broadcast from 1");
      assert.equal(bb.buckets, 5);
      BUCKET_CASE.forEach((_, k) => assert.deepEqual((bb.values as number[][])[k], bucketValues(1, k)));
    }
  },
});

Deno.test({
  name: "dist: a rank killed mid-run makes the other's all-reduce fail, naming it, within the timeout",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    const timeoutMs = 10_000;
    const ranks = await run(
      [config("kill", 0, 2, port, timeoutMs), config("kill", 1, 2, port, timeoutMs)],
      async ([r0, r1]) => {
        await r0.event("waiting");
        await r1.event("entering");
        r0.kill();
        await r1.event("done", timeoutMs + SLACK_MS + 5000, true);
      },
    );
    const r1 = ranks[1];
    assertExit(r1, await r1.exit());
    const [err] = r1.all("error");
    assert.ok(err, `rank 1 reported no error: ${JSON.stringify(r1.events)}`);
    assert.equal(err.name, "DistributedError");
    const message = err.message as string;
    assert.match(message, /^ProcessGroup\.allReduce\(\[3\]\) on rank 1 of 2 \(gloo, master 127\.0\.0\.1:\d+\): /);
    assert.ok(message.includes(`127.0.0.1:${port}`), message);
    assert.ok((err.ms as number) < timeoutMs + SLACK_MS, `the error came after ${err.ms} ms`);
    // The group is broken from then on: the next call fails at once, saying why.
    const [after] = r1.all("after");
    assert.match(after.message as string, /ProcessGroup\.barrier\(\).*broken by an earlier failure.*allReduce/);
  },
});

Deno.test({
  name: "dist: a peer that stays alive but never joins the collective fails it after the timeout",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    const timeoutMs = 1500;
    const ranks = await run(
      [config("stall", 0, 2, port, timeoutMs), config("stall", 1, 2, port, timeoutMs)],
      async ([r0, r1]) => {
        await r0.event("waiting");
        await r1.event("done", timeoutMs + SLACK_MS + 5000, true);
        r0.kill();
      },
    );
    const [err] = ranks[1].all("error");
    assert.ok(err, `rank 1 reported no error: ${JSON.stringify(ranks[1].events)}`);
    assert.match(err.message as string, /^ProcessGroup\.allReduce\(\[3\]\) on rank 1 of 2 .*timed out/i);
    assert.ok((err.ms as number) < timeoutMs + SLACK_MS, `the error came after ${err.ms} ms`);
  },
});

Deno.test({
  name: "dist: ranks launched with different world sizes fail clearly, rank 0 within the timeout",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    const timeoutMs = 2000;
    const [r0, r1] = await run([config("join", 0, 2, port, timeoutMs), config("join", 1, 3, port, timeoutMs)]);
    const [e1] = r1.all("error");
    assert.match(e1.message as string, /ProcessGroup\.create\(\) on rank 1 of 3 .*world size 3, but rank 0 .* with 2/);
    const [e0] = r0.all("error");
    assert.match(e0.message as string, /only 1 of 2 ranks joined the group at 127\.0\.0\.1:\d+ within 2000 ms/);
    assert.ok((e0.ms as number) < timeoutMs + SLACK_MS, `rank 0's error came after ${e0.ms} ms`);
  },
});

Deno.test({
  name: "dist: a rank claimed by two processes is refused to the second",
  ignore: !GLOO,
  async fn() {
    const port = freePort();
    // Rank 0 holds the rendezvous open until both claims to rank 1 have been answered.
    const ranks = await run(
      [
        { ...config("join", 0, 2, port, 5000), hold: true },
        config("join", 1, 2, port, 5000),
        config("join", 1, 2, port, 5000),
      ],
      async ([r0, a, b]) => {
        await r0.event("barrier");
        await Promise.all([a.event("done", 30_000, true), b.event("done", 30_000, true)]);
        await r0.release();
      },
    );
    const [joined, refused] = [ranks[1], ranks[2]].sort((a, b) => a.all("error").length - b.all("error").length);
    assert.equal(joined.all("barrier").length, 1, JSON.stringify(joined.events));
    assert.match(refused.all("error")[0]?.message as string, /rank 1 .* is already taken: two processes .* RANK=1/);
  },
});

// An address of this machine other than loopback, where there is one: ranks on several machines
// reach each other through such addresses.
const LAN = Deno.networkInterfaces().find((i) => i.family === "IPv4" && !i.address.startsWith("127."))?.address;

Deno.test({
  name: "dist: a master named by a non-loopback address of this machine (as across machines)",
  ignore: !GLOO || LAN === undefined,
  async fn() {
    const port = freePort();
    const ranks = await run([0, 1].map((r) => ({ ...config("join", r, 2, port, 10_000), masterAddr: LAN })));
    for (const r of ranks) assert.equal(r.all("barrier").length, 1, JSON.stringify(r.events));
  },
});

Deno.test({
  name: "dist: an unreachable master fails with the address within the timeout",
  ignore: !GLOO,
  fn() {
    const port = freePort();
    const timeoutMs = 1500;
    const start = performance.now();
    let err: unknown;
    try {
      ProcessGroup.create({ masterAddr: "127.0.0.2", masterPort: port, rank: 1, worldSize: 2, timeoutMs }).dispose();
    } catch (e) {
      err = e;
    }
    const ms = performance.now() - start;
    assert.ok(err instanceof DistributedError, String(err));
    assert.match(
      err.message,
      new RegExp(
        `^ProcessGroup\\.create\\(\\) on rank 1 of 2 .*cannot reach the rendezvous store of rank 0 at 127\\.0\\.0\\.2:${port} .*within 1500 ms`,
      ),
    );
    assert.ok(ms < timeoutMs + SLACK_MS, `failed after ${ms} ms`);
  },
});

Deno.test({
  name: "dist: rank 0 on a port in use fails at once, naming the port",
  ignore: !GLOO,
  async fn() {
    using listener = Deno.listen({ port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    const [r0] = await run([config("join", 0, 2, port, 5000)]);
    assert.match(
      r0.all("error")[0]?.message as string,
      new RegExp(`rank 0 cannot serve the rendezvous store on port ${port} \\(MASTER_PORT\\):.*in use`),
    );
  },
});

Deno.test({
  name: "dist: a group of one reduces to itself; dispose ends it",
  ignore: !GLOO,
  fn() {
    const pg = ProcessGroup.create({ masterAddr: "127.0.0.1", masterPort: freePort(), rank: 0, worldSize: 1 });
    using t = tensor([1.5, -2, 4], { device: "cpu" });
    pg.allReduce(t, "mean");
    pg.broadcast(t, 0);
    pg.barrier();
    assert.deepEqual(Array.from(t.toArray()), [1.5, -2, 4]);
    assert.throws(() => pg.allReduce(tensor([1n, 2n]), "mean"), /mean needs a floating-point tensor, got Long/);
    pg.dispose();
    pg.dispose();
    assert.throws(() => pg.barrier(), DisposedError);
  },
});

Deno.test("dist: bad arguments are refused by name before any connection", () => {
  const ok = { masterAddr: "127.0.0.1", masterPort: 29500, rank: 0, worldSize: 2 };
  assert.throws(
    () => ProcessGroup.create({ ...ok, rank: 2 }),
    /rank \(of world size 2\) must be an integer in 0\.\.1, got 2/,
  );
  assert.throws(() => ProcessGroup.create({ ...ok, worldSize: 0 }), /worldSize must be an integer in 1\.\./);
  assert.throws(() => ProcessGroup.create({ ...ok, masterPort: 70000 }), /masterPort must be an integer in 1\.\.65535/);
  assert.throws(() => ProcessGroup.create({ ...ok, masterAddr: "" }), /masterAddr must be a host name or address/);
  assert.throws(() => ProcessGroup.create({ ...ok, timeoutMs: 0 }), /timeoutMs must be an integer/);
  // deno-lint-ignore no-explicit-any
  assert.throws(() => ProcessGroup.create({ ...ok, backend: "mpi" as any }), /backend must be "gloo" or "nccl"/);
});

Deno.test({
  name: "dist: a backend this build lacks is refused, naming what it needs",
  ignore: GLOO && backendAvailable("nccl"),
  fn() {
    const backend = GLOO ? "nccl" : "gloo";
    const why = GLOO ? /built without NCCL: it needs a CUDA libtorch/ : /install libgloo-dev|has no Gloo/;
    assert.throws(
      () => ProcessGroup.create({ masterAddr: "127.0.0.1", masterPort: freePort(), rank: 0, worldSize: 1, backend }),
      why,
    );
    if (!GLOO) {
      // CI runs both libtorches with Gloo: a build without it there is a setup failure.
      assert.ok(!Deno.env.get("MDM_TEST_STRICT"), `MDM_TEST_STRICT: ${NO_GLOO}`);
      console.log(NO_GLOO);
    }
  },
});

Deno.test("dist: torchrun's variables are read and checked by name", () => {
  assert.equal(distEnv({}), null);
  assert.deepEqual(distEnv({ WORLD_SIZE: "1" }), {
    worldSize: 1,
    rank: 0,
    localRank: 0,
    masterAddr: "127.0.0.1",
    masterPort: 29500,
  });
  assert.deepEqual(
    distEnv({ WORLD_SIZE: "4", RANK: "3", LOCAL_RANK: "1", MASTER_ADDR: " node0 ", MASTER_PORT: "1234" }),
    { worldSize: 4, rank: 3, localRank: 1, masterAddr: "node0", masterPort: 1234 },
  );
  const full = { WORLD_SIZE: "2", RANK: "1", MASTER_ADDR: "10.0.0.1", MASTER_PORT: "29400" };
  assert.equal(distEnv(full)!.localRank, 1);
  assert.throws(() => distEnv({ RANK: "0" }), /RANK="0" is set but WORLD_SIZE is not/);
  assert.throws(() => distEnv({ ...full, RANK: "2" }), /RANK="2": must be an integer in 0\.\.1/);
  assert.throws(() => distEnv({ ...full, WORLD_SIZE: "two" }), /WORLD_SIZE="two": must be an integer/);
  assert.throws(() => distEnv({ ...full, MASTER_PORT: "0" }), /MASTER_PORT="0": must be an integer in 1\.\.65535/);
  assert.throws(() => distEnv({ ...full, RANK: undefined }), /WORLD_SIZE=2 needs RANK/);
  assert.throws(() => distEnv({ ...full, MASTER_ADDR: "" }), /WORLD_SIZE=2 needs MASTER_ADDR/);
  assert.throws(() => distEnv({ ...full, MASTER_PORT: undefined }), /WORLD_SIZE=2 needs MASTER_PORT/);
  assert.throws(
    () => distEnv({ ...full, LOCAL_WORLD_SIZE: "1", LOCAL_RANK: "1" }),
    /LOCAL_RANK="1": must be .* 0\.\.0/,
  );
});
