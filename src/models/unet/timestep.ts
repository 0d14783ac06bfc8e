// Sinusoidal timestep embedding (guided-diffusion's timestep_embedding).
import { arange, zeros } from "../../create.ts";
import type { Device } from "../../device.ts";
import { cat } from "../../functional.ts";
import type { Tensor } from "../../tensor.ts";
import { tidy } from "../../scope.ts";

// [B] integer or float timesteps -> [B, dim] float32: cat(cos(t·f), sin(t·f)), f_i = 10000^(-i/half)
/**
 * Sinusoidal timestep embedding (guided-diffusion's timestep_embedding): t [B] (integer or float
 * timesteps) -> [B, dim] float32, cat(cos(t·f), sin(t·f)) with f_i = maxPeriod^(-i/half), zero-padded for odd `dim`.
 */
export function timestepEmbedding<V extends Device>(
  t: Tensor<"int64" | "int32" | "float32" | "float64", V>,
  dim: number,
  maxPeriod = 10000,
): Tensor<"float32", V> {
  return tidy(() => {
    const half = Math.floor(dim / 2);
    const freqs = arange(0, half, 1, { dtype: "float32", device: t.device }).mul(-Math.log(maxPeriod) / half).exp();
    const args = t.float().unsqueeze(1).mul(freqs.unsqueeze(0));
    const parts = [args.cos(), args.sin()];
    if (dim % 2) parts.push(zeros([t.size(0), 1], { device: t.device }));
    return cat(parts, 1) as Tensor<"float32", V>;
  });
}
