/*
 * mdm's native contract: the C ABI of build/libmdm_torch.so. The one place where a function, an op
 * code or the status block is declared; ffi/symbols.ts and ffi/codes.ts are generated from this file
 * (deno run -A scripts/gen_ffi.ts), and tests/contract_test.ts checks that they, and the library's
 * exported symbols, agree with it.
 *
 * Conventions: tensors are opaque handles that the caller frees with mdm_free; sizes and lists
 * arrive as a pointer and a length; booleans are int32 (0 or 1); every call that can fail takes the
 * caller's status block last and, on failure, returns null, -1 or 1 (as documented per function)
 * with the status's code set and its message naming the problem. No C++ type crosses this boundary
 * and no C++ exception escapes it.
 */
#ifndef MDM_H
#define MDM_H

#include <stdint.h>

#if defined(_WIN32)
#define MDM_API __declspec(dllexport)
#else
#define MDM_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Per-call error report. The caller owns it and passes it to every fallible entry point, so calls
 * made from other threads never race on shared error state. */
typedef struct mdm_status {
  int32_t code; /* 0 ok, 1 error */
  int32_t reserved;
  char* message; /* owned; replaced on the next failure, freed with the status */
} mdm_status;

typedef struct mdm_tensor_s* mdm_tensor;
typedef struct mdm_generator_s* mdm_generator;
typedef struct mdm_optimizer_s* mdm_optimizer;
typedef struct mdm_blob_s* mdm_blob;

/* Element types. */
enum mdm_dtype {
  MDM_DTYPE_FLOAT32 = 0,
  MDM_DTYPE_FLOAT64 = 1,
  MDM_DTYPE_FLOAT16 = 2,
  MDM_DTYPE_BFLOAT16 = 3,
  MDM_DTYPE_INT64 = 4,
  MDM_DTYPE_INT32 = 5,
  MDM_DTYPE_UINT8 = 6,
  MDM_DTYPE_BOOL = 7
};

/* Devices: the CPU, or CUDA device k for k >= 0. */
enum mdm_device { MDM_DEVICE_CPU = -1 };

enum mdm_unary_op {
  MDM_UNARY_NEG = 0,
  MDM_UNARY_EXP = 1,
  MDM_UNARY_LOG = 2,
  MDM_UNARY_SQRT = 3,
  MDM_UNARY_RSQRT = 4,
  MDM_UNARY_ABS = 5,
  MDM_UNARY_SIN = 6,
  MDM_UNARY_COS = 7,
  MDM_UNARY_TANH = 8,
  MDM_UNARY_SIGMOID = 9,
  MDM_UNARY_RELU = 10,
  MDM_UNARY_SILU = 11,
  MDM_UNARY_GELU = 12,
  MDM_UNARY_GELU_TANH = 13,
  MDM_UNARY_FLOOR = 14,
  MDM_UNARY_CEIL = 15,
  MDM_UNARY_ROUND = 16,
  MDM_UNARY_SIGN = 17,
  MDM_UNARY_LOGICAL_NOT = 18,
  MDM_UNARY_SQUARE = 19,
  MDM_UNARY_RECIPROCAL = 20,
  MDM_UNARY_LOG1P = 21,
  MDM_UNARY_ERF = 22,
  MDM_UNARY_EXPM1 = 23,
  MDM_UNARY_ISNAN = 24
};

/* Binary ops: tensor ⊕ tensor (mdm_binary) and tensor ⊕ number (mdm_binary_scalar, which alone
 * takes RSUB and RDIV, number - tensor and number / tensor). With a number, MAXIMUM and MINIMUM
 * clamp. */
