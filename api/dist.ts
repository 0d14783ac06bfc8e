/**
 * Distributed data-parallel training over torch.distributed's process groups (gloo on CPUs, NCCL
 * on GPUs): a worker's place from torchrun's environment variables, and a `ProcessGroup` that
 * broadcasts and all-reduces tensors.
 * @module
 */
export { DEFAULT_MASTER_PORT, type DistEnv, distEnv } from "../src/dist/env.ts";
export {
  type Backend,
  backendAvailable,
  type BucketOptions,
  DEFAULT_BUCKET_BYTES,
  DEFAULT_TIMEOUT_MS,
  DistributedError,
  type GroupPlace,
  ProcessGroup,
  type ProcessGroupOptions,
  type ReduceOp,
} from "../src/dist/process_group.ts";
