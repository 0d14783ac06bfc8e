// Data-parallel collectives across processes and machines on libtorch's c10d (native/dist.cpp):
// a TCPStore rendezvous at rank 0, Gloo for CPU tensors, NCCL for CUDA tensors.
import { DIST_BACKEND, DIST_REDUCE } from "../../ffi/codes.ts";
import { STATUS as ST, sym, takeError } from "../../ffi/lib.ts";
import type { NativePointer } from "../../ffi/port.ts";
import type { Device } from "../device.ts";
import type { DType } from "../dtype.ts";
import { DisposedError, TorchError } from "../error.ts";
import { type Tensor, tensorArray } from "../tensor.ts";
import type { DistEnv } from "./env.ts";

/** The collective backend: Gloo (CPU tensors) or NCCL (CUDA tensors, CUDA builds of libtorch only). */
export type Backend = "gloo" | "nccl";

/** How an all-reduce combines the ranks' tensors: their sum, or their mean (floating types only). */
export type ReduceOp = "sum" | "mean";

/** PyTorch's default timeout for Gloo process groups: 30 minutes. */
export const DEFAULT_TIMEOUT_MS = 30 * 60 * 1000;

/** The longest timeout a group takes: a year. */
export const MAX_TIMEOUT_MS = 365 * 24 * 3600 * 1000;

/** DDP's default bucket size: 25 MiB. */
export const DEFAULT_BUCKET_BYTES = 25 * 1024 * 1024;

const registry = new FinalizationRegistry<NativePointer>((h) => sym.mdm_pg_free(h));

/** Where a process group is: what errors name, so that a log line says which rank failed talking to whom. */
export interface GroupPlace {
  /** This process's rank. */
  rank: number;
  /** The number of processes in the group. */
  worldSize: number;
  /** The collective backend. */
  backend: Backend;
  /** Where rank 0 serves the rendezvous, as this process was told (MASTER_ADDR). */
  masterAddr: string;
  /** The rendezvous port (MASTER_PORT). */
  masterPort: number;
}

/**
 * A collective (or joining the group) failed: a peer died or stopped answering within the timeout,
 * the master was unreachable, the ranks were launched inconsistently, or the arguments were bad.
 * `op` names the call, the other fields the rank and the group; `torchMessage` is c10d's (or mdm's
 * native) own message, which names the peer or the address where it knows it.
 */
export class DistributedError extends TorchError {
  /** "DistributedError". */
  override name = "DistributedError";
  /** The error of collective `op` on the tensors of `inputShapes` in the group at `place`. */
  constructor(
    torchMessage: string,
    op: string,
    inputShapes: (readonly number[] | null)[],
    /** The rank, world size, backend and master of the group. */
    readonly place: GroupPlace,
    /** How the call's inputs read in the message (shapes, or a count of tensors). */
    args: string = inputShapes.map((s) => (s ? `[${s.join(", ")}]` : "-")).join(", "),
  ) {
    super(torchMessage, op, inputShapes);
    const p = place;
    this.message = `${op}(${args}) on rank ${p.rank} of ${p.worldSize} ` +
      `(${p.backend}, master ${p.masterAddr}:${p.masterPort}): ${torchMessage}`;
  }
}

/** Options of `ProcessGroup.create`. */
export interface ProcessGroupOptions {
  /** Host name or address of the machine where rank 0 runs (torchrun's MASTER_ADDR). */
  masterAddr: string;
  /** The TCP port rank 0 serves the rendezvous on, 1..65535 (torchrun's MASTER_PORT). */
  masterPort: number;
  /** This process's rank, 0..worldSize-1 (RANK). */
  rank: number;
  /** How many processes take part (WORLD_SIZE). */
  worldSize: number;
  /** "gloo" (the default) for CPU tensors, "nccl" for CUDA tensors. */
  backend?: Backend;
  /**
   * Milliseconds that joining the group and each collective may take before it fails: a peer that
   * stops answering is an error after this long. 30 minutes by default, as in PyTorch; at most a year.
   */
  timeoutMs?: number;
}

/** Options of the bucketed collectives. */
export interface BucketOptions {
  /** The most bytes one bucket (one collective) holds; 25 MiB by default, as DDP's. */
  bucketBytes?: number;
}

/** True when this build of the native library can create groups of that backend. */
export function backendAvailable(backend: Backend): boolean {
  return sym.mdm_dist_backend_available(backendCode(backend, "backendAvailable")) === 1;
}

function backendCode(backend: unknown, op: string): number {
  if (backend !== "gloo" && backend !== "nccl") {
    throw new TypeError(`${op}: backend must be "gloo" or "nccl", got ${JSON.stringify(backend)}`);
  }
  return DIST_BACKEND[backend];
}

