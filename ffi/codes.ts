// Op codes of the shim's multiplexed entry points (native/ops.cpp).

export const UNARY = {
  neg: 0,
  exp: 1,
  log: 2,
  sqrt: 3,
  rsqrt: 4,
  abs: 5,
  sin: 6,
  cos: 7,
  tanh: 8,
  sigmoid: 9,
  relu: 10,
  silu: 11,
  gelu: 12,
  geluTanh: 13,
  floor: 14,
  ceil: 15,
  round: 16,
  sign: 17,
  logicalNot: 18,
  square: 19,
  reciprocal: 20,
  log1p: 21,
  erf: 22,
  expm1: 23,
  isnan: 24,
} as const;

export const BINARY = {
  add: 0,
  sub: 1,
  mul: 2,
  div: 3,
  pow: 4,
  maximum: 5,
  minimum: 6,
  eq: 7,
  ne: 8,
  lt: 9,
  le: 10,
  gt: 11,
  ge: 12,
  logicalAnd: 13,
  logicalOr: 14,
  remainder: 15,
  atan2: 16,
  rsub: 17,
  rdiv: 18,
} as const;

export const REDUCE = {
  sum: 0,
  mean: 1,
  amax: 2,
  amin: 3,
  logsumexp: 4,
  all: 5,
  any: 6,
} as const;

/** Loss reductions (native/core.cpp). */
export const REDUCTION = { none: 0, mean: 1, sum: 2 } as const;