enum mdm_binary_op {
  MDM_BINARY_ADD = 0,
  MDM_BINARY_SUB = 1,
  MDM_BINARY_MUL = 2,
  MDM_BINARY_DIV = 3,
  MDM_BINARY_POW = 4,
  MDM_BINARY_MAXIMUM = 5,
  MDM_BINARY_MINIMUM = 6,
  MDM_BINARY_EQ = 7,
  MDM_BINARY_NE = 8,
  MDM_BINARY_LT = 9,
  MDM_BINARY_LE = 10,
  MDM_BINARY_GT = 11,
  MDM_BINARY_GE = 12,
  MDM_BINARY_LOGICAL_AND = 13,
  MDM_BINARY_LOGICAL_OR = 14,
  MDM_BINARY_REMAINDER = 15,
  MDM_BINARY_ATAN2 = 16,
  MDM_BINARY_RSUB = 17,
  MDM_BINARY_RDIV = 18
};

/* In-place updates (parameters, EMA, buffers). FILL takes a number only, COPY a tensor only. */
enum mdm_inplace_op {
  MDM_INPLACE_ADD = 0,
  MDM_INPLACE_SUB = 1,
  MDM_INPLACE_MUL = 2,
  MDM_INPLACE_DIV = 3,
  MDM_INPLACE_COPY = 4,
  MDM_INPLACE_FILL = 5
};

enum mdm_reduce_op {
  MDM_REDUCE_SUM = 0,
  MDM_REDUCE_MEAN = 1,
  MDM_REDUCE_AMAX = 2,
  MDM_REDUCE_AMIN = 3,
  MDM_REDUCE_LOGSUMEXP = 4,
  MDM_REDUCE_ALL = 5,
  MDM_REDUCE_ANY = 6
};

/* How a loss reduces over its elements. */
enum mdm_reduction { MDM_REDUCTION_NONE = 0, MDM_REDUCTION_MEAN = 1, MDM_REDUCTION_SUM = 2 };

/* Which extreme mdm_minmax_dim and mdm_argminmax take. */
enum mdm_extreme { MDM_EXTREME_MAX = 0, MDM_EXTREME_MIN = 1 };

enum mdm_softmax_op { MDM_SOFTMAX_SOFTMAX = 0, MDM_SOFTMAX_LOG_SOFTMAX = 1 };

enum mdm_pool_op { MDM_POOL_AVG = 0, MDM_POOL_MAX = 1 };

enum mdm_interpolate_mode { MDM_INTERPOLATE_NEAREST = 0, MDM_INTERPOLATE_BILINEAR = 1 };

enum mdm_pad_mode { MDM_PAD_CONSTANT = 0, MDM_PAD_REFLECT = 1, MDM_PAD_REPLICATE = 2, MDM_PAD_CIRCULAR = 3 };

enum mdm_loss_op { MDM_LOSS_MSE = 0, MDM_LOSS_L1 = 1 };

enum mdm_memory_format { MDM_MEMORY_FORMAT_CONTIGUOUS = 0, MDM_MEMORY_FORMAT_CHANNELS_LAST = 1 };

/* Optimizer kinds and the hyper-parameters each takes, in this order:
 *   ADAM, ADAMW: lr, beta1, beta2, eps, weight_decay, amsgrad
 *   SGD:         lr, momentum, dampening, weight_decay, nesterov */
enum mdm_optimizer_kind { MDM_OPTIMIZER_ADAM = 0, MDM_OPTIMIZER_ADAMW = 1, MDM_OPTIMIZER_SGD = 2 };

/* ---- core */
MDM_API mdm_status* mdm_status_new(void);
MDM_API void mdm_status_free(mdm_status* st);
MDM_API void mdm_status_clear(mdm_status* st);
MDM_API const char* mdm_torch_version(void);
MDM_API int64_t mdm_live_tensors(void);
MDM_API void mdm_free(mdm_tensor t);
/* Copies nbytes from data (which must match the shape and dtype) into a new tensor on dev. */
MDM_API mdm_tensor mdm_from_data(const void* data, int64_t nbytes, int32_t dtype, const int64_t* sizes, int32_t ndim,
                                 int32_t dev, mdm_status* st);
MDM_API int32_t mdm_copy_to_host(mdm_tensor t, void* dst, int64_t nbytes, mdm_status* st);
MDM_API mdm_tensor mdm_full(const int64_t* sizes, int32_t ndim, double value, int32_t dtype, int32_t dev,
                            mdm_status* st);
