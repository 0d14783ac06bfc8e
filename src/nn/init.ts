// Initialisers matching PyTorch's defaults and guided-diffusion's zero-initialised layers.
import { full, rand, randn, zeros } from "../create.ts";
import type { Tensor } from "../tensor.ts";
import type { Init } from "./builder.ts";

/**
 * U(-bound, bound).
 * Draws uniformly from U(-bound, bound).
 */
export function uniform(bound: number): Init {
  return (shape, o) => rand(shape, o).mul_(2 * bound).sub_(bound);
}

/**
 * PyTorch's default for conv and linear weights and biases: kaiming_uniform with a = √5 gives
 * U(-1/√fan_in, 1/√fan_in) for both.
 */
export function torchDefault(fanIn: number): Init {
  return uniform(1 / Math.sqrt(fanIn));
}

/** Draws from N(mean, std²) (ddpm-segmentation's pixel classifier uses N(0, 0.02²)). */
export function normal(std: number, mean = 0): Init {
  return (shape, o) => randn(shape, o).mul_(std).add_(mean);
}

/** All zeros (guided-diffusion's zero_module, and biases). */
export const zerosInit: Init = (shape, o): Tensor => zeros(shape, o);

/** Every element `value` (norm weights start at 1). */
export function constant(value: number): Init {
  return (shape, o) => full(shape, value, o);
}
