// Status reports, dtype/device codes, handle lifetime, creation from host memory and queries.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/linspace.h>
#include <c10/util/StringUtil.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <dlfcn.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

std::atomic<int64_t> mdm::live_tensors{0};

namespace {
// glibc returns freed blocks above 128 KiB to the kernel and trims the heap eagerly, so every
// training step page-faults its activations back in (three times Python's faults, measured). Keeping
// blocks up to 32 MiB in the heap and trimming above 256 MiB makes steady-state steps fault-free.
// With the caching allocator (allocator.cpp) this concerns only blocks under 128 KiB; with it off
// (MDM_CPU_CACHE=0), every tensor. MDM_MALLOC_TUNING=0 keeps glibc's defaults.
struct MallocTuning {
  MallocTuning() {
#if defined(__GLIBC__)
    const char* v = std::getenv("MDM_MALLOC_TUNING");
    if (v != nullptr && std::string(v) == "0") return;
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
  }
} malloc_tuning;

using blas_threads_fn = void (*)(int);

// OpenBLAS, when libtorch uses it, has a thread pool of its own. Looked up at run time, since
// libtorch may be linked against MKL or another BLAS instead.
blas_threads_fn openblas_threads() {
  static blas_threads_fn fn = [] {
    for (const char* name : {"libopenblas.so.0", "libopenblas.so", "libblas.so.3"}) {
      if (void* h = dlopen(name, RTLD_LAZY | RTLD_NOLOAD)) {
        if (void* f = dlsym(h, "openblas_set_num_threads")) return reinterpret_cast<blas_threads_fn>(f);
      }
    }
    return reinterpret_cast<blas_threads_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  }();
  return fn;
}
}  // namespace

void mdm::fail(mdm_status* st, const char* message) {
  if (st == nullptr) return;
  std::free(st->message);
  st->message = strdup(message);
  st->code = 1;
}

std::vector<at::Tensor> mdm::tensors(const mdm_tensor* handles, int64_t n) {
  if (n < 0) throw std::invalid_argument("negative tensor count");
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; i++) out.push_back(ref(handles[i]));
  return out;
}

at::ScalarType mdm::scalar_type(int32_t code) {
  switch (code) {
    case MDM_DTYPE_FLOAT32: return at::kFloat;
    case MDM_DTYPE_FLOAT64: return at::kDouble;
    case MDM_DTYPE_FLOAT16: return at::kHalf;
    case MDM_DTYPE_BFLOAT16: return at::kBFloat16;
    case MDM_DTYPE_INT64: return at::kLong;
    case MDM_DTYPE_INT32: return at::kInt;
    case MDM_DTYPE_UINT8: return at::kByte;
    case MDM_DTYPE_BOOL: return at::kBool;
  }
  throw std::invalid_argument("unknown dtype code " + std::to_string(code));
}

// -1 for the types mdm has no code for.
int32_t mdm::dtype_code(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return MDM_DTYPE_FLOAT32;
    case at::kDouble: return MDM_DTYPE_FLOAT64;
    case at::kHalf: return MDM_DTYPE_FLOAT16;
    case at::kBFloat16: return MDM_DTYPE_BFLOAT16;
    case at::kLong: return MDM_DTYPE_INT64;
    case at::kInt: return MDM_DTYPE_INT32;
    case at::kByte: return MDM_DTYPE_UINT8;
    case at::kBool: return MDM_DTYPE_BOOL;
    default: return -1;
  }
}

at::Device mdm::device(int32_t code) {
  if (code < MDM_DEVICE_CPU) throw std::invalid_argument("unknown device code " + std::to_string(code));
  if (code == MDM_DEVICE_CPU) return at::Device(at::kCPU);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(code));
}

int32_t mdm::device_code(const at::Device& d) {
  if (d.is_cpu()) return MDM_DEVICE_CPU;
  if (d.is_cuda()) return d.has_index() ? d.index() : 0;
  return -2;
}

at::TensorOptions mdm::options(int32_t dtype, int32_t dev) {
  return at::TensorOptions().dtype(scalar_type(dtype)).device(device(dev));
}

at::Reduction::Reduction mdm::reduction(int32_t code) {
  switch (code) {
    case MDM_REDUCTION_NONE: return at::Reduction::None;
    case MDM_REDUCTION_MEAN: return at::Reduction::Mean;
    case MDM_REDUCTION_SUM: return at::Reduction::Sum;
  }
  throw std::invalid_argument("unknown reduction code " + std::to_string(code));
}

int32_t mdm::emit(const std::vector<at::Tensor>& ts, mdm_tensor* out, int32_t capacity) {
  if (static_cast<int32_t>(ts.size()) > capacity)
    throw std::invalid_argument("result has " + std::to_string(ts.size()) +
                                " tensors, more than the " + std::to_string(capacity) +
                                " slots provided");
  for (size_t i = 0; i < ts.size(); i++) out[i] = wrap(ts[i]);
  return static_cast<int32_t>(ts.size());
}

MDM_API mdm_status* mdm_status_new() { return static_cast<mdm_status*>(calloc(1, sizeof(mdm_status))); }

MDM_API void mdm_status_free(mdm_status* st) {
  if (st == nullptr) return;
  std::free(st->message);
  std::free(st);
}

MDM_API void mdm_status_clear(mdm_status* st) {
  if (st != nullptr) st->code = 0;
}

