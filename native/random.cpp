// Random sampling with the global generator or a caller-owned, seedable one; generator state
// export and import, so that training can resume with the exact same random stream.
#include "common.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>
#include <ATen/ops/bernoulli.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randperm.h>

struct mdm_generator_s {
  at::Generator gen;
};

static c10::optional<at::Generator> gen(mdm_generator g) {
  if (g == nullptr) return c10::nullopt;
  return g->gen;
}

// A fresh generator of the device's kind, seeded independently of the global one.
MDM_API mdm_generator mdm_generator_new(uint64_t seed, int32_t dev, mdm_status* st) {
  GUARD(st, nullptr, {
    auto d = mdm::device(dev);
    at::Generator g = d.is_cpu() ? at::make_generator<at::CPUGeneratorImpl>(seed)
                                 : at::globalContext().defaultGenerator(d).clone();
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
    return new mdm_generator_s{std::move(g)};
  })
}

MDM_API void mdm_generator_free(mdm_generator g) { delete g; }

static at::Generator resolve(mdm_generator g, int32_t dev) {
  if (g != nullptr) return g->gen;
  return at::globalContext().defaultGenerator(mdm::device(dev));
}

MDM_API mdm_tensor mdm_generator_get_state(mdm_generator g, int32_t dev, mdm_status* st) {
  GUARD(st, nullptr, {
    auto r = resolve(g, dev);
    std::lock_guard<std::mutex> lock(r.mutex());
    return mdm::wrap(r.get_state());
  })
}

MDM_API int32_t mdm_generator_set_state(mdm_generator g, int32_t dev, mdm_tensor state, mdm_status* st) {
  GUARD_STATUS(st, {
    auto r = resolve(g, dev);
    std::lock_guard<std::mutex> lock(r.mutex());
    r.set_state(mdm::ref(state));
  })
}

// Seeds the CPU generator and every CUDA generator, as torch.manual_seed does.
MDM_API int32_t mdm_manual_seed(uint64_t seed, mdm_status* st) { GUARD_STATUS(st, { at::manual_seed(seed); }) }

MDM_API mdm_tensor mdm_rand(const int64_t* sizes, int32_t ndim, int32_t dtype, int32_t dev, mdm_generator g,
                            mdm_status* st) {
  GUARD_TENSOR(st, at::rand(mdm::ints(sizes, ndim), gen(g), mdm::options(dtype, dev)))
}

MDM_API mdm_tensor mdm_randn(const int64_t* sizes, int32_t ndim, int32_t dtype, int32_t dev, mdm_generator g,
                             mdm_status* st) {
  GUARD_TENSOR(st, at::randn(mdm::ints(sizes, ndim), gen(g), mdm::options(dtype, dev)))
}

MDM_API mdm_tensor mdm_randint(int64_t low, int64_t high, const int64_t* sizes, int32_t ndim, int32_t dtype,
                               int32_t dev, mdm_generator g, mdm_status* st) {
  GUARD_TENSOR(st, at::randint(low, high, mdm::ints(sizes, ndim), gen(g), mdm::options(dtype, dev)))
}

MDM_API mdm_tensor mdm_randperm(int32_t n, int32_t dtype, int32_t dev, mdm_generator g, mdm_status* st) {
  GUARD_TENSOR(st, at::randperm(n, gen(g), mdm::options(dtype, dev)))
}

// Bernoulli draws with the given per-element probabilities.
MDM_API mdm_tensor mdm_bernoulli(mdm_tensor p, mdm_generator g, mdm_status* st) {
  GUARD_TENSOR(st, at::bernoulli(mdm::ref(p), gen(g)))
}
