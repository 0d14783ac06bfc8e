// What a data-parallel training loop needs from a process group beyond single collectives: the
// gradients of a model summed across ranks in buckets, a number summed across ranks, bytes and JSON
// sent from one rank to all (a checkpoint's state, an error), and a count of the ranks that failed.
import { tensor, zeros } from "../create.ts";
import type { Device } from "../device.ts";
import type { FloatDType } from "../dtype.ts";
import { tidy } from "../scope.ts";
import type { Tensor } from "../tensor.ts";
import { DEFAULT_BUCKET_BYTES, type ProcessGroup } from "./process_group.ts";

/** Bytes that `broadcastBytes` sends in one collective: large states go in pieces of this size. */
const BYTES_PER_PIECE = 64 * 1024 * 1024;

/**
 * One rank's side of data-parallel training on a process group: every rank runs the same steps,
 * each on its share of the batch, and calls the same methods in the same order. The small tensors
 * these methods make (a loss, a byte count) live on `device`: the CPU for Gloo, the rank's GPU for
 * NCCL.
 */
export class DataParallelGroup {
  /**
   * @param group the process group (the caller keeps ownership: dispose it after a last `barrier()`).
   * @param device where the helper tensors are made: "cpu" for Gloo, this rank's CUDA device for NCCL.
   * @param bucketBytes the most bytes of gradients one all-reduce carries (DDP's 25 MiB by default).
   */
  constructor(
    readonly group: ProcessGroup,
    readonly device: Device = "cpu",
    readonly bucketBytes: number = DEFAULT_BUCKET_BYTES,
  ) {}

  /** This process's rank. */
  get rank(): number {
    return this.group.rank;
  }

  /** The number of processes. */
  get worldSize(): number {
    return this.group.worldSize;
  }

  /**
   * Replaces each parameter's gradient by the sum of every rank's, bucketed. A parameter that has
   * no gradient on this rank (no backward pass reached it) gets zeros first, since every rank must
   * pass the same tensors. Returns the number of buckets (collectives).
   * @throws DistributedError when a peer fails or does not answer within the group's timeout.
   */
  syncGradients(params: readonly Tensor<FloatDType>[]): number {
    return tidy(() => {
      const missing = params.filter((p) => p.grad === null);
      // There is no setter for a gradient: a backward pass through p·0 leaves zeros in p.grad.
      if (missing.length) missing.map((p) => p.mul(0).sum()).reduce((a, b) => a.add(b)).backward();
      return this.group.allReduceBuckets(params.map((p) => p.grad!), { op: "sum", bucketBytes: this.bucketBytes });
    });
  }

  /** The sum of `x` over the ranks (in float64). */
  sumLoss(x: number): number {
    return tidy(() => {
      const t = tensor(Float64Array.of(x), { device: this.device });
      this.group.allReduce(t, "sum");
      return t.item();
    });
  }

  /** How many ranks pass `failed` true: every rank learns whether any rank failed. */
  countFailures(failed: boolean): number {
    return tidy(() => {
      const t = tensor(Float64Array.of(failed ? 1 : 0), { device: this.device });
      this.group.allReduce(t, "sum");
      return Math.round(t.item());
    });
  }

  /**
   * Copies `root`'s tensors into every other rank's, in place, bucketed (a model's weights, buffers
   * and averages). Every rank passes the same list of shapes and dtypes in the same order.
   */
  broadcastTensors(tensors: readonly Tensor[], root = 0): void {
    this.group.broadcastBuckets(tensors, { root, bucketBytes: this.bucketBytes });
  }

  /**
   * Sends `bytes` from `root` to every rank and returns them (on `root`, `bytes` itself). The other
   * ranks pass null; their count comes first, then the bytes in pieces of 64 MiB.
   * @throws TypeError on `root` when `bytes` is null.
   */
  broadcastBytes(bytes: Uint8Array | null, root = 0): Uint8Array {
    const mine = this.rank === root;
    if (mine && bytes === null) throw new TypeError(`broadcastBytes: rank ${root} (the root) must pass the bytes`);
    const length = tidy(() => {
      const n = tensor(Float64Array.of(mine ? bytes!.length : 0), { device: this.device });
      this.group.broadcast(n, root);
      return n.item();
    });
    const out = mine ? bytes! : new Uint8Array(length);
    for (let at = 0; at < length; at += BYTES_PER_PIECE) {
      const n = Math.min(BYTES_PER_PIECE, length - at);
      tidy(() => {
        const piece = mine
          ? tensor(out.subarray(at, at + n), { device: this.device })
          : zeros([n], { dtype: "uint8", device: this.device });
        this.group.broadcast(piece, root);
        if (!mine) out.set(piece.toArray() as Uint8Array, at);
      });
    }
    return out;
  }

  /** Sends a JSON value from `root` to every rank (the others pass null) and returns it. */
  broadcastJson<T>(value: T | null, root = 0): T {
    const mine = this.rank === root;
    const bytes = this.broadcastBytes(mine ? new TextEncoder().encode(JSON.stringify(value)) : null, root);
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  }

  /** Returns once every rank has called it. */
  barrier(): void {
    this.group.barrier();
  }
}