MDM_API mdm_tensor mdm_arange(double start, double end, double step, int32_t dtype, int32_t dev, mdm_status* st);
MDM_API mdm_tensor mdm_linspace(double start, double end, int64_t steps, int32_t dtype, int32_t dev, mdm_status* st);
/* Queries on a handle; -1 (-2 for the device) for a null handle. */
MDM_API int32_t mdm_dim(mdm_tensor t);
/* Writes up to capacity sizes and returns the number of dimensions (which may exceed capacity). */
MDM_API int32_t mdm_sizes(mdm_tensor t, int64_t* out, int32_t capacity);
MDM_API int32_t mdm_dtype(mdm_tensor t);
MDM_API int32_t mdm_device(mdm_tensor t);
MDM_API int32_t mdm_requires_grad(mdm_tensor t);
MDM_API int32_t mdm_is_leaf(mdm_tensor t);
MDM_API int64_t mdm_numel(mdm_tensor t);
MDM_API double mdm_item(mdm_tensor t, mdm_status* st);
MDM_API void mdm_set_num_threads(int32_t n);
MDM_API int32_t mdm_get_num_threads(void);
/* Writes allocated, peak allocated, cached bytes, mappings and unmappings of the caching CPU
 * allocator; returns 0 when it is not installed. */
MDM_API int32_t mdm_cpu_memory_stats(int64_t* out);
MDM_API void mdm_empty_cpu_cache(void);
MDM_API void mdm_reset_cpu_peak_memory(void);
/* Returns 1 when the BLAS's own thread count was set, 0 when the BLAS has no such setting. */
MDM_API int32_t mdm_set_blas_threads(int32_t n);
MDM_API int32_t mdm_cuda_available(void);
MDM_API int32_t mdm_cuda_device_count(void);
MDM_API int32_t mdm_synchronize(int32_t dev, mdm_status* st);

/* ---- random */
MDM_API mdm_generator mdm_generator_new(uint64_t seed, int32_t dev, mdm_status* st);
MDM_API void mdm_generator_free(mdm_generator g);
/* A null generator means the device's global one. */
MDM_API mdm_tensor mdm_generator_get_state(mdm_generator g, int32_t dev, mdm_status* st);
MDM_API int32_t mdm_generator_set_state(mdm_generator g, int32_t dev, mdm_tensor state, mdm_status* st);
MDM_API int32_t mdm_manual_seed(uint64_t seed, mdm_status* st);
MDM_API mdm_tensor mdm_rand(const int64_t* sizes, int32_t ndim, int32_t dtype, int32_t dev, mdm_generator g,
                            mdm_status* st);
MDM_API mdm_tensor mdm_randn(const int64_t* sizes, int32_t ndim, int32_t dtype, int32_t dev, mdm_generator g,
                             mdm_status* st);
MDM_API mdm_tensor mdm_randint(int64_t low, int64_t high, const int64_t* sizes, int32_t ndim, int32_t dtype,
                               int32_t dev, mdm_generator g, mdm_status* st);
MDM_API mdm_tensor mdm_randperm(int32_t n, int32_t dtype, int32_t dev, mdm_generator g, mdm_status* st);
MDM_API mdm_tensor mdm_bernoulli(mdm_tensor p, mdm_generator g, mdm_status* st);

/* ---- elementwise and reductions */
MDM_API mdm_tensor mdm_unary(int32_t op, mdm_tensor a, mdm_status* st);
MDM_API mdm_tensor mdm_binary(int32_t op, mdm_tensor a, mdm_tensor b, mdm_status* st);
MDM_API mdm_tensor mdm_binary_scalar(int32_t op, mdm_tensor a, double v, mdm_status* st);
MDM_API int32_t mdm_inplace(int32_t op, mdm_tensor a, mdm_tensor b, mdm_status* st);
MDM_API int32_t mdm_inplace_scalar(int32_t op, mdm_tensor a, double v, mdm_status* st);
/* a += weight * (b - a): the EMA update in one kernel. */
MDM_API int32_t mdm_lerp_(mdm_tensor a, mdm_tensor b, double weight, mdm_status* st);
MDM_API mdm_tensor mdm_where(mdm_tensor cond, mdm_tensor a, mdm_tensor b, mdm_status* st);
MDM_API mdm_tensor mdm_clamp(mdm_tensor a, double lo, double hi, int32_t has_lo, int32_t has_hi, mdm_status* st);
MDM_API mdm_tensor mdm_masked_fill(mdm_tensor a, mdm_tensor mask, double v, mdm_status* st);
/* Reduces over dims (all dimensions when n is 0). */
MDM_API mdm_tensor mdm_reduce(int32_t op, mdm_tensor a, const int64_t* dims, int32_t n, int32_t keepdim,
                              mdm_status* st);
