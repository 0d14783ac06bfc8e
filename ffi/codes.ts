// Generated from native/mdm.h by scripts/gen_ffi.ts: edit the header, not this file.

// The codes of native/mdm.h's enums, keyed in camelCase.

/** `enum mdm_dtype`. */
export const DTYPE = {
  float32: 0,
  float64: 1,
  float16: 2,
  bfloat16: 3,
  int64: 4,
  int32: 5,
  uint8: 6,
  bool: 7,
} as const;

/** `enum mdm_device`. */
export const DEVICE = {
  cpu: -1,
} as const;

/** `enum mdm_unary_op`. */
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

/** `enum mdm_binary_op`. */
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

/** `enum mdm_inplace_op`. */
export const INPLACE = {
  add: 0,
  sub: 1,
  mul: 2,
  div: 3,
  copy: 4,
  fill: 5,
} as const;

/** `enum mdm_reduce_op`. */
export const REDUCE = {
  sum: 0,
  mean: 1,
  amax: 2,
  amin: 3,
  logsumexp: 4,
  all: 5,
  any: 6,
} as const;

/** `enum mdm_reduction`. */
export const REDUCTION = {
  none: 0,
  mean: 1,
  sum: 2,
} as const;

/** `enum mdm_extreme`. */
export const EXTREME = {
  max: 0,
  min: 1,
} as const;

/** `enum mdm_softmax_op`. */
export const SOFTMAX = {
  softmax: 0,
  logSoftmax: 1,
} as const;

/** `enum mdm_pool_op`. */
export const POOL = {
  avg: 0,
  max: 1,
} as const;

/** `enum mdm_interpolate_mode`. */
export const INTERPOLATE = {
  nearest: 0,
  bilinear: 1,
} as const;

/** `enum mdm_pad_mode`. */
export const PAD = {
  constant: 0,
  reflect: 1,
  replicate: 2,
  circular: 3,
} as const;

/** `enum mdm_loss_op`. */
export const LOSS = {
  mse: 0,
  l1: 1,
} as const;

/** `enum mdm_memory_format`. */
export const MEMORY_FORMAT = {
  contiguous: 0,
  channelsLast: 1,
} as const;

/** `enum mdm_optimizer_kind`. */
export const OPTIMIZER = {
  adam: 0,
  adamw: 1,
  sgd: 2,
} as const;

/** `enum mdm_dist_backend`. */
export const DIST_BACKEND = {
  gloo: 0,
  nccl: 1,
} as const;

/** `enum mdm_dist_reduce_op`. */
export const DIST_REDUCE = {
  sum: 0,
  mean: 1,
} as const;

/** Byte offsets of `mdm_status`'s fields, and its size. */
export const STATUS_LAYOUT = { code: 0, reserved: 4, message: 8, size: 16 } as const;
