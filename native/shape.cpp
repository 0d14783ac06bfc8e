// Views, layout changes, joining and splitting, indexing, and dtype/device conversion.
#include "common.h"

#include <ATen/ops/cat.h>
#include <ATen/ops/chunk.h>
#include <ATen/ops/flatten.h>
#include <ATen/ops/flip.h>
#include <ATen/ops/gather.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/masked_select.h>
#include <ATen/ops/narrow.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/one_hot.h>
#include <ATen/ops/reshape.h>
#include <ATen/ops/scatter.h>
#include <ATen/ops/scatter_add.h>
#include <ATen/ops/select.h>
#include <ATen/ops/slice.h>
#include <ATen/ops/split_with_sizes.h>
#include <ATen/ops/squeeze.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/transpose.h>
#include <ATen/ops/unsqueeze.h>

MDM_API mdm_tensor mdm_reshape(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, at::reshape(mdm::ref(a), mdm::ints(sizes, n)))
}

MDM_API mdm_tensor mdm_view(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).view(mdm::ints(sizes, n)))
}

MDM_API mdm_tensor mdm_permute(mdm_tensor a, const int64_t* dims, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).permute(mdm::ints(dims, n)))
}

MDM_API mdm_tensor mdm_transpose(mdm_tensor a, int32_t d0, int32_t d1, mdm_status* st) {
  GUARD_TENSOR(st, at::transpose(mdm::ref(a), d0, d1))
}

MDM_API mdm_tensor mdm_contiguous(mdm_tensor a, mdm_status* st) { GUARD_TENSOR(st, mdm::ref(a).contiguous()) }

MDM_API mdm_tensor mdm_expand(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).expand(mdm::ints(sizes, n)))
}

MDM_API mdm_tensor mdm_repeat(mdm_tensor a, const int64_t* sizes, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).repeat(mdm::ints(sizes, n)))
}

// Without a dimension every size-1 dimension is removed.
MDM_API mdm_tensor mdm_squeeze(mdm_tensor a, int32_t dim, int32_t has_dim, mdm_status* st) {
  GUARD_TENSOR(st, has_dim ? at::squeeze(mdm::ref(a), dim) : at::squeeze(mdm::ref(a)))
}

MDM_API mdm_tensor mdm_unsqueeze(mdm_tensor a, int32_t dim, mdm_status* st) {
  GUARD_TENSOR(st, at::unsqueeze(mdm::ref(a), dim))
}

MDM_API mdm_tensor mdm_flatten(mdm_tensor a, int32_t start, int32_t end, mdm_status* st) {
  GUARD_TENSOR(st, at::flatten(mdm::ref(a), start, end))
}

MDM_API mdm_tensor mdm_flip(mdm_tensor a, const int64_t* dims, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, at::flip(mdm::ref(a), mdm::ints(dims, n)))
}

MDM_API mdm_tensor mdm_cat(const mdm_tensor* ts, int32_t n, int32_t dim, mdm_status* st) {
  GUARD_TENSOR(st, at::cat(mdm::tensors(ts, n), dim))
}

MDM_API mdm_tensor mdm_stack(const mdm_tensor* ts, int32_t n, int32_t dim, mdm_status* st) {
  GUARD_TENSOR(st, at::stack(mdm::tensors(ts, n), dim))
}

// Returns the number of pieces written to `out`, -1 on failure.
MDM_API int32_t mdm_split(mdm_tensor a, const int64_t* sizes, int32_t n, int32_t dim, mdm_tensor* out,
                          int32_t capacity, mdm_status* st) {
  GUARD(st, -1, { return mdm::emit(at::split_with_sizes(mdm::ref(a), mdm::ints(sizes, n), dim), out, capacity); })
}

MDM_API int32_t mdm_chunk(mdm_tensor a, int32_t chunks, int32_t dim, mdm_tensor* out, int32_t capacity,
                          mdm_status* st) {
  GUARD(st, -1, { return mdm::emit(at::chunk(mdm::ref(a), chunks, dim), out, capacity); })
}

MDM_API mdm_tensor mdm_narrow(mdm_tensor a, int32_t dim, int64_t start, int64_t length, mdm_status* st) {
  GUARD_TENSOR(st, at::narrow(mdm::ref(a), dim, start, length))
}

MDM_API mdm_tensor mdm_slice(mdm_tensor a, int32_t dim, int64_t start, int64_t end, int64_t step, mdm_status* st) {
  GUARD_TENSOR(st, at::slice(mdm::ref(a), dim, start, end, step))
}

MDM_API mdm_tensor mdm_select(mdm_tensor a, int32_t dim, int64_t index, mdm_status* st) {
  GUARD_TENSOR(st, at::select(mdm::ref(a), dim, index))
}

MDM_API mdm_tensor mdm_index_select(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_status* st) {
  GUARD_TENSOR(st, at::index_select(mdm::ref(a), dim, mdm::ref(index)))
}

MDM_API mdm_tensor mdm_gather(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_status* st) {
  GUARD_TENSOR(st, at::gather(mdm::ref(a), dim, mdm::ref(index)))
}

MDM_API mdm_tensor mdm_scatter(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_tensor src, mdm_status* st) {
  GUARD_TENSOR(st, at::scatter(mdm::ref(a), dim, mdm::ref(index), mdm::ref(src)))
}

MDM_API mdm_tensor mdm_scatter_add(mdm_tensor a, int32_t dim, mdm_tensor index, mdm_tensor src, mdm_status* st) {
  GUARD_TENSOR(st, at::scatter_add(mdm::ref(a), dim, mdm::ref(index), mdm::ref(src)))
}

MDM_API mdm_tensor mdm_masked_select(mdm_tensor a, mdm_tensor mask, mdm_status* st) {
  GUARD_TENSOR(st, at::masked_select(mdm::ref(a), mdm::ref(mask)))
}

MDM_API mdm_tensor mdm_nonzero(mdm_tensor a, mdm_status* st) { GUARD_TENSOR(st, at::nonzero(mdm::ref(a))) }

MDM_API mdm_tensor mdm_one_hot(mdm_tensor a, int32_t classes, mdm_status* st) {
  GUARD_TENSOR(st, at::one_hot(mdm::ref(a), classes))
}

// Converts dtype and device in one step; returns a new handle to the same storage when neither changes.
MDM_API mdm_tensor mdm_to(mdm_tensor a, int32_t dtype, int32_t dev, int32_t non_blocking, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).to(mdm::device(dev), mdm::scalar_type(dtype), non_blocking != 0))
}

MDM_API mdm_tensor mdm_clone(mdm_tensor a, mdm_status* st) { GUARD_TENSOR(st, mdm::ref(a).clone()) }

// format 0: row-major (NCHW), 1: channels last (NHWC strides, NCHW shape): what oneDNN's CPU
// convolutions run fastest on.
static at::MemoryFormat memory_format(int32_t format) {
  if (format == MDM_MEMORY_FORMAT_CONTIGUOUS) return at::MemoryFormat::Contiguous;
  if (format == MDM_MEMORY_FORMAT_CHANNELS_LAST) return at::MemoryFormat::ChannelsLast;
  throw std::invalid_argument("unknown memory format code " + std::to_string(format));
}

MDM_API mdm_tensor mdm_to_memory_format(mdm_tensor a, int32_t format, mdm_status* st) {
  GUARD_TENSOR(st, mdm::ref(a).contiguous(memory_format(format)))
}

MDM_API int32_t mdm_is_memory_format(mdm_tensor a, int32_t format, mdm_status* st) {
  GUARD(st, -1, { return mdm::ref(a).is_contiguous(memory_format(format)) ? 1 : 0; })
}