MDM_API mdm_tensor mdm_var(mdm_tensor a, const int64_t* dims, int32_t n, int32_t unbiased, int32_t keepdim,
                           int32_t take_sqrt, mdm_status* st);
/* Values and indices along one dimension; returns the number of handles written to out, -1 on failure. */
MDM_API int32_t mdm_minmax_dim(int32_t extreme, mdm_tensor a, int32_t dim, int32_t keepdim, mdm_tensor* out,
                               int32_t capacity, mdm_status* st);
/* Without a dimension the index is into the flattened tensor. */
MDM_API mdm_tensor mdm_argminmax(int32_t extreme, mdm_tensor a, int32_t dim, int32_t has_dim, int32_t keepdim,
                                 mdm_status* st);
MDM_API mdm_tensor mdm_argsort(mdm_tensor a, int32_t dim, int32_t descending, mdm_status* st);
MDM_API int32_t mdm_sort(mdm_tensor a, int32_t dim, int32_t descending, mdm_tensor* out, int32_t capacity,
                         mdm_status* st);
MDM_API int32_t mdm_topk(mdm_tensor a, int32_t k, int32_t dim, int32_t largest, mdm_tensor* out, int32_t capacity,
                         mdm_status* st);
MDM_API mdm_tensor mdm_cumsum(mdm_tensor a, int32_t dim, mdm_status* st);
MDM_API mdm_tensor mdm_matmul(mdm_tensor a, mdm_tensor b, mdm_status* st);
MDM_API mdm_tensor mdm_bmm(mdm_tensor a, mdm_tensor b, mdm_status* st);
MDM_API mdm_tensor mdm_linear(mdm_tensor x, mdm_tensor w, mdm_tensor b, mdm_status* st);
MDM_API mdm_tensor mdm_einsum(const char* equation, const mdm_tensor* ts, int32_t n, mdm_status* st);

