// One rank of tests/dist_test.ts: joins a process group as its JSON argument says, runs a scenario
// and reports each step as one JSON line on stdout ({"event": ...}).
import { tensor } from "../../src/create.ts";
import type { Device } from "../../src/device.ts";
import type { DType } from "../../src/dtype.ts";
import { ProcessGroup } from "../../src/dist/process_group.ts";
import type { Tensor } from "../../src/tensor.ts";

/** What a worker is told to do. */
export interface WorkerConfig {
  /**
   * collectives: every collective, results reported; join: join, barrier, leave; kill: rank 0 waits
   * to be killed while rank 1 all-reduces; stall: rank 0 stays alive but never joins rank 1's
   * all-reduce.
   */
  scenario: "collectives" | "join" | "kill" | "stall";
  rank: number;
  worldSize: number;
  masterPort: number;
  timeoutMs: number;
  /** 127.0.0.1 unless given. */
  masterAddr?: string;
  /** join: stay in the group after the barrier until stdin closes. */
  hold?: boolean;
}

/** One line of a worker's report. */
export interface WorkerEvent {
  event: string;
  [key: string]: unknown;
}

/** Rank `rank`'s element i of case `seed`: small multiples of 1/4, exact in float32 and in their sums. */
export function input(seed: number, rank: number, i: number): number {
  return ((i % 17) + 1) * (rank + 1) + 0.25 * rank + seed;
}

/** Rank `rank`'s element i of the float64 cases: thirds, which no binary float holds exactly. */
export function third(rank: number, i: number): number {
  return (i + 1) / 3 * (rank + 1);
}

/** The tensors of the bucketed cases, with mixed sizes and dtypes (their bytes in the comments). */
export const BUCKET_CASE: { shape: number[]; dtype: "float32" | "float64" }[] = [
  { shape: [3], dtype: "float32" }, // 12
  { shape: [1000], dtype: "float32" }, // 4000: above the bucket size, a bucket of its own
  { shape: [2, 5], dtype: "float32" }, // 40
  { shape: [7, 7, 3], dtype: "float32" }, // 588
  { shape: [1], dtype: "float32" }, // 4
  { shape: [0], dtype: "float32" }, // 0: takes no part
  { shape: [4], dtype: "float64" }, // 32: another dtype, another bucket
  { shape: [6], dtype: "float32" }, // 24
];

/** Rank `rank`'s values for tensor k of BUCKET_CASE. */
export function bucketValues(rank: number, k: number): number[] {
  const n = BUCKET_CASE[k].shape.reduce((a, b) => a * b, 1);
  return Array.from(
    { length: n },
    (_, i) => BUCKET_CASE[k].dtype === "float64" ? third(rank, i + k) : input(k, rank, i),
  );
}

function emit(e: WorkerEvent): void {
  console.log(JSON.stringify(e));
}

function values(t: Tensor<DType, Device>): number[] {
  return Array.from(t.toArray() as ArrayLike<number | bigint>, Number);
}

function bucketTensors(rank: number): Tensor<"float32" | "float64", "cpu">[] {
  return BUCKET_CASE.map(({ shape, dtype }, k) => {
    const v = bucketValues(rank, k);
    const data = dtype === "float64" ? Float64Array.from(v) : Float32Array.from(v);
    return tensor(data, { shape, dtype, device: "cpu" }) as Tensor<"float32" | "float64", "cpu">;
  });
}

function collectives(pg: ProcessGroup, r: number): void {
  pg.barrier();
  emit({ event: "barrier" });
  const f32 = (seed: number, n: number, shape = [n]) =>
    tensor(Float32Array.from({ length: n }, (_, i) => input(seed, r, i)), { shape, device: "cpu" });
  const f64 = (n: number) => tensor(Float64Array.from({ length: n }, (_, i) => third(r, i)), { device: "cpu" });

  const b32 = f32(1, 6, [2, 3]);
  pg.broadcast(b32, 0);
  emit({ event: "result", name: "broadcast float32 from 0", shape: b32.shape, values: values(b32) });
  const b64 = f64(5);
  pg.broadcast(b64, 1);
  emit({ event: "result", name: "broadcast float64 from 1", values: values(b64) });

  for (const op of ["sum", "mean"] as const) {
    const a32 = f32(2, 5);
    pg.allReduce(a32, op);
    emit({ event: "result", name: `${op} float32`, values: values(a32) });
    const a64 = f64(5);
    pg.allReduce(a64, op);
    emit({ event: "result", name: `${op} float64`, values: values(a64) });
  }
  const i64 = tensor(BigInt64Array.from({ length: 4 }, (_, i) => BigInt(10 * r + i)), { device: "cpu" });
  pg.allReduce(i64, "sum");
  emit({ event: "result", name: "sum int64", values: values(i64) });

  // A transposed view is not contiguous: the sum must still land in the viewed storage.
  const base = f32(3, 6, [2, 3]);
  const view = base.transpose(0, 1);
  pg.allReduce(view, "sum");
  emit({ event: "result", name: "sum through a transposed view", shape: view.shape, values: values(base) });

  const param = f32(4, 4).requiresGrad_();
  pg.broadcast(param, 1);
  emit({ event: "result", name: "broadcast a parameter", values: values(param), requiresGrad: param.requiresGrad });

  for (const op of ["sum", "mean"] as const) {
    const ts = bucketTensors(r);
    const buckets = pg.allReduceBuckets(ts, { op, bucketBytes: 1024 });
    emit({ event: "result", name: `buckets ${op}`, buckets, values: ts.map(values), shapes: ts.map((t) => t.shape) });
  }
  const ts = bucketTensors(r);
  const buckets = pg.broadcastBuckets(ts, { root: 1, bucketBytes: 1024 });
  emit({ event: "result", name: "buckets broadcast from 1", buckets, values: ts.map(values) });
  pg.barrier();
}

async function main(cfg: WorkerConfig): Promise<void> {
  const { rank, worldSize, masterPort, timeoutMs, masterAddr = "127.0.0.1" } = cfg;
  let pg: ProcessGroup;
  const start = performance.now();
  try {
    pg = ProcessGroup.create({ masterAddr, masterPort, rank, worldSize, timeoutMs });
  } catch (e) {
    emit({ event: "error", name: (e as Error).name, message: (e as Error).message, ms: performance.now() - start });
    emit({ event: "done" });
    return;
  }
  using _ = pg;
  emit({ event: "joined" });
  if (cfg.scenario === "join") {
    pg.barrier();
    emit({ event: "barrier" });
    if (cfg.hold) await new Response(Deno.stdin.readable).text();
  } else if (cfg.scenario === "collectives") {
    collectives(pg, rank);
  } else if (rank === 0) {
    pg.barrier();
    emit({ event: "waiting" });
    await new Promise((resolve) => setTimeout(resolve, 120_000));
  } else {
    pg.barrier();
    emit({ event: "entering" });
    const t0 = performance.now();
    try {
      pg.allReduce(tensor([1, 2, 3], { device: "cpu" }), "sum");
      emit({ event: "result" });
    } catch (e) {
      emit({ event: "error", name: (e as Error).name, message: (e as Error).message, ms: performance.now() - t0 });
    }
    try {
      pg.barrier();
    } catch (e) {
      emit({ event: "after", message: (e as Error).message });
    }
  }
  emit({ event: "done" });
}

if (import.meta.main) await main(JSON.parse(Deno.args[0]) as WorkerConfig);
