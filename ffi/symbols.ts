// Generated from native/mdm.h by scripts/gen_ffi.ts: edit the header, not this file.

// The C ABI of native/, one entry per exported function: for Deno.dlopen, for koffi (its C
// declaration, every pointer a void *) and as TypeScript signatures. Host memory (sizes, data,
// arrays of handles) crosses as a typed array; native objects (handles, statuses) as pointers.
import type { NativeBuffer, NativePointer } from "./port.ts";

/** The shim's functions and their FFI types, for `Deno.dlopen`. */
export const symbols = {
  // core
  mdm_status_new: { parameters: [], result: "pointer" },
  mdm_status_free: { parameters: ["pointer"], result: "void" },
  mdm_status_clear: { parameters: ["pointer"], result: "void" },
  mdm_torch_version: { parameters: [], result: "pointer" },
  mdm_live_tensors: { parameters: [], result: "i64" },
  mdm_free: { parameters: ["pointer"], result: "void" },
  mdm_from_data: { parameters: ["buffer", "i64", "i32", "buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_copy_to_host: { parameters: ["pointer", "buffer", "i64", "pointer"], result: "i32" },
  mdm_full: { parameters: ["buffer", "i32", "f64", "i32", "i32", "pointer"], result: "pointer" },
  mdm_arange: { parameters: ["f64", "f64", "f64", "i32", "i32", "pointer"], result: "pointer" },
  mdm_linspace: { parameters: ["f64", "f64", "i64", "i32", "i32", "pointer"], result: "pointer" },
  mdm_dim: { parameters: ["pointer"], result: "i32" },
  mdm_sizes: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  mdm_dtype: { parameters: ["pointer"], result: "i32" },
  mdm_device: { parameters: ["pointer"], result: "i32" },
  mdm_requires_grad: { parameters: ["pointer"], result: "i32" },
  mdm_is_leaf: { parameters: ["pointer"], result: "i32" },
  mdm_numel: { parameters: ["pointer"], result: "i64" },
  mdm_item: { parameters: ["pointer", "pointer"], result: "f64" },
  mdm_set_num_threads: { parameters: ["i32"], result: "void" },
  mdm_get_num_threads: { parameters: [], result: "i32" },
  mdm_cpu_memory_stats: { parameters: ["buffer"], result: "i32" },
  mdm_empty_cpu_cache: { parameters: [], result: "void" },
  mdm_reset_cpu_peak_memory: { parameters: [], result: "void" },
  mdm_set_blas_threads: { parameters: ["i32"], result: "i32" },
  mdm_cuda_available: { parameters: [], result: "i32" },
  mdm_cuda_device_count: { parameters: [], result: "i32" },
  mdm_synchronize: { parameters: ["i32", "pointer"], result: "i32" },
  // random
  mdm_generator_new: { parameters: ["u64", "i32", "pointer"], result: "pointer" },
  mdm_generator_free: { parameters: ["pointer"], result: "void" },
  mdm_generator_get_state: { parameters: ["pointer", "i32", "pointer"], result: "pointer" },
  mdm_generator_set_state: { parameters: ["pointer", "i32", "pointer", "pointer"], result: "i32" },
  mdm_manual_seed: { parameters: ["u64", "pointer"], result: "i32" },
  mdm_rand: { parameters: ["buffer", "i32", "i32", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_randn: { parameters: ["buffer", "i32", "i32", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_randint: { parameters: ["i64", "i64", "buffer", "i32", "i32", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_randperm: { parameters: ["i32", "i32", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_bernoulli: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  // elementwise and reductions
  mdm_unary: { parameters: ["i32", "pointer", "pointer"], result: "pointer" },
  mdm_binary: { parameters: ["i32", "pointer", "pointer", "pointer"], result: "pointer" },
  mdm_binary_scalar: { parameters: ["i32", "pointer", "f64", "pointer"], result: "pointer" },
  mdm_inplace: { parameters: ["i32", "pointer", "pointer", "pointer"], result: "i32" },
  mdm_inplace_scalar: { parameters: ["i32", "pointer", "f64", "pointer"], result: "i32" },
  mdm_lerp_: { parameters: ["pointer", "pointer", "f64", "pointer"], result: "i32" },
  mdm_where: { parameters: ["pointer", "pointer", "pointer", "pointer"], result: "pointer" },
  mdm_clamp: { parameters: ["pointer", "f64", "f64", "i32", "i32", "pointer"], result: "pointer" },
  mdm_masked_fill: { parameters: ["pointer", "pointer", "f64", "pointer"], result: "pointer" },
  mdm_reduce: { parameters: ["i32", "pointer", "buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_var: { parameters: ["pointer", "buffer", "i32", "i32", "i32", "i32", "pointer"], result: "pointer" },
  mdm_minmax_dim: { parameters: ["i32", "pointer", "i32", "i32", "buffer", "i32", "pointer"], result: "i32" },
  mdm_argminmax: { parameters: ["i32", "pointer", "i32", "i32", "i32", "pointer"], result: "pointer" },
  mdm_argsort: { parameters: ["pointer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_sort: { parameters: ["pointer", "i32", "i32", "buffer", "i32", "pointer"], result: "i32" },
  mdm_topk: { parameters: ["pointer", "i32", "i32", "i32", "buffer", "i32", "pointer"], result: "i32" },
  mdm_cumsum: { parameters: ["pointer", "i32", "pointer"], result: "pointer" },
  mdm_matmul: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  mdm_bmm: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  mdm_linear: { parameters: ["pointer", "pointer", "pointer", "pointer"], result: "pointer" },
  mdm_einsum: { parameters: ["buffer", "buffer", "i32", "pointer"], result: "pointer" },
  // shape
  mdm_reshape: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_view: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_permute: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_transpose: { parameters: ["pointer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_contiguous: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_expand: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_repeat: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_squeeze: { parameters: ["pointer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_unsqueeze: { parameters: ["pointer", "i32", "pointer"], result: "pointer" },
  mdm_flatten: { parameters: ["pointer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_flip: { parameters: ["pointer", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_cat: { parameters: ["buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_stack: { parameters: ["buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_split: { parameters: ["pointer", "buffer", "i32", "i32", "buffer", "i32", "pointer"], result: "i32" },
  mdm_chunk: { parameters: ["pointer", "i32", "i32", "buffer", "i32", "pointer"], result: "i32" },
  mdm_narrow: { parameters: ["pointer", "i32", "i64", "i64", "pointer"], result: "pointer" },
  mdm_slice: { parameters: ["pointer", "i32", "i64", "i64", "i64", "pointer"], result: "pointer" },
  mdm_select: { parameters: ["pointer", "i32", "i64", "pointer"], result: "pointer" },
  mdm_index_select: { parameters: ["pointer", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_gather: { parameters: ["pointer", "i32", "pointer", "pointer"], result: "pointer" },
  mdm_scatter: { parameters: ["pointer", "i32", "pointer", "pointer", "pointer"], result: "pointer" },
  mdm_scatter_add: { parameters: ["pointer", "i32", "pointer", "pointer", "pointer"], result: "pointer" },
  mdm_masked_select: { parameters: ["pointer", "pointer", "pointer"], result: "pointer" },
  mdm_nonzero: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_one_hot: { parameters: ["pointer", "i32", "pointer"], result: "pointer" },
  mdm_to: { parameters: ["pointer", "i32", "i32", "i32", "pointer"], result: "pointer" },
  mdm_clone: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_to_memory_format: { parameters: ["pointer", "i32", "pointer"], result: "pointer" },
  mdm_is_memory_format: { parameters: ["pointer", "i32", "pointer"], result: "i32" },
  // nn
  mdm_conv: { parameters: ["pointer", "pointer", "pointer", "buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_conv_transpose2d: {
    parameters: ["pointer", "pointer", "pointer", "buffer", "i32", "pointer"],
    result: "pointer",
  },
  mdm_group_norm: { parameters: ["pointer", "i32", "pointer", "pointer", "f64", "pointer"], result: "pointer" },
  mdm_batch_norm: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer", "i32", "f64", "f64", "pointer"],
    result: "pointer",
  },
  mdm_layer_norm: {
    parameters: ["pointer", "buffer", "i32", "pointer", "pointer", "f64", "pointer"],
    result: "pointer",
  },
  mdm_softmax: { parameters: ["i32", "pointer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_dropout: { parameters: ["pointer", "f64", "i32", "pointer"], result: "pointer" },
  mdm_pool2d: { parameters: ["i32", "pointer", "buffer", "i32", "i32", "pointer"], result: "pointer" },
  mdm_interpolate: { parameters: ["pointer", "i32", "i32", "i32", "f64", "f64", "i32", "pointer"], result: "pointer" },
  mdm_pad: { parameters: ["pointer", "buffer", "i32", "i32", "f64", "pointer"], result: "pointer" },
  mdm_group_norm_silu: {
    parameters: ["pointer", "i32", "pointer", "pointer", "pointer", "pointer", "f64", "pointer"],
    result: "pointer",
  },
  mdm_sdpa: { parameters: ["pointer", "pointer", "pointer", "f64", "pointer"], result: "pointer" },
  mdm_cross_entropy: {
    parameters: ["pointer", "pointer", "pointer", "i32", "i32", "f64", "pointer"],
    result: "pointer",
  },
  mdm_regression_loss: { parameters: ["i32", "pointer", "pointer", "i32", "pointer"], result: "pointer" },
  // autograd
  mdm_set_requires_grad: { parameters: ["pointer", "i32", "pointer"], result: "i32" },
  mdm_backward: { parameters: ["pointer", "pointer", "i32", "pointer"], result: "i32" },
  mdm_grad: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_zero_grad: { parameters: ["pointer", "i32", "pointer"], result: "i32" },
  mdm_detach: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_set_grad_enabled: { parameters: ["i32"], result: "i32" },
  mdm_set_data: { parameters: ["pointer", "pointer", "pointer"], result: "i32" },
  // optimizers
  mdm_optim_new: { parameters: ["i32", "buffer", "i32", "buffer", "i32", "pointer"], result: "pointer" },
  mdm_optim_free: { parameters: ["pointer"], result: "void" },
  mdm_optim_step: { parameters: ["pointer", "pointer"], result: "i32" },
  mdm_optim_zero_grad: { parameters: ["pointer", "i32", "pointer"], result: "i32" },
  mdm_optim_set_lr: { parameters: ["pointer", "f64", "pointer"], result: "i32" },
  mdm_optim_get_lr: { parameters: ["pointer", "pointer"], result: "f64" },
  mdm_optim_state_save: { parameters: ["pointer", "pointer"], result: "pointer" },
  mdm_optim_state_load: { parameters: ["pointer", "buffer", "i64", "pointer"], result: "i32" },
  mdm_blob_size: { parameters: ["pointer"], result: "i64" },
  mdm_blob_copy: { parameters: ["pointer", "buffer", "i64", "pointer"], result: "i32" },
  mdm_blob_free: { parameters: ["pointer"], result: "void" },
  // files
  mdm_lock_file: { parameters: ["buffer", "buffer", "i64", "pointer"], result: "i32" },
  mdm_unlock_file: { parameters: ["i32"], result: "void" },
  // distributed
  mdm_dist_backend_available: { parameters: ["i32"], result: "i32" },
  mdm_pg_new: { parameters: ["buffer", "i32", "i32", "i32", "i32", "i64", "pointer"], result: "pointer" },
  mdm_pg_free: { parameters: ["pointer"], result: "void" },
  mdm_pg_broadcast: { parameters: ["pointer", "pointer", "i32", "pointer"], result: "i32" },
  mdm_pg_all_reduce: { parameters: ["pointer", "pointer", "i32", "pointer"], result: "i32" },
  mdm_pg_all_reduce_buckets: { parameters: ["pointer", "buffer", "i32", "i32", "i64", "pointer"], result: "i32" },
  mdm_pg_broadcast_buckets: { parameters: ["pointer", "buffer", "i32", "i32", "i64", "pointer"], result: "i32" },
  mdm_pg_barrier: { parameters: ["pointer", "pointer"], result: "i32" },
} as const;

/** The shim's functions as the port presents them, with one signature whatever the runtime. */
export interface NativeFunctions {
  mdm_status_new(): NativePointer | null;
  mdm_status_free(st: NativePointer | null): void;
  mdm_status_clear(st: NativePointer | null): void;
  mdm_torch_version(): NativePointer | null;
  mdm_live_tensors(): number | bigint;
  mdm_free(t: NativePointer | null): void;
  mdm_from_data(
    data: NativeBuffer | null,
    nbytes: number | bigint,
    dtype: number,
    sizes: NativeBuffer | null,
    ndim: number,
    dev: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_copy_to_host(
    t: NativePointer | null,
    dst: NativeBuffer | null,
    nbytes: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_full(
    sizes: NativeBuffer | null,
    ndim: number,
    value: number,
    dtype: number,
    dev: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_arange(
    start: number,
    end: number,
    step: number,
    dtype: number,
    dev: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_linspace(
    start: number,
    end: number,
    steps: number | bigint,
    dtype: number,
    dev: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_dim(t: NativePointer | null): number;
  mdm_sizes(t: NativePointer | null, out: NativeBuffer | null, capacity: number): number;
  mdm_dtype(t: NativePointer | null): number;
  mdm_device(t: NativePointer | null): number;
  mdm_requires_grad(t: NativePointer | null): number;
  mdm_is_leaf(t: NativePointer | null): number;
  mdm_numel(t: NativePointer | null): number | bigint;
  mdm_item(t: NativePointer | null, st: NativePointer | null): number;
  mdm_set_num_threads(n: number): void;
  mdm_get_num_threads(): number;
  mdm_cpu_memory_stats(out: NativeBuffer | null): number;
  mdm_empty_cpu_cache(): void;
  mdm_reset_cpu_peak_memory(): void;
  mdm_set_blas_threads(n: number): number;
  mdm_cuda_available(): number;
  mdm_cuda_device_count(): number;
  mdm_synchronize(dev: number, st: NativePointer | null): number;
  mdm_generator_new(seed: number | bigint, dev: number, st: NativePointer | null): NativePointer | null;
  mdm_generator_free(g: NativePointer | null): void;
  mdm_generator_get_state(g: NativePointer | null, dev: number, st: NativePointer | null): NativePointer | null;
  mdm_generator_set_state(
    g: NativePointer | null,
    dev: number,
    state: NativePointer | null,
    st: NativePointer | null,
  ): number;
  mdm_manual_seed(seed: number | bigint, st: NativePointer | null): number;
  mdm_rand(
    sizes: NativeBuffer | null,
    ndim: number,
    dtype: number,
    dev: number,
    g: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_randn(
    sizes: NativeBuffer | null,
    ndim: number,
    dtype: number,
    dev: number,
    g: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_randint(
    low: number | bigint,
    high: number | bigint,
    sizes: NativeBuffer | null,
    ndim: number,
    dtype: number,
    dev: number,
    g: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_randperm(
    n: number,
    dtype: number,
    dev: number,
    g: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_bernoulli(p: NativePointer | null, g: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_unary(op: number, a: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_binary(
    op: number,
    a: NativePointer | null,
    b: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_binary_scalar(op: number, a: NativePointer | null, v: number, st: NativePointer | null): NativePointer | null;
  mdm_inplace(op: number, a: NativePointer | null, b: NativePointer | null, st: NativePointer | null): number;
  mdm_inplace_scalar(op: number, a: NativePointer | null, v: number, st: NativePointer | null): number;
  mdm_lerp_(a: NativePointer | null, b: NativePointer | null, weight: number, st: NativePointer | null): number;
  mdm_where(
    cond: NativePointer | null,
    a: NativePointer | null,
    b: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_clamp(
    a: NativePointer | null,
    lo: number,
    hi: number,
    has_lo: number,
    has_hi: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_masked_fill(
    a: NativePointer | null,
    mask: NativePointer | null,
    v: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_reduce(
    op: number,
    a: NativePointer | null,
    dims: NativeBuffer | null,
    n: number,
    keepdim: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_var(
    a: NativePointer | null,
    dims: NativeBuffer | null,
    n: number,
    unbiased: number,
    keepdim: number,
    take_sqrt: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_minmax_dim(
    extreme: number,
    a: NativePointer | null,
    dim: number,
    keepdim: number,
    out: NativeBuffer | null,
    capacity: number,
    st: NativePointer | null,
  ): number;
  mdm_argminmax(
    extreme: number,
    a: NativePointer | null,
    dim: number,
    has_dim: number,
    keepdim: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_argsort(a: NativePointer | null, dim: number, descending: number, st: NativePointer | null): NativePointer | null;
  mdm_sort(
    a: NativePointer | null,
    dim: number,
    descending: number,
    out: NativeBuffer | null,
    capacity: number,
    st: NativePointer | null,
  ): number;
  mdm_topk(
    a: NativePointer | null,
    k: number,
    dim: number,
    largest: number,
    out: NativeBuffer | null,
    capacity: number,
    st: NativePointer | null,
  ): number;
  mdm_cumsum(a: NativePointer | null, dim: number, st: NativePointer | null): NativePointer | null;
  mdm_matmul(a: NativePointer | null, b: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_bmm(a: NativePointer | null, b: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_linear(
    x: NativePointer | null,
    w: NativePointer | null,
    b: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_einsum(
    equation: NativeBuffer | null,
    ts: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_reshape(
    a: NativePointer | null,
    sizes: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_view(
    a: NativePointer | null,
    sizes: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_permute(
    a: NativePointer | null,
    dims: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_transpose(a: NativePointer | null, d0: number, d1: number, st: NativePointer | null): NativePointer | null;
  mdm_contiguous(a: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_expand(
    a: NativePointer | null,
    sizes: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_repeat(
    a: NativePointer | null,
    sizes: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_squeeze(a: NativePointer | null, dim: number, has_dim: number, st: NativePointer | null): NativePointer | null;
  mdm_unsqueeze(a: NativePointer | null, dim: number, st: NativePointer | null): NativePointer | null;
  mdm_flatten(a: NativePointer | null, start: number, end: number, st: NativePointer | null): NativePointer | null;
  mdm_flip(
    a: NativePointer | null,
    dims: NativeBuffer | null,
    n: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_cat(ts: NativeBuffer | null, n: number, dim: number, st: NativePointer | null): NativePointer | null;
  mdm_stack(ts: NativeBuffer | null, n: number, dim: number, st: NativePointer | null): NativePointer | null;
  mdm_split(
    a: NativePointer | null,
    sizes: NativeBuffer | null,
    n: number,
    dim: number,
    out: NativeBuffer | null,
    capacity: number,
    st: NativePointer | null,
  ): number;
  mdm_chunk(
    a: NativePointer | null,
    chunks: number,
    dim: number,
    out: NativeBuffer | null,
    capacity: number,
    st: NativePointer | null,
  ): number;
  mdm_narrow(
    a: NativePointer | null,
    dim: number,
    start: number | bigint,
    length: number | bigint,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_slice(
    a: NativePointer | null,
    dim: number,
    start: number | bigint,
    end: number | bigint,
    step: number | bigint,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_select(
    a: NativePointer | null,
    dim: number,
    index: number | bigint,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_index_select(
    a: NativePointer | null,
    dim: number,
    index: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_gather(
    a: NativePointer | null,
    dim: number,
    index: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_scatter(
    a: NativePointer | null,
    dim: number,
    index: NativePointer | null,
    src: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_scatter_add(
    a: NativePointer | null,
    dim: number,
    index: NativePointer | null,
    src: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_masked_select(
    a: NativePointer | null,
    mask: NativePointer | null,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_nonzero(a: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_one_hot(a: NativePointer | null, classes: number, st: NativePointer | null): NativePointer | null;
  mdm_to(
    a: NativePointer | null,
    dtype: number,
    dev: number,
    non_blocking: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_clone(a: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_to_memory_format(a: NativePointer | null, format: number, st: NativePointer | null): NativePointer | null;
  mdm_is_memory_format(a: NativePointer | null, format: number, st: NativePointer | null): number;
  mdm_conv(
    x: NativePointer | null,
    w: NativePointer | null,
    b: NativePointer | null,
    spec: NativeBuffer | null,
    n: number,
    groups: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_conv_transpose2d(
    x: NativePointer | null,
    w: NativePointer | null,
    b: NativePointer | null,
    spec: NativeBuffer | null,
    groups: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_group_norm(
    x: NativePointer | null,
    groups: number,
    w: NativePointer | null,
    b: NativePointer | null,
    eps: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_batch_norm(
    x: NativePointer | null,
    w: NativePointer | null,
    b: NativePointer | null,
    running_mean: NativePointer | null,
    running_var: NativePointer | null,
    training: number,
    momentum: number,
    eps: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_layer_norm(
    x: NativePointer | null,
    shape: NativeBuffer | null,
    n: number,
    w: NativePointer | null,
    b: NativePointer | null,
    eps: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_softmax(
    op: number,
    x: NativePointer | null,
    dim: number,
    dtype: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_dropout(x: NativePointer | null, p: number, train: number, st: NativePointer | null): NativePointer | null;
  mdm_pool2d(
    op: number,
    x: NativePointer | null,
    spec: NativeBuffer | null,
    ceil_mode: number,
    count_include_pad: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_interpolate(
    x: NativePointer | null,
    mode: number,
    out_h: number,
    out_w: number,
    scale_h: number,
    scale_w: number,
    align_corners: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_pad(
    x: NativePointer | null,
    pads: NativeBuffer | null,
    n: number,
    mode: number,
    value: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_group_norm_silu(
    x: NativePointer | null,
    groups: number,
    w: NativePointer | null,
    b: NativePointer | null,
    scale: NativePointer | null,
    shift: NativePointer | null,
    eps: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_sdpa(
    q: NativePointer | null,
    k: NativePointer | null,
    v: NativePointer | null,
    scale: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_cross_entropy(
    logits: NativePointer | null,
    target: NativePointer | null,
    weight: NativePointer | null,
    reduction: number,
    ignore_index: number,
    label_smoothing: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_regression_loss(
    op: number,
    a: NativePointer | null,
    b: NativePointer | null,
    reduction: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_set_requires_grad(t: NativePointer | null, flag: number, st: NativePointer | null): number;
  mdm_backward(
    t: NativePointer | null,
    grad: NativePointer | null,
    retain_graph: number,
    st: NativePointer | null,
  ): number;
  mdm_grad(t: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_zero_grad(t: NativePointer | null, set_to_none: number, st: NativePointer | null): number;
  mdm_detach(t: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_set_grad_enabled(flag: number): number;
  mdm_set_data(t: NativePointer | null, src: NativePointer | null, st: NativePointer | null): number;
  mdm_optim_new(
    kind: number,
    params: NativeBuffer | null,
    n: number,
    hp: NativeBuffer | null,
    nhp: number,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_optim_free(o: NativePointer | null): void;
  mdm_optim_step(o: NativePointer | null, st: NativePointer | null): number;
  mdm_optim_zero_grad(o: NativePointer | null, set_to_none: number, st: NativePointer | null): number;
  mdm_optim_set_lr(o: NativePointer | null, lr: number, st: NativePointer | null): number;
  mdm_optim_get_lr(o: NativePointer | null, st: NativePointer | null): number;
  mdm_optim_state_save(o: NativePointer | null, st: NativePointer | null): NativePointer | null;
  mdm_optim_state_load(
    o: NativePointer | null,
    data: NativeBuffer | null,
    size: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_blob_size(b: NativePointer | null): number | bigint;
  mdm_blob_copy(
    b: NativePointer | null,
    dst: NativeBuffer | null,
    size: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_blob_free(b: NativePointer | null): void;
  mdm_lock_file(
    path: NativeBuffer | null,
    holder: NativeBuffer | null,
    holder_len: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_unlock_file(fd: number): void;
  mdm_dist_backend_available(backend: number): number;
  mdm_pg_new(
    master_addr: NativeBuffer | null,
    master_port: number,
    rank: number,
    world_size: number,
    backend: number,
    timeout_ms: number | bigint,
    st: NativePointer | null,
  ): NativePointer | null;
  mdm_pg_free(pg: NativePointer | null): void;
  mdm_pg_broadcast(pg: NativePointer | null, t: NativePointer | null, root: number, st: NativePointer | null): number;
  mdm_pg_all_reduce(pg: NativePointer | null, t: NativePointer | null, op: number, st: NativePointer | null): number;
  mdm_pg_all_reduce_buckets(
    pg: NativePointer | null,
    ts: NativeBuffer | null,
    n: number,
    op: number,
    bucket_bytes: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_pg_broadcast_buckets(
    pg: NativePointer | null,
    ts: NativeBuffer | null,
    n: number,
    root: number,
    bucket_bytes: number | bigint,
    st: NativePointer | null,
  ): number;
  mdm_pg_barrier(pg: NativePointer | null, st: NativePointer | null): number;
}

/** Each function's C declaration with every pointer a `void *`, as koffi takes it. */
export const PROTOTYPES: Record<keyof NativeFunctions, string> = {
  mdm_status_new: "void * mdm_status_new(void)",
  mdm_status_free: "void mdm_status_free(void * st)",
  mdm_status_clear: "void mdm_status_clear(void * st)",
  mdm_torch_version: "void * mdm_torch_version(void)",
  mdm_live_tensors: "int64_t mdm_live_tensors(void)",
  mdm_free: "void mdm_free(void * t)",
  mdm_from_data:
    "void * mdm_from_data(void * data, int64_t nbytes, int32_t dtype, void * sizes, int32_t ndim, int32_t dev, void * st)",
  mdm_copy_to_host: "int32_t mdm_copy_to_host(void * t, void * dst, int64_t nbytes, void * st)",
  mdm_full: "void * mdm_full(void * sizes, int32_t ndim, double value, int32_t dtype, int32_t dev, void * st)",
  mdm_arange: "void * mdm_arange(double start, double end, double step, int32_t dtype, int32_t dev, void * st)",
  mdm_linspace: "void * mdm_linspace(double start, double end, int64_t steps, int32_t dtype, int32_t dev, void * st)",
  mdm_dim: "int32_t mdm_dim(void * t)",
  mdm_sizes: "int32_t mdm_sizes(void * t, void * out, int32_t capacity)",
  mdm_dtype: "int32_t mdm_dtype(void * t)",
  mdm_device: "int32_t mdm_device(void * t)",
  mdm_requires_grad: "int32_t mdm_requires_grad(void * t)",
  mdm_is_leaf: "int32_t mdm_is_leaf(void * t)",
  mdm_numel: "int64_t mdm_numel(void * t)",
  mdm_item: "double mdm_item(void * t, void * st)",
  mdm_set_num_threads: "void mdm_set_num_threads(int32_t n)",
  mdm_get_num_threads: "int32_t mdm_get_num_threads(void)",
  mdm_cpu_memory_stats: "int32_t mdm_cpu_memory_stats(void * out)",
  mdm_empty_cpu_cache: "void mdm_empty_cpu_cache(void)",
  mdm_reset_cpu_peak_memory: "void mdm_reset_cpu_peak_memory(void)",
  mdm_set_blas_threads: "int32_t mdm_set_blas_threads(int32_t n)",
  mdm_cuda_available: "int32_t mdm_cuda_available(void)",
  mdm_cuda_device_count: "int32_t mdm_cuda_device_count(void)",
  mdm_synchronize: "int32_t mdm_synchronize(int32_t dev, void * st)",
  mdm_generator_new: "void * mdm_generator_new(uint64_t seed, int32_t dev, void * st)",
  mdm_generator_free: "void mdm_generator_free(void * g)",
  mdm_generator_get_state: "void * mdm_generator_get_state(void * g, int32_t dev, void * st)",
  mdm_generator_set_state: "int32_t mdm_generator_set_state(void * g, int32_t dev, void * state, void * st)",
  mdm_manual_seed: "int32_t mdm_manual_seed(uint64_t seed, void * st)",
  mdm_rand: "void * mdm_rand(void * sizes, int32_t ndim, int32_t dtype, int32_t dev, void * g, void * st)",
  mdm_randn: "void * mdm_randn(void * sizes, int32_t ndim, int32_t dtype, int32_t dev, void * g, void * st)",
  mdm_randint:
    "void * mdm_randint(int64_t low, int64_t high, void * sizes, int32_t ndim, int32_t dtype, int32_t dev, void * g, void * st)",
  mdm_randperm: "void * mdm_randperm(int32_t n, int32_t dtype, int32_t dev, void * g, void * st)",
  mdm_bernoulli: "void * mdm_bernoulli(void * p, void * g, void * st)",
  mdm_unary: "void * mdm_unary(int32_t op, void * a, void * st)",
  mdm_binary: "void * mdm_binary(int32_t op, void * a, void * b, void * st)",
  mdm_binary_scalar: "void * mdm_binary_scalar(int32_t op, void * a, double v, void * st)",
  mdm_inplace: "int32_t mdm_inplace(int32_t op, void * a, void * b, void * st)",
  mdm_inplace_scalar: "int32_t mdm_inplace_scalar(int32_t op, void * a, double v, void * st)",
  mdm_lerp_: "int32_t mdm_lerp_(void * a, void * b, double weight, void * st)",
  mdm_where: "void * mdm_where(void * cond, void * a, void * b, void * st)",
  mdm_clamp: "void * mdm_clamp(void * a, double lo, double hi, int32_t has_lo, int32_t has_hi, void * st)",
  mdm_masked_fill: "void * mdm_masked_fill(void * a, void * mask, double v, void * st)",
  mdm_reduce: "void * mdm_reduce(int32_t op, void * a, void * dims, int32_t n, int32_t keepdim, void * st)",
  mdm_var:
    "void * mdm_var(void * a, void * dims, int32_t n, int32_t unbiased, int32_t keepdim, int32_t take_sqrt, void * st)",
  mdm_minmax_dim:
    "int32_t mdm_minmax_dim(int32_t extreme, void * a, int32_t dim, int32_t keepdim, void * out, int32_t capacity, void * st)",
  mdm_argminmax:
    "void * mdm_argminmax(int32_t extreme, void * a, int32_t dim, int32_t has_dim, int32_t keepdim, void * st)",
  mdm_argsort: "void * mdm_argsort(void * a, int32_t dim, int32_t descending, void * st)",
  mdm_sort: "int32_t mdm_sort(void * a, int32_t dim, int32_t descending, void * out, int32_t capacity, void * st)",
  mdm_topk:
    "int32_t mdm_topk(void * a, int32_t k, int32_t dim, int32_t largest, void * out, int32_t capacity, void * st)",
  mdm_cumsum: "void * mdm_cumsum(void * a, int32_t dim, void * st)",
  mdm_matmul: "void * mdm_matmul(void * a, void * b, void * st)",
  mdm_bmm: "void * mdm_bmm(void * a, void * b, void * st)",
  mdm_linear: "void * mdm_linear(void * x, void * w, void * b, void * st)",
  mdm_einsum: "void * mdm_einsum(void * equation, void * ts, int32_t n, void * st)",
  mdm_reshape: "void * mdm_reshape(void * a, void * sizes, int32_t n, void * st)",
  mdm_view: "void * mdm_view(void * a, void * sizes, int32_t n, void * st)",
  mdm_permute: "void * mdm_permute(void * a, void * dims, int32_t n, void * st)",
  mdm_transpose: "void * mdm_transpose(void * a, int32_t d0, int32_t d1, void * st)",
  mdm_contiguous: "void * mdm_contiguous(void * a, void * st)",
  mdm_expand: "void * mdm_expand(void * a, void * sizes, int32_t n, void * st)",
  mdm_repeat: "void * mdm_repeat(void * a, void * sizes, int32_t n, void * st)",
  mdm_squeeze: "void * mdm_squeeze(void * a, int32_t dim, int32_t has_dim, void * st)",
  mdm_unsqueeze: "void * mdm_unsqueeze(void * a, int32_t dim, void * st)",
  mdm_flatten: "void * mdm_flatten(void * a, int32_t start, int32_t end, void * st)",
  mdm_flip: "void * mdm_flip(void * a, void * dims, int32_t n, void * st)",
  mdm_cat: "void * mdm_cat(void * ts, int32_t n, int32_t dim, void * st)",
  mdm_stack: "void * mdm_stack(void * ts, int32_t n, int32_t dim, void * st)",
  mdm_split:
    "int32_t mdm_split(void * a, void * sizes, int32_t n, int32_t dim, void * out, int32_t capacity, void * st)",
  mdm_chunk: "int32_t mdm_chunk(void * a, int32_t chunks, int32_t dim, void * out, int32_t capacity, void * st)",
  mdm_narrow: "void * mdm_narrow(void * a, int32_t dim, int64_t start, int64_t length, void * st)",
  mdm_slice: "void * mdm_slice(void * a, int32_t dim, int64_t start, int64_t end, int64_t step, void * st)",
  mdm_select: "void * mdm_select(void * a, int32_t dim, int64_t index, void * st)",
  mdm_index_select: "void * mdm_index_select(void * a, int32_t dim, void * index, void * st)",
  mdm_gather: "void * mdm_gather(void * a, int32_t dim, void * index, void * st)",
  mdm_scatter: "void * mdm_scatter(void * a, int32_t dim, void * index, void * src, void * st)",
  mdm_scatter_add: "void * mdm_scatter_add(void * a, int32_t dim, void * index, void * src, void * st)",
  mdm_masked_select: "void * mdm_masked_select(void * a, void * mask, void * st)",
  mdm_nonzero: "void * mdm_nonzero(void * a, void * st)",
  mdm_one_hot: "void * mdm_one_hot(void * a, int32_t classes, void * st)",
  mdm_to: "void * mdm_to(void * a, int32_t dtype, int32_t dev, int32_t non_blocking, void * st)",
  mdm_clone: "void * mdm_clone(void * a, void * st)",
  mdm_to_memory_format: "void * mdm_to_memory_format(void * a, int32_t format, void * st)",
  mdm_is_memory_format: "int32_t mdm_is_memory_format(void * a, int32_t format, void * st)",
  mdm_conv: "void * mdm_conv(void * x, void * w, void * b, void * spec, int32_t n, int32_t groups, void * st)",
  mdm_conv_transpose2d:
    "void * mdm_conv_transpose2d(void * x, void * w, void * b, void * spec, int32_t groups, void * st)",
  mdm_group_norm: "void * mdm_group_norm(void * x, int32_t groups, void * w, void * b, double eps, void * st)",
  mdm_batch_norm:
    "void * mdm_batch_norm(void * x, void * w, void * b, void * running_mean, void * running_var, int32_t training, double momentum, double eps, void * st)",
  mdm_layer_norm: "void * mdm_layer_norm(void * x, void * shape, int32_t n, void * w, void * b, double eps, void * st)",
  mdm_softmax: "void * mdm_softmax(int32_t op, void * x, int32_t dim, int32_t dtype, void * st)",
  mdm_dropout: "void * mdm_dropout(void * x, double p, int32_t train, void * st)",
  mdm_pool2d:
    "void * mdm_pool2d(int32_t op, void * x, void * spec, int32_t ceil_mode, int32_t count_include_pad, void * st)",
  mdm_interpolate:
    "void * mdm_interpolate(void * x, int32_t mode, int32_t out_h, int32_t out_w, double scale_h, double scale_w, int32_t align_corners, void * st)",
  mdm_pad: "void * mdm_pad(void * x, void * pads, int32_t n, int32_t mode, double value, void * st)",
  mdm_group_norm_silu:
    "void * mdm_group_norm_silu(void * x, int32_t groups, void * w, void * b, void * scale, void * shift, double eps, void * st)",
  mdm_sdpa: "void * mdm_sdpa(void * q, void * k, void * v, double scale, void * st)",
  mdm_cross_entropy:
    "void * mdm_cross_entropy(void * logits, void * target, void * weight, int32_t reduction, int32_t ignore_index, double label_smoothing, void * st)",
  mdm_regression_loss: "void * mdm_regression_loss(int32_t op, void * a, void * b, int32_t reduction, void * st)",
  mdm_set_requires_grad: "int32_t mdm_set_requires_grad(void * t, int32_t flag, void * st)",
  mdm_backward: "int32_t mdm_backward(void * t, void * grad, int32_t retain_graph, void * st)",
  mdm_grad: "void * mdm_grad(void * t, void * st)",
  mdm_zero_grad: "int32_t mdm_zero_grad(void * t, int32_t set_to_none, void * st)",
  mdm_detach: "void * mdm_detach(void * t, void * st)",
  mdm_set_grad_enabled: "int32_t mdm_set_grad_enabled(int32_t flag)",
  mdm_set_data: "int32_t mdm_set_data(void * t, void * src, void * st)",
  mdm_optim_new: "void * mdm_optim_new(int32_t kind, void * params, int32_t n, void * hp, int32_t nhp, void * st)",
  mdm_optim_free: "void mdm_optim_free(void * o)",
  mdm_optim_step: "int32_t mdm_optim_step(void * o, void * st)",
  mdm_optim_zero_grad: "int32_t mdm_optim_zero_grad(void * o, int32_t set_to_none, void * st)",
  mdm_optim_set_lr: "int32_t mdm_optim_set_lr(void * o, double lr, void * st)",
  mdm_optim_get_lr: "double mdm_optim_get_lr(void * o, void * st)",
  mdm_optim_state_save: "void * mdm_optim_state_save(void * o, void * st)",
  mdm_optim_state_load: "int32_t mdm_optim_state_load(void * o, void * data, int64_t size, void * st)",
  mdm_blob_size: "int64_t mdm_blob_size(void * b)",
  mdm_blob_copy: "int32_t mdm_blob_copy(void * b, void * dst, int64_t size, void * st)",
  mdm_blob_free: "void mdm_blob_free(void * b)",
  mdm_lock_file: "int32_t mdm_lock_file(void * path, void * holder, int64_t holder_len, void * st)",
  mdm_unlock_file: "void mdm_unlock_file(int32_t fd)",
  mdm_dist_backend_available: "int32_t mdm_dist_backend_available(int32_t backend)",
  mdm_pg_new:
    "void * mdm_pg_new(void * master_addr, int32_t master_port, int32_t rank, int32_t world_size, int32_t backend, int64_t timeout_ms, void * st)",
  mdm_pg_free: "void mdm_pg_free(void * pg)",
  mdm_pg_broadcast: "int32_t mdm_pg_broadcast(void * pg, void * t, int32_t root, void * st)",
  mdm_pg_all_reduce: "int32_t mdm_pg_all_reduce(void * pg, void * t, int32_t op, void * st)",
  mdm_pg_all_reduce_buckets:
    "int32_t mdm_pg_all_reduce_buckets(void * pg, void * ts, int32_t n, int32_t op, int64_t bucket_bytes, void * st)",
  mdm_pg_broadcast_buckets:
    "int32_t mdm_pg_broadcast_buckets(void * pg, void * ts, int32_t n, int32_t root, int64_t bucket_bytes, void * st)",
  mdm_pg_barrier: "int32_t mdm_pg_barrier(void * pg, void * st)",
};