MDM_API const char* mdm_torch_version() { return TORCH_VERSION; }

MDM_API int64_t mdm_live_tensors() { return mdm::live_tensors.load(); }

MDM_API void mdm_free(mdm_tensor t) {
  if (t == nullptr) return;
  delete t;
  mdm::live_tensors.fetch_sub(1, std::memory_order_relaxed);
}

// The bytes are copied, so the caller's buffer may be reused as soon as this returns.
MDM_API mdm_tensor mdm_from_data(const void* data, int64_t nbytes, int32_t dtype, const int64_t* sizes,
                                 int32_t ndim, int32_t dev, mdm_status* st) {
  GUARD(st, nullptr, {
    auto shape = mdm::ints(sizes, ndim);
    auto type = mdm::scalar_type(dtype);
    auto cpu = at::empty(shape, at::TensorOptions().dtype(type));
    int64_t expected = cpu.numel() * static_cast<int64_t>(cpu.element_size());
    if (nbytes != expected)
      throw std::invalid_argument("host buffer holds " + std::to_string(nbytes) + " bytes, shape " +
                                  c10::str(shape) + " of " + std::string(c10::toString(type)) +
                                  " needs " + std::to_string(expected));
    if (expected > 0) std::memcpy(cpu.data_ptr(), data, static_cast<size_t>(expected));
    auto d = mdm::device(dev);
    return mdm::wrap(d.is_cpu() ? cpu : cpu.to(d));
  })
}

MDM_API int32_t mdm_copy_to_host(mdm_tensor t, void* dst, int64_t nbytes, mdm_status* st) {
  GUARD_STATUS(st, {
    auto cpu = mdm::ref(t).detach().to(at::kCPU).contiguous();
    int64_t size = cpu.numel() * static_cast<int64_t>(cpu.element_size());
    if (size != nbytes)
      throw std::invalid_argument("destination holds " + std::to_string(nbytes) + " bytes, tensor has " +
                                  std::to_string(size));
    if (size > 0) std::memcpy(dst, cpu.data_ptr(), static_cast<size_t>(size));
  })
}

MDM_API mdm_tensor mdm_full(const int64_t* sizes, int32_t ndim, double value, int32_t dtype, int32_t dev,
                            mdm_status* st) {
  GUARD_TENSOR(st, at::full(mdm::ints(sizes, ndim), value, mdm::options(dtype, dev)))
}

MDM_API mdm_tensor mdm_arange(double start, double end, double step, int32_t dtype, int32_t dev,
                              mdm_status* st) {
  GUARD_TENSOR(st, at::arange(start, end, step, mdm::options(dtype, dev)))
}

MDM_API mdm_tensor mdm_linspace(double start, double end, int64_t steps, int32_t dtype, int32_t dev,
                                mdm_status* st) {
  GUARD_TENSOR(st, at::linspace(start, end, steps, mdm::options(dtype, dev)))
}

MDM_API int32_t mdm_dim(mdm_tensor t) { return t == nullptr ? -1 : static_cast<int32_t>(t->tensor.dim()); }

// Writes up to `capacity` sizes and returns the number of dimensions.
MDM_API int32_t mdm_sizes(mdm_tensor t, int64_t* out, int32_t capacity) {
  if (t == nullptr) return -1;
  auto s = t->tensor.sizes();
  for (int32_t i = 0; i < static_cast<int32_t>(s.size()) && i < capacity; i++) out[i] = s[i];
  return static_cast<int32_t>(s.size());
}

MDM_API int32_t mdm_dtype(mdm_tensor t) { return t == nullptr ? -1 : mdm::dtype_code(t->tensor.scalar_type()); }

MDM_API int32_t mdm_device(mdm_tensor t) { return t == nullptr ? -2 : mdm::device_code(t->tensor.device()); }

MDM_API int32_t mdm_requires_grad(mdm_tensor t) { return t != nullptr && t->tensor.requires_grad() ? 1 : 0; }

MDM_API int32_t mdm_is_leaf(mdm_tensor t) { return t != nullptr && t->tensor.is_leaf() ? 1 : 0; }

MDM_API int64_t mdm_numel(mdm_tensor t) { return t == nullptr ? -1 : t->tensor.numel(); }

MDM_API double mdm_item(mdm_tensor t, mdm_status* st) {
  GUARD(st, 0.0, { return mdm::ref(t).item().toDouble(); })
}

MDM_API void mdm_set_num_threads(int32_t n) { at::set_num_threads(n); }

MDM_API int32_t mdm_get_num_threads() { return at::get_num_threads(); }

// Returns 1 when the BLAS's thread count was set, 0 when the BLAS has no such setting.
MDM_API int32_t mdm_set_blas_threads(int32_t n) {
  auto fn = openblas_threads();
  if (fn == nullptr) return 0;
  fn(n);
  return 1;
}

MDM_API int32_t mdm_cuda_available() { return torch::cuda::is_available() ? 1 : 0; }

MDM_API int32_t mdm_cuda_device_count() { return static_cast<int32_t>(torch::cuda::device_count()); }

MDM_API int32_t mdm_synchronize(int32_t dev, mdm_status* st) {
  GUARD_STATUS(st, {
    if (dev >= 0) torch::cuda::synchronize(dev);
  })
}
