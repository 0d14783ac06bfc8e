// Batched matrix product with the batch split over the intra-op threads.
//
// Without MKL (Debian's libtorch), libtorch 1.13's CPU bmm runs a serial loop of one BLAS gemm per
// batch item; with OpenBLAS's own pool at one thread (setNumThreads), the other intra-op threads
// idle through it, which in the UNet's attention is a quarter of a training step. Here every item
// is the same `at::mm` that loop runs (addmm_impl_cpu_ with beta 0), so results are bit-identical to
// at::bmm; only the items run on the intra-op threads. Backward is bmm's formula, also split.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/custom_function.h>

namespace {

// Where at::bmm itself would not take the serial gemm loop (tiny products, other dtypes, other
// devices, shapes it rejects), or there is nothing to split: at::bmm.
bool splittable(const at::Tensor& a, const at::Tensor& b) {
  if (!a.device().is_cpu() || !b.device().is_cpu() || a.dim() != 3 || b.dim() != 3) return false;
  const auto t = a.scalar_type();
  if ((t != at::kFloat && t != at::kDouble) || b.scalar_type() != t) return false;
  if (a.size(0) != b.size(0) || a.size(2) != b.size(1) || a.size(0) < 2) return false;
  if (a.is_conj() || b.is_conj() || a.numel() == 0 || b.numel() == 0) return false;
  if (a.size(2) * a.size(1) * b.size(2) < 400) return false;  // bmm's naive-kernel threshold
  return at::get_num_threads() > 1 && !at::in_parallel_region();
}

at::Tensor split_bmm(const at::Tensor& a, const at::Tensor& b) {
  if (!splittable(a, b)) return at::bmm(a, b);
  auto out = at::empty({a.size(0), a.size(1), b.size(2)}, a.options());
  at::parallel_for(0, a.size(0), 1, [&](int64_t begin, int64_t end) {
    // The workers do not share the caller's autograd state: keep autograd out of these calls, as
    // libtorch's own threaded bmm (mobile builds) does.
    c10::InferenceMode guard;
    for (int64_t i = begin; i < end; i++) {
      auto r = out.select(0, i);
      at::mm_out(r, a.select(0, i), b.select(0, i));
    }
  });
  return out;
}

struct SplitBmm : public torch::autograd::Function<SplitBmm> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b) {
    ctx->save_for_backward({a, b});
    return split_bmm(a, b);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& g = grads[0];
    at::Tensor ga, gb;
    // bmm's derivatives (derivatives.yaml): grad.bmm(mat2ᵀ) and selfᵀ.bmm(grad).
    if (ctx->needs_input_grad(0)) ga = SplitBmm::apply(g, saved[1].transpose(1, 2));
    if (ctx->needs_input_grad(1)) gb = SplitBmm::apply(saved[0].transpose(1, 2), g);
    return {ga, gb};
  }
};

}  // namespace

namespace mdm {

at::Tensor bmm(const at::Tensor& a, const at::Tensor& b) {
  if (!splittable(a, b)) return at::bmm(a, b);
  if (at::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad())) return SplitBmm::apply(a, b);
  return split_bmm(a, b);
}

}  // namespace mdm
