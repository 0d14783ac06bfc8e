// Gradient tracking, backward passes and the thread's grad mode.
#include "common.h"

MDM_API int32_t mdm_set_requires_grad(mdm_tensor t, int32_t flag, mdm_status* st) {
  GUARD_STATUS(st, {
    mdm::mut(t).set_requires_grad(flag != 0);
  })
}

MDM_API int32_t mdm_backward(mdm_tensor t, mdm_tensor grad, int32_t retain_graph, mdm_status* st) {
  GUARD_STATUS(st, {
    mdm::ref(t).backward(grad == nullptr ? at::Tensor() : grad->tensor, retain_graph != 0);
  })
}

// Returns null with a clear status when the tensor has no gradient yet.
MDM_API mdm_tensor mdm_grad(mdm_tensor t, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& g = mdm::ref(t).grad();
    if (!g.defined()) return static_cast<mdm_tensor>(nullptr);
    return mdm::wrap(g);
  })
}

// set_to_none drops the gradient (the next backward allocates it), otherwise it is zeroed in place.
MDM_API int32_t mdm_zero_grad(mdm_tensor t, int32_t set_to_none, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& g = mdm::mut(t).mutable_grad();
    if (!g.defined()) return 0;
    if (set_to_none) {
      g = at::Tensor();
    } else {
      g = g.detach();
      g.zero_();
    }
  })
}

MDM_API mdm_tensor mdm_detach(mdm_tensor t, mdm_status* st) { GUARD_TENSOR(st, mdm::ref(t).detach()) }

// Grad mode is thread-local in libtorch: this sets it for the calling (JavaScript) thread.
MDM_API int32_t mdm_set_grad_enabled(int32_t flag) {
  bool previous = at::GradMode::is_enabled();
  at::GradMode::set_enabled(flag != 0);
  return previous ? 1 : 0;
}

// Replaces the data behind `t` (device, dtype, storage) while `t` keeps its identity as a leaf.
MDM_API int32_t mdm_set_data(mdm_tensor t, mdm_tensor src, mdm_status* st) {
  GUARD_STATUS(st, {
    mdm::mut(t).set_data(mdm::ref(src));
  })
}
