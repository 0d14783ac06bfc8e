// Functional neural-network ops: convolutions, normalisation, softmax, dropout, pooling,
// resampling, padding and losses.
#include "common.h"

#include <torch/version.h>

#include <ATen/ops/avg_pool2d.h>
#include <ATen/ops/batch_norm.h>
#include <ATen/ops/broadcast_tensors.h>
#include <ATen/ops/conv1d.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/conv_transpose2d.h>
#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/dropout.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/l1_loss.h>
#include <ATen/ops/layer_norm.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/max_pool2d.h>
#include <ATen/ops/mse_loss.h>
#include <ATen/ops/pad.h>
#include <ATen/ops/softmax.h>
#if TORCH_VERSION_MAJOR >= 2
#include <ATen/ops/scaled_dot_product_attention.h>
#endif
#include <ATen/ops/upsample_bilinear2d.h>
#include <ATen/ops/upsample_nearest2d.h>
#include <c10/util/StringUtil.h>

#include <cmath>

MDM_API mdm_tensor mdm_conv(mdm_tensor x, mdm_tensor w, mdm_tensor b, const int64_t* spec, int32_t n,
                            int32_t groups, mdm_status* st) {
  GUARD(st, nullptr, {
    auto stride = mdm::ints(spec, n), padding = mdm::ints(spec + n, n), dilation = mdm::ints(spec + 2 * n, n);
    const auto& input = mdm::ref(x);
    if (n == 1) return mdm::wrap(at::conv1d(input, mdm::ref(w), mdm::opt(b), stride, padding, dilation, groups));
    if (n == 2) return mdm::wrap(at::conv2d(input, mdm::ref(w), mdm::opt(b), stride, padding, dilation, groups));
    throw std::invalid_argument("conv supports 1 or 2 spatial dimensions, got " + std::to_string(n));
  })
}

MDM_API mdm_tensor mdm_conv_transpose2d(mdm_tensor x, mdm_tensor w, mdm_tensor b, const int64_t* spec,
                                        int32_t groups, mdm_status* st) {
  GUARD_TENSOR(st, at::conv_transpose2d(mdm::ref(x), mdm::ref(w), mdm::opt(b), mdm::ints(spec, 2),
                                        mdm::ints(spec + 2, 2), mdm::ints(spec + 4, 2), groups,
                                        mdm::ints(spec + 6, 2)))
}

MDM_API mdm_tensor mdm_group_norm(mdm_tensor x, int32_t groups, mdm_tensor w, mdm_tensor b, double eps,
                                  mdm_status* st) {
  GUARD_TENSOR(st, at::group_norm(mdm::ref(x), groups, mdm::opt(w), mdm::opt(b), eps))
}

MDM_API mdm_tensor mdm_batch_norm(mdm_tensor x, mdm_tensor w, mdm_tensor b, mdm_tensor running_mean,
                                  mdm_tensor running_var, int32_t training, double momentum, double eps,
                                  mdm_status* st) {
  GUARD_TENSOR(st, at::batch_norm(mdm::ref(x), mdm::opt(w), mdm::opt(b), mdm::opt(running_mean),
                                  mdm::opt(running_var), training != 0, momentum, eps, true))
}

MDM_API mdm_tensor mdm_layer_norm(mdm_tensor x, const int64_t* shape, int32_t n, mdm_tensor w, mdm_tensor b,
                                  double eps, mdm_status* st) {
  GUARD_TENSOR(st, at::layer_norm(mdm::ref(x), mdm::ints(shape, n), mdm::opt(w), mdm::opt(b), eps))
}

MDM_API mdm_tensor mdm_softmax(int32_t op, mdm_tensor x, int32_t dim, int32_t dtype, mdm_status* st) {
  GUARD(st, nullptr, {
    c10::optional<at::ScalarType> t;
    if (dtype >= 0) t = mdm::scalar_type(dtype);
    if (op == MDM_SOFTMAX_SOFTMAX) return mdm::wrap(at::softmax(mdm::ref(x), dim, t));
    if (op == MDM_SOFTMAX_LOG_SOFTMAX) return mdm::wrap(at::log_softmax(mdm::ref(x), dim, t));
    throw std::invalid_argument("unknown softmax op code " + std::to_string(op));
  })
}

MDM_API mdm_tensor mdm_dropout(mdm_tensor x, double p, int32_t train, mdm_status* st) {
  GUARD_TENSOR(st, at::dropout(mdm::ref(x), p, train != 0))
}

MDM_API mdm_tensor mdm_pool2d(int32_t op, mdm_tensor x, const int64_t* spec, int32_t ceil_mode,
                              int32_t count_include_pad, mdm_status* st) {
  GUARD(st, nullptr, {
    auto k = mdm::ints(spec, 2), s = mdm::ints(spec + 2, 2), p = mdm::ints(spec + 4, 2);
    if (op == MDM_POOL_AVG) return mdm::wrap(at::avg_pool2d(mdm::ref(x), k, s, p, ceil_mode != 0, count_include_pad != 0));
    if (op == MDM_POOL_MAX) return mdm::wrap(at::max_pool2d(mdm::ref(x), k, s, p, {1, 1}, ceil_mode != 0));
    throw std::invalid_argument("unknown pooling op code " + std::to_string(op));
  })
}

