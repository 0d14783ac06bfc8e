// Internal helpers shared by the shim's translation units. Nothing here crosses the C ABI.
#pragma once

// ATen's tensor and the per-operator headers each file names, not all of torch/torch.h: a third of
// the compile time and memory per file.
#include <ATen/core/Reduction.h>
#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "mdm.h"

// The opaque handles of mdm.h.
struct mdm_tensor_s {
  at::Tensor tensor;
};

namespace mdm {

extern std::atomic<int64_t> live_tensors;

void fail(mdm_status* st, const char* message);

inline mdm_tensor wrap(at::Tensor t) {
  live_tensors.fetch_add(1, std::memory_order_relaxed);
  return new mdm_tensor_s{std::move(t)};
}

inline const at::Tensor& ref(mdm_tensor h) {
  if (h == nullptr) throw std::invalid_argument("null tensor handle");
  return h->tensor;
}

// The tensor behind a handle, for in-place updates.
inline at::Tensor& mut(mdm_tensor h) {
  if (h == nullptr) throw std::invalid_argument("null tensor handle");
  return h->tensor;
}

// Optional tensor arguments (bias, weight, ...) arrive as null handles.
inline c10::optional<at::Tensor> opt(mdm_tensor h) {
  if (h == nullptr) return c10::nullopt;
  return h->tensor;
}

inline at::IntArrayRef ints(const int64_t* data, int64_t n) {
  if (n < 0) throw std::invalid_argument("negative array length");
  return at::IntArrayRef(n == 0 ? nullptr : data, static_cast<size_t>(n));
}

std::vector<at::Tensor> tensors(const mdm_tensor* handles, int64_t n);

at::ScalarType scalar_type(int32_t code);
int32_t dtype_code(at::ScalarType t);
at::Device device(int32_t code);
int32_t device_code(const at::Device& d);
at::TensorOptions options(int32_t dtype, int32_t device);
at::Reduction::Reduction reduction(int32_t code);

// Writes tensors to a caller-provided array of handles; fails when it holds fewer than needed.
int32_t emit(const std::vector<at::Tensor>& ts, mdm_tensor* out, int32_t capacity);

// at::bmm with the batch split over the intra-op threads on the CPU (bmm.cpp).
at::Tensor bmm(const at::Tensor& a, const at::Tensor& b);

}  // namespace mdm

// Every entry point's body runs inside GUARD: an exception of any kind becomes a status and the
// given fallback value, never an unwinding across the C boundary.
#define GUARD(st, fallback, ...)                              \
  try {                                                       \
    __VA_ARGS__                                               \
  } catch (const c10::Error& e) {                             \
    mdm::fail(st, e.what_without_backtrace());                \
    return fallback;                                          \
  } catch (const std::exception& e) {                         \
    mdm::fail(st, e.what());                                  \
    return fallback;                                          \
  } catch (...) {                                             \
    mdm::fail(st, "unknown C++ exception");                   \
    return fallback;                                          \
  }

#define GUARD_TENSOR(st, ...) GUARD(st, nullptr, return mdm::wrap(__VA_ARGS__);)
#define GUARD_STATUS(st, ...) GUARD(st, 1, __VA_ARGS__ return 0;)