/* ---- shape */
MDM_API mdm_tensor mdm_reshape(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_view(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_permute(mdm_tensor a, const int64_t* dims, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_transpose(mdm_tensor a, int32_t d0, int32_t d1, mdm_status* st);
MDM_API mdm_tensor mdm_contiguous(mdm_tensor a, mdm_status* st);
MDM_API mdm_tensor mdm_expand(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_repeat(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_squeeze(mdm_tensor a, int32_t dim, int32_t has_dim, mdm_status* st);
MDM_API mdm_tensor mdm_unsqueeze(mdm_tensor a, int32_t dim, mdm_status* st);
MDM_API mdm_tensor mdm_flatten(mdm_tensor a, int32_t start, int32_t end, mdm_status* st);
MDM_API mdm_tensor mdm_flip(mdm_tensor a, const int64_t* dims, int32_t n, mdm_status* st);
MDM_API mdm_tensor mdm_cat(const mdm_tensor* ts, int32_t n, int32_t dim, mdm_status* st);
MDM_API mdm_tensor mdm_stack(const mdm_tensor* ts, int32_t n, int32_t dim, mdm_status* st);
/* Multi-result calls return the number of handles written to out, -1 on failure. */
MDM_API int32_t mdm_split(mdm_tensor a, const int64_t* sizes, int32_t n, int32_t dim, mdm_tensor* out,
                          int32_t capacity, mdm_status* st);
MDM_API int32_t mdm_chunk(mdm_tensor a, int32_t chunks, int32_t dim, mdm_tensor* out, int32_t capacity,
                          mdm_status* st);
MDM_API mdm_tensor mdm_narrow(mdm_tensor a, int32_t dim, int64_t start, int64_t length, mdm_status* st);
MDM_API mdm_tensor mdm_slice(mdm_tensor a, int32_t dim, int64_t start, int64_t end, int64_t step, mdm_status* st);
MDM_API mdm_tensor mdm_select(mdm_tensor a, int32_t dim, int64_t index, mdm_status* st);
MDM_API mdm_tensor mdm_index_select(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_status* st);
MDM_API mdm_tensor mdm_gather(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_status* st);
MDM_API mdm_tensor mdm_scatter(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_tensor src, mdm_status* st);
MDM_API mdm_tensor mdm_scatter_add(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_tensor src, mdm_status* st);
MDM_API mdm_tensor mdm_masked_select(mdm_tensor a, mdm_tensor mask, mdm_status* st);
MDM_API mdm_tensor mdm_nonzero(mdm_tensor a, mdm_status* st);
MDM_API mdm_tensor mdm_one_hot(mdm_tensor a, int32_t classes, mdm_status* st);
/* Converts dtype and device in one step; a new handle to the same storage when neither changes. */
MDM_API mdm_tensor mdm_to(mdm_tensor a, int32_t dtype, int32_t dev, int32_t non_blocking, mdm_status* st);
MDM_API mdm_tensor mdm_clone(mdm_tensor a, mdm_status* st);
MDM_API mdm_tensor mdm_to_memory_format(mdm_tensor a, int32_t format, mdm_status* st);
MDM_API int32_t mdm_is_memory_format(mdm_tensor a, int32_t format, mdm_status* st);

/* ---- nn */
/* spec packs stride, padding and dilation, n values each (n = 1 for conv1d, 2 for conv2d). */
MDM_API mdm_tensor mdm_conv(mdm_tensor x, mdm_tensor w, mdm_tensor b, const int64_t* spec, int32_t n, int32_t groups,
                            mdm_status* st);
/* spec packs stride, padding, output padding and dilation, two values each. */
MDM_API mdm_tensor mdm_conv_transpose2d(mdm_tensor x, mdm_tensor w, mdm_tensor b, const int64_t* spec, int32_t groups,
                                        mdm_status* st);
MDM_API mdm_tensor mdm_group_norm(mdm_tensor x, int32_t groups, mdm_tensor w, mdm_tensor b, double eps,
                                  mdm_status* st);
/* In training mode the running statistics (when given) are updated in place, as in PyTorch. */
MDM_API mdm_tensor mdm_batch_norm(mdm_tensor x, mdm_tensor w, mdm_tensor b, mdm_tensor running_mean,
                                  mdm_tensor running_var, int32_t training, double momentum, double eps,
                                  mdm_status* st);
MDM_API mdm_tensor mdm_layer_norm(mdm_tensor x, const int64_t* shape, int32_t n, mdm_tensor w, mdm_tensor b,
                                  double eps, mdm_status* st);
/* dtype -1 keeps the input's, otherwise the input is cast first (softmax in float32 of a half tensor). */
MDM_API mdm_tensor mdm_softmax(int32_t op, mdm_tensor x, int32_t dim, int32_t dtype, mdm_status* st);
MDM_API mdm_tensor mdm_dropout(mdm_tensor x, double p, int32_t train, mdm_status* st);
/* spec packs kernel, stride and padding, two values each. */
MDM_API mdm_tensor mdm_pool2d(int32_t op, mdm_tensor x, const int64_t* spec, int32_t ceil_mode,
                              int32_t count_include_pad, mdm_status* st);
/* Scale factors <= 0 mean "derive from the sizes", as PyTorch does when interpolate is called with
 * `size`; positive ones reproduce a call with `scale_factor`. */
MDM_API mdm_tensor mdm_interpolate(mdm_tensor x, int32_t mode, int32_t out_h, int32_t out_w, double scale_h,
                                   double scale_w, int32_t align_corners, mdm_status* st);
/* pads as in torch.nn.functional.pad (last dimension first). */
MDM_API mdm_tensor mdm_pad(mdm_tensor x, const int64_t* pads, int32_t n, int32_t mode, double value, mdm_status* st);
/* silu(GroupNorm(x; groups, w, b, eps)·(1 + scale) + shift) for x [N, C, *]; scale and shift [N, C], each
 * optional (null): the UNet's norm-activation, with the timestep's scale-shift between them. One fused kernel
 * (forward and backward) for float32 CPU tensors in the default layout, which keeps only x and the group
 * statistics for the backward pass; libtorch's separate ops otherwise. */
MDM_API mdm_tensor mdm_group_norm_silu(mdm_tensor x, int32_t groups, mdm_tensor w, mdm_tensor b, mdm_tensor scale,
                                       mdm_tensor shift, double eps, mdm_status* st);
/* softmax(q kᵀ · scale) v over [batch(, heads), L, E] (q) and [batch(, heads), S, E] (k, v) -> [batch(, heads), L, E]:
 * libtorch's fused scaled_dot_product_attention where it has one (2.1 and later; its flash kernel, inputs made
 * channel-contiguous for it), else the same product as bmm, float32 softmax, bmm with q and k each scaled by
 * sqrt(scale). */
MDM_API mdm_tensor mdm_sdpa(mdm_tensor q, mdm_tensor k, mdm_tensor v, double scale, mdm_status* st);
MDM_API mdm_tensor mdm_cross_entropy(mdm_tensor logits, mdm_tensor target, mdm_tensor weight, int32_t reduction,
                                     int32_t ignore_index, double label_smoothing, mdm_status* st);
MDM_API mdm_tensor mdm_regression_loss(int32_t op, mdm_tensor a, mdm_tensor b, int32_t reduction, mdm_status* st);

/* ---- autograd */
MDM_API int32_t mdm_set_requires_grad(mdm_tensor t, int32_t flag, mdm_status* st);
MDM_API int32_t mdm_backward(mdm_tensor t, mdm_tensor grad, int32_t retain_graph, mdm_status* st);
/* Null, with the status untouched, when the tensor has no gradient yet. */
MDM_API mdm_tensor mdm_grad(mdm_tensor t, mdm_status* st);
/* set_to_none drops the gradient, otherwise it is zeroed in place. */
MDM_API int32_t mdm_zero_grad(mdm_tensor t, int32_t set_to_none, mdm_status* st);
MDM_API mdm_tensor mdm_detach(mdm_tensor t, mdm_status* st);
/* Sets grad mode for the calling thread; returns the previous one. */
MDM_API int32_t mdm_set_grad_enabled(int32_t flag);
/* Replaces the data behind t (device, dtype, storage) while t keeps its identity as a leaf. */
MDM_API int32_t mdm_set_data(mdm_tensor t, mdm_tensor src, mdm_status* st);

/* ---- optimizers */
MDM_API mdm_optimizer mdm_optim_new(int32_t kind, const mdm_tensor* params, int32_t n, const double* hp, int32_t nhp,
                                    mdm_status* st);
MDM_API void mdm_optim_free(mdm_optimizer o);
MDM_API int32_t mdm_optim_step(mdm_optimizer o, mdm_status* st);
MDM_API int32_t mdm_optim_zero_grad(mdm_optimizer o, int32_t set_to_none, mdm_status* st);
MDM_API int32_t mdm_optim_set_lr(mdm_optimizer o, double lr, mdm_status* st);
MDM_API double mdm_optim_get_lr(mdm_optimizer o, mdm_status* st);
/* The optimizer's state (moments, step counts, options) in libtorch's archive format. */
MDM_API mdm_blob mdm_optim_state_save(mdm_optimizer o, mdm_status* st);
MDM_API int32_t mdm_optim_state_load(mdm_optimizer o, const void* data, int64_t size, mdm_status* st);
MDM_API int64_t mdm_blob_size(mdm_blob b);
MDM_API int32_t mdm_blob_copy(mdm_blob b, void* dst, int64_t size, mdm_status* st);
MDM_API void mdm_blob_free(mdm_blob b);

/* ---- files */
/* Takes an exclusive advisory lock (flock) on `path` (a NUL-terminated path, created when missing) without
 * waiting, and writes `holder` (holder_len bytes, who holds it) into it: returns the descriptor that holds the
 * lock until mdm_unlock_file, or until the process exits however it exits; -2 when another process holds it;
 * -1 on failure. */
MDM_API int32_t mdm_lock_file(const char* path, const void* holder, int64_t holder_len, mdm_status* st);
MDM_API void mdm_unlock_file(int32_t fd);

/* ---- distributed */
/* Process groups of c10d, libtorch's distributed engine (the one PyTorch's DDP runs on): rank 0
 * serves a TCPStore for the rendezvous on master_port and every rank reaches it at master_addr, as
 * torchrun's MASTER_ADDR and MASTER_PORT; Gloo runs the collectives on CPU tensors, NCCL on CUDA
 * tensors (CUDA builds only). Every rank must call the same collectives in the same order. Each call
 * blocks until it completes; a peer that dies or stops answering fails it within the group's
 * timeout, with the status naming the peer or the rendezvous, never a hang. Collectives work in
 * place on the tensors given, parameters that require grad included. */
typedef struct mdm_process_group_s mdm_process_group;

enum mdm_dist_backend { MDM_DIST_BACKEND_GLOO = 0, MDM_DIST_BACKEND_NCCL = 1 };

/* MEAN is the sum divided by the world size (NCCL's AVG where the backend has it); floating types only. */
enum mdm_dist_reduce_op { MDM_DIST_REDUCE_SUM = 0, MDM_DIST_REDUCE_MEAN = 1 };

/* 1 when this build can create groups of that backend (Gloo needs its headers at build time, NCCL a
 * CUDA libtorch and the NCCL headers), else 0. */
MDM_API int32_t mdm_dist_backend_available(int32_t backend);
/* Joins rank `rank` of `world_size` to the group whose rank 0 serves the store at master_addr:master_port;
 * returns when all ranks have joined, null on failure (a bad argument, an unreachable master, ranks
 * that disagree on the world size, a rank taken twice, a rank missing after timeout_ms). timeout_ms
 * also bounds every collective. */
MDM_API mdm_process_group* mdm_pg_new(const char* master_addr, int32_t master_port, int32_t rank,
                                      int32_t world_size, int32_t backend, int64_t timeout_ms, mdm_status* st);
MDM_API void mdm_pg_free(mdm_process_group* pg);
/* Copies root's tensor into every rank's t (same shape and dtype everywhere). */
MDM_API int32_t mdm_pg_broadcast(mdm_process_group* pg, mdm_tensor t, int32_t root, mdm_status* st);
/* Replaces t on every rank by the sum (or mean) over the ranks. */
MDM_API int32_t mdm_pg_all_reduce(mdm_process_group* pg, mdm_tensor t, int32_t op, mdm_status* st);
/* All-reduces n tensors as DDP's reducer does: consecutive tensors of one dtype and device are
 * flattened into buckets of at most bucket_bytes (a larger tensor has one of its own), one collective
 * per bucket, and copied back. Returns the number of buckets, -1 on failure. */
MDM_API int32_t mdm_pg_all_reduce_buckets(mdm_process_group* pg, const mdm_tensor* ts, int32_t n, int32_t op,
                                          int64_t bucket_bytes, mdm_status* st);
/* Broadcasts n tensors from root in buckets, as mdm_pg_all_reduce_buckets does (the initial weights
 * of data-parallel training). Returns the number of buckets, -1 on failure. */
MDM_API int32_t mdm_pg_broadcast_buckets(mdm_process_group* pg, const mdm_tensor* ts, int32_t n, int32_t root,
                                         int64_t bucket_bytes, mdm_status* st);
/* Returns when every rank has called it. */
MDM_API int32_t mdm_pg_barrier(mdm_process_group* pg, mdm_status* st);

#ifdef __cplusplus
}
#endif

#endif /* MDM_H */