MDM_API mdm_tensor mdm_interpolate(mdm_tensor x, int32_t mode, int32_t out_h, int32_t out_w, double scale_h,
                                   double scale_w, int32_t align_corners, mdm_status* st) {
  GUARD(st, nullptr, {
    c10::optional<double> sh, sw;
    if (scale_h > 0) sh = scale_h;
    if (scale_w > 0) sw = scale_w;
    std::vector<int64_t> size{out_h, out_w};
    if (mode == MDM_INTERPOLATE_NEAREST) return mdm::wrap(at::upsample_nearest2d(mdm::ref(x), size, sh, sw));
    if (mode == MDM_INTERPOLATE_BILINEAR) return mdm::wrap(at::upsample_bilinear2d(mdm::ref(x), size, align_corners != 0, sh, sw));
    throw std::invalid_argument("unknown interpolation mode " + std::to_string(mode));
  })
}

MDM_API mdm_tensor mdm_pad(mdm_tensor x, const int64_t* pads, int32_t n, int32_t mode, double value,
                           mdm_status* st) {
  GUARD(st, nullptr, {
    static const char* const kModes[] = {"constant", "reflect", "replicate", "circular"};  // mdm_pad_mode
    if (mode < MDM_PAD_CONSTANT || mode > MDM_PAD_CIRCULAR)
      throw std::invalid_argument("unknown padding mode " + std::to_string(mode));
    c10::optional<double> fill;
    if (mode == MDM_PAD_CONSTANT) fill = value;
    return mdm::wrap(at::pad(mdm::ref(x), mdm::ints(pads, n), kModes[mode], fill));
  })
}

MDM_API mdm_tensor mdm_sdpa(mdm_tensor q, mdm_tensor k, mdm_tensor v, double scale, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto &Q = mdm::ref(q), &K = mdm::ref(k), &V = mdm::ref(v);
    const auto rank = Q.dim();
    if ((rank != 3 && rank != 4) || K.dim() != rank || V.dim() != rank)
      throw std::invalid_argument("sdpa expects [batch, length, channels] or [batch, heads, length, channels] tensors, got " +
                                  c10::str(Q.sizes()) + ", " + c10::str(K.sizes()) + ", " + c10::str(V.sizes()));
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
    // libtorch picks its flash kernel only for 4-D inputs whose channels are contiguous; anything else
    // gets the unfused math path (with its masked-row checks), 1.3-1.5x slower on a UNet's attention.
    auto flash = [rank](const at::Tensor& t) {
      auto t4 = rank == 3 ? t.unsqueeze(1) : t;
      return t4.stride(-1) == 1 ? t4 : t4.contiguous();
    };
    auto out = at::scaled_dot_product_attention(flash(Q), flash(K), flash(V), {}, 0.0, false, scale);
    return mdm::wrap(rank == 3 ? out.squeeze(1) : out);
#else
    // Heads folded into the batch: mdm::bmm splits the batch over the intra-op threads.
    auto fold = [rank](const at::Tensor& t) { return rank == 4 ? t.flatten(0, 1) : t; };
    const double s = std::sqrt(scale);
    auto w = mdm::bmm(fold(Q).mul(s), fold(K).mul(s).transpose(1, 2));
    auto p = at::softmax(w, -1, at::kFloat).to(w.scalar_type());
    auto out = mdm::bmm(p, fold(V));
    return mdm::wrap(rank == 4 ? out.view({Q.size(0), Q.size(1), out.size(1), out.size(2)}) : out);
#endif
  })
}

MDM_API mdm_tensor mdm_cross_entropy(mdm_tensor logits, mdm_tensor target, mdm_tensor weight, int32_t reduction,
                                     int32_t ignore_index, double label_smoothing, mdm_status* st) {
  GUARD_TENSOR(st, at::cross_entropy_loss(mdm::ref(logits), mdm::ref(target), mdm::opt(weight),
                                          mdm::reduction(reduction), ignore_index, label_smoothing))
}

MDM_API mdm_tensor mdm_regression_loss(int32_t op, mdm_tensor a, mdm_tensor b, int32_t reduction, mdm_status* st) {
  GUARD(st, nullptr, {
    auto r = mdm::reduction(reduction);
    // Broadcast first, as torch.nn.functional does: at::mse_loss on unbroadcast shapes divides the
    // smaller operand's gradient by its own element count instead of the broadcast one.
    auto ab = at::broadcast_tensors({mdm::ref(a), mdm::ref(b)});
    if (op == MDM_LOSS_MSE) return mdm::wrap(at::mse_loss(ab[0], ab[1], r));
    if (op == MDM_LOSS_L1) return mdm::wrap(at::l1_loss(ab[0], ab[1], r));
    throw std::invalid_argument("unknown loss op code " + std::to_string(op));
  })
}
