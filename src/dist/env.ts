// The variables torchrun (and torch.distributed's env:// rendezvous) describe a worker with.

import process from "node:process";
/** A worker's place in a distributed run, as torchrun's environment variables give it. */
export interface DistEnv {
  /** WORLD_SIZE: how many processes take part. */
  worldSize: number;
  /** RANK: this process's rank, 0..worldSize-1. */
  rank: number;
  /** LOCAL_RANK: its rank on this machine (which GPU it takes); RANK when unset. */
  localRank: number;
  /** MASTER_ADDR: the host rank 0 runs on. */
  masterAddr: string;
  /** MASTER_PORT: the port rank 0 serves the rendezvous on. */
  masterPort: number;
}

/** torchrun's default MASTER_PORT. */
export const DEFAULT_MASTER_PORT = 29500;

function integer(env: Record<string, string | undefined>, name: string, lo: number, hi: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === "") return undefined;
  const v = /^\s*\d+\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(v) || v < lo || v > hi) {
    throw new RangeError(`${name}=${JSON.stringify(raw)}: must be an integer in ${lo}..${hi}`);
  }
  return v;
}

/**
 * Reads WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR and MASTER_PORT (from `env`, the process's
 * environment by default). Returns null when neither WORLD_SIZE nor RANK is set: not a distributed
 * run. With WORLD_SIZE above 1, RANK, MASTER_ADDR and MASTER_PORT are required, as torch's env://
 * rendezvous requires them; with WORLD_SIZE 1 they default to 0, 127.0.0.1 and 29500. Throws a
 * `RangeError` naming the variable that is missing, not an integer in range (RANK below
 * WORLD_SIZE, LOCAL_RANK below LOCAL_WORLD_SIZE when that is set, a port in 1..65535) or empty.
 */
export function distEnv(env: Record<string, string | undefined> = process.env): DistEnv | null {
  const worldSize = integer(env, "WORLD_SIZE", 1, 2 ** 31 - 1);
  if (worldSize === undefined) {
    if (env.RANK !== undefined && env.RANK !== "") {
      throw new RangeError(`RANK=${JSON.stringify(env.RANK)} is set but WORLD_SIZE is not: set both, or neither`);
    }
    return null;
  }
  const need = (name: string): never => {
    throw new RangeError(`WORLD_SIZE=${worldSize} needs ${name} too (as torchrun sets it)`);
  };
  const rank = integer(env, "RANK", 0, worldSize - 1) ?? (worldSize === 1 ? 0 : need("RANK"));
  const localWorldSize = integer(env, "LOCAL_WORLD_SIZE", 1, worldSize);
  const localRank = integer(env, "LOCAL_RANK", 0, (localWorldSize ?? worldSize) - 1) ?? rank;
  const masterPort = integer(env, "MASTER_PORT", 1, 65535) ??
    (worldSize === 1 ? DEFAULT_MASTER_PORT : need("MASTER_PORT"));
  const addr = env.MASTER_ADDR?.trim();
  const masterAddr = addr ? addr : worldSize === 1 ? "127.0.0.1" : need("MASTER_ADDR");
  return { worldSize, rank, localRank, masterAddr, masterPort };
}