function reduceCode(op: unknown, name: string): number {
  if (op !== "sum" && op !== "mean") {
    throw new TypeError(`${name}: op must be "sum" or "mean", got ${JSON.stringify(op)}`);
  }
  return DIST_REDUCE[op];
}

function integerIn(v: unknown, lo: number, hi: number, what: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${what} must be an integer in ${lo}..${hi}, got ${String(v)}`);
  }
  return v;
}

function bucketBytes(opts: BucketOptions, op: string): bigint {
  const n = opts.bucketBytes ?? DEFAULT_BUCKET_BYTES;
  return BigInt(integerIn(n, 1, Number.MAX_SAFE_INTEGER, `${op}: bucketBytes`));
}

/**
 * One process's membership in a group of processes that run the same program on different data
 * (data parallelism), on libtorch's c10d. Rank 0 serves the rendezvous; every rank calls the same
 * collectives, with tensors of the same shapes and dtypes, in the same order. Each collective works
 * in place and blocks until every rank has contributed; a peer that dies or stops answering makes
 * it throw a `DistributedError` within the group's timeout, never hang. After such a failure the
 * group is broken (the ranks no longer agree on where they are): later calls throw at once, and the
 * process should dispose the group and exit. Free it with `dispose()` or `using`.
 */
export class ProcessGroup implements Disposable {
  #h: NativePointer | null;
  #failure: string | null = null;
  /** This process's rank, 0..worldSize-1. */
  readonly rank: number;
  /** The number of processes in the group. */
  readonly worldSize: number;
  /** The collective backend. */
  readonly backend: Backend;
  /** Where rank 0 serves the rendezvous (MASTER_ADDR). */
  readonly masterAddr: string;
  /** The rendezvous port (MASTER_PORT). */
  readonly masterPort: number;
  /** The bound on joining and on each collective, in milliseconds. */
  readonly timeoutMs: number;

  private constructor(handle: NativePointer, place: GroupPlace, timeoutMs: number) {
    this.#h = handle;
    this.rank = place.rank;
    this.worldSize = place.worldSize;
    this.backend = place.backend;
    this.masterAddr = place.masterAddr;
    this.masterPort = place.masterPort;
    this.timeoutMs = timeoutMs;
    registry.register(this, handle, this);
  }

  /**
   * Joins the group: rank 0 starts the rendezvous store on `masterPort`, the others connect to
   * `masterAddr:masterPort`; returns once all `worldSize` ranks have joined. Blocks the calling
   * thread meanwhile. Throws a `RangeError`/`TypeError` naming a bad option, and a
   * `DistributedError` when the master cannot be reached within the timeout, rank 0 cannot listen
   * on the port, the ranks disagree on the world size, two processes claim one rank, or a rank has
   * not joined within the timeout, or the backend is missing from this build (see
   * `backendAvailable`).
   */
  static create(opts: ProcessGroupOptions): ProcessGroup {
    const op = "ProcessGroup.create";
    const masterAddr = opts.masterAddr;
    if (typeof masterAddr !== "string" || masterAddr === "" || masterAddr.includes("\0")) {
      throw new TypeError(`${op}: masterAddr must be a host name or address, got ${JSON.stringify(masterAddr)}`);
    }
    const masterPort = integerIn(opts.masterPort, 1, 65535, `${op}: masterPort`);
    const worldSize = integerIn(opts.worldSize, 1, 2 ** 31 - 1, `${op}: worldSize`);
    const rank = integerIn(opts.rank, 0, worldSize - 1, `${op}: rank (of world size ${worldSize})`);
    const timeoutMs = integerIn(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, 1, MAX_TIMEOUT_MS, `${op}: timeoutMs`);
    const backend = opts.backend ?? "gloo";
    const code = backendCode(backend, op);
    const place: GroupPlace = { rank, worldSize, backend, masterAddr, masterPort };
    const addr = new TextEncoder().encode(masterAddr + "\0");
    const h = sym.mdm_pg_new(addr, masterPort, rank, worldSize, code, BigInt(timeoutMs), ST);
    if (h === null) throw new DistributedError(takeError() ?? "no process group was created", op, [], place, "");
    return new ProcessGroup(h, place, timeoutMs);
  }

  /**
   * Joins the group that torchrun-style variables describe (`distEnv`), with the given backend and
   * timeout.
   */
  static fromEnv(env: DistEnv, opts: { backend?: Backend; timeoutMs?: number } = {}): ProcessGroup {
    const { masterAddr, masterPort, rank, worldSize } = env;
    return ProcessGroup.create({ masterAddr, masterPort, rank, worldSize, ...opts });
  }

  /** The rank, world size, backend and master, as errors name them. */
  get place(): GroupPlace {
    const { rank, worldSize, backend, masterAddr, masterPort } = this;
    return { rank, worldSize, backend, masterAddr, masterPort };
  }

  /** True once `dispose()` has run. */
  get disposed(): boolean {
    return this.#h === null;
  }

  #ptr(op: string, inputs: readonly Tensor<DType, Device>[], args?: string): NativePointer {
    if (this.#h === null) throw new DisposedError(`${op}: process group used after dispose()`);
    if (this.#failure !== null) {
      throw this.#error(`the group is broken by an earlier failure (${this.#failure})`, op, inputs, args);
    }
    for (const t of inputs) t.ptr;
    return this.#h;
  }

  #error(message: string, op: string, inputs: readonly Tensor<DType, Device>[], args?: string): DistributedError {
    return new DistributedError(message, op, inputs.map((t) => (t.disposed ? null : t.shape)), this.place, args);
  }

  #fail(op: string, inputs: readonly Tensor<DType, Device>[], args?: string): never {
    const message = takeError() ?? "the native call returned no result";
    this.#failure = `${op}: ${message}`;
    throw this.#error(message, op, inputs, args);
  }

  /**
   * Copies rank `root`'s tensor into `tensor` on every other rank, in place; each rank passes a
   * tensor of the same shape and dtype. Parameters that require grad are updated as data.
   */
  broadcast(tensor: Tensor<DType, Device>, root = 0): void {
    const op = "ProcessGroup.broadcast";
    integerIn(root, 0, this.worldSize - 1, `${op}: root`);
    const h = this.#ptr(op, [tensor]);
    if (sym.mdm_pg_broadcast(h, tensor.ptr, root, ST) !== 0) this.#fail(op, [tensor]);
  }

  /** Replaces `tensor` on every rank, in place, by the sum or mean of all ranks' tensors. */
  allReduce(tensor: Tensor<DType, Device>, op: ReduceOp = "sum"): void {
    const name = "ProcessGroup.allReduce";
    const code = reduceCode(op, name);
    const h = this.#ptr(name, [tensor]);
    if (sym.mdm_pg_all_reduce(h, tensor.ptr, code, ST) !== 0) this.#fail(name, [tensor]);
  }

  /**
   * All-reduces many tensors (a model's gradients) as DDP's reducer does: consecutive tensors of
   * one dtype and device are flattened into buckets of at most `bucketBytes`, one collective runs
   * per bucket, all at once, and the results are copied back in place. Every rank passes the same
   * list of shapes and dtypes. Returns the number of buckets (collectives) it took.
   */
  allReduceBuckets(
    tensors: readonly Tensor<DType, Device>[],
    opts: BucketOptions & { op?: ReduceOp } = {},
  ): number {
    const name = "ProcessGroup.allReduceBuckets";
    const code = reduceCode(opts.op ?? "sum", name);
    const bytes = bucketBytes(opts, name);
    const args = `${tensors.length} tensors`;
    const h = this.#ptr(name, tensors, args);
    const n = sym.mdm_pg_all_reduce_buckets(h, tensorArray(tensors), tensors.length, code, bytes, ST);
    if (n < 0) this.#fail(name, tensors, args);
    return n;
  }

  /**
   * Broadcasts many tensors (a model's initial weights) from rank `root`, bucketed as
   * `allReduceBuckets` is. Returns the number of buckets.
   */
  broadcastBuckets(tensors: readonly Tensor<DType, Device>[], opts: BucketOptions & { root?: number } = {}): number {
    const name = "ProcessGroup.broadcastBuckets";
    const root = integerIn(opts.root ?? 0, 0, this.worldSize - 1, `${name}: root`);
    const bytes = bucketBytes(opts, name);
    const args = `${tensors.length} tensors`;
    const h = this.#ptr(name, tensors, args);
    const n = sym.mdm_pg_broadcast_buckets(h, tensorArray(tensors), tensors.length, root, bytes, ST);
    if (n < 0) this.#fail(name, tensors, args);
    return n;
  }

  /** Returns once every rank has called it. */
  barrier(): void {
    const op = "ProcessGroup.barrier";
    if (sym.mdm_pg_barrier(this.#ptr(op, []), ST) !== 0) this.#fail(op, []);
  }

  /**
   * Leaves the group and closes its connections (rank 0's rendezvous store with it). A rank that
   * leaves while others still run collectives makes theirs fail: end with `barrier()` first.
   * Safe to call twice.
   */
  dispose(): void {
    const h = this.#h;
    if (h === null) return;
    this.#h = null;
    registry.unregister(this);
    sym.mdm_pg_free(h);
  }

  /** `dispose()`, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
