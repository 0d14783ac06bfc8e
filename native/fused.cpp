// silu(GroupNorm(x)·(1 + scale) + shift) in one kernel: the UNet's norm-activation pair (with the
// timestep's scale-shift between them in the ResBlocks' second half).
//
// As separate ops (libtorch's group_norm, mul, add, silu) the forward pass reads the activations
// five times and writes them four, and autograd keeps four copies of them for the backward pass.
// Here the forward pass reads them twice (group statistics, then the fused affine-SiLU) and writes
// once, and the backward pass recomputes what it needs from x and the [N, G] statistics: it keeps x
// alone. float32 CPU tensors in the default (NCHW) layout take this path; anything else (other
// dtypes, devices, channels-last) the separate ops, with the same result.
#include "common.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/group_norm.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <cstring>

namespace {

// e^x for float32 to about one ulp, written so that the compiler can vectorise it: 2^frac by a
// degree-6 polynomial (least squares on [0, 1), relative error below 1e-7 in float32 arithmetic),
// 2^int by writing the exponent bits.
inline float exp_approx(float x) {
  x = std::fmin(std::fmax(x, -87.0f), 88.0f);
  const float t = x * 1.44269504088896341f;
  const float fi = std::floor(t);
  const float f = t - fi;
  float p = 0.0002187751088058576f;
  p = p * f + 0.0012387826573103666f;
  p = p * f + 0.009684578515589237f;
  p = p * f + 0.05548042804002762f;
  p = p * f + 0.2402305006980896f;
  p = p * f + 0.6931469440460205f;
  p = p * f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(fi) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// One (n, c) plane: y = silu(a·x + b).
__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_affine(const float* x, float* y,
                                                                              int64_t n, float a, float b) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float z = a * x[i] + b;
    y[i] = z / (1.0f + exp_approx(-z));
  }
}

// One (n, c) plane of the backward pass: dz = dy·silu'(a·x + b) into out; returns Σ dz and Σ dz·x.
__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_affine_backward(
    const float* x, const float* dy, float* out, int64_t n, float a, float b, double* sum_dz, double* sum_dz_x) {
  double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
  for (int64_t i = 0; i < n; i++) {
    const float z = a * x[i] + b;
    const float s = 1.0f / (1.0f + exp_approx(-z));
    const float dz = dy[i] * s * (1.0f + z * (1.0f - s));
    out[i] = dz;
    s1 += dz;
    s2 += static_cast<double>(dz) * x[i];
  }
  *sum_dz = s1;
  *sum_dz_x = s2;
}

// dx = rstd·(k·dz − ga − xhat·gb) over one plane, in place over dz.
__attribute__((target_clones("avx512f", "avx2", "default"))) void group_norm_dx(const float* x, float* dz, int64_t n,
                                                                                float k, float rstd, float mean,
                                                                                float ga, float gb) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float xhat = (x[i] - mean) * rstd;
    dz[i] = rstd * (k * dz[i] - ga - xhat * gb);
  }
}

// Mean and 1/sqrt(var + eps) of each of the N·G groups (biased variance, double accumulation).
void group_moments(const float* x, int64_t groups_total, int64_t size, double eps, float* mean, float* rstd) {
  at::parallel_for(0, groups_total, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; g++) {
      const float* p = x + g * size;
      double s = 0.0, ss = 0.0;
#pragma omp simd reduction(+ : s, ss)
      for (int64_t i = 0; i < size; i++) {
        s += p[i];
        ss += static_cast<double>(p[i]) * p[i];
      }
      const double m = s / size;
      const double var = std::max(ss / size - m * m, 0.0);
      mean[g] = static_cast<float>(m);
      rstd[g] = static_cast<float>(1.0 / std::sqrt(var + eps));
    }
  });
}

// Per-(n, c) affine coefficients: z = a·x + b with a = rstd·w·(1 + scale), b = (bias − mean·rstd·w)·(1 + scale) + shift.
struct Affine {
  const float *w, *bias, *scale, *shift, *mean, *rstd;
  int64_t channels, per_group;
  void at(int64_t n, int64_t c, float* a, float* b, float* k) const {
    const int64_t g = n * (channels / per_group) + c / per_group;
    const float wc = w ? w[c] : 1.0f, bc = bias ? bias[c] : 0.0f;
    const float s1 = scale ? 1.0f + scale[n * channels + c] : 1.0f;
    const float t = shift ? shift[n * channels + c] : 0.0f;
    *a = rstd[g] * wc * s1;
    *b = (bc - mean[g] * rstd[g] * wc) * s1 + t;
    *k = wc * s1;
  }
};

bool fusable(const at::Tensor& x, const c10::optional<at::Tensor>& w, const c10::optional<at::Tensor>& b,
             const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 2 || !x.is_contiguous()) return false;
  for (const auto* t : {&w, &b, &scale, &shift})
    if (t->has_value() && ((*t)->scalar_type() != at::kFloat || !(*t)->device().is_cpu())) return false;
  return true;
}

// What the fused kernel computes, as libtorch's separate ops: the path for every other case.
at::Tensor reference(const at::Tensor& x, int64_t groups, const c10::optional<at::Tensor>& w,
                     const c10::optional<at::Tensor>& b, const c10::optional<at::Tensor>& scale,
                     const c10::optional<at::Tensor>& shift, double eps) {
  auto h = at::group_norm(x, groups, w, b, eps);
  if (scale.has_value() || shift.has_value()) {
    std::vector<int64_t> view(x.dim(), 1);
    view[0] = x.size(0);
    view[1] = x.size(1);
    if (scale.has_value()) h = h.mul(scale->reshape(view).add(1));
    if (shift.has_value()) h = h.add(shift->reshape(view));
  }
  return at::silu(h);
}

const float* data_or_null(const at::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

struct GroupNormSiLU : public torch::autograd::Function<GroupNormSiLU> {
  // Optional inputs arrive as optionals: autograd takes an undefined tensor argument for a variable.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const c10::optional<at::Tensor>& w, const c10::optional<at::Tensor>& b,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                            int64_t groups, double eps) {
    const int64_t n = x.size(0), c = x.size(1), plane = x.numel() / (n * c);
    const auto contiguous = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? t->contiguous() : at::Tensor(); };
    auto wc = contiguous(w), bc = contiguous(b), sc = contiguous(scale), tc = contiguous(shift);
    auto mean = at::empty({n, groups}, x.options()), rstd = at::empty({n, groups}, x.options());
    group_moments(x.data_ptr<float>(), n * groups, (c / groups) * plane, eps, mean.data_ptr<float>(),
                  rstd.data_ptr<float>());
    auto y = at::empty_like(x);
    const Affine aff{data_or_null(wc), data_or_null(bc), data_or_null(sc), data_or_null(tc),
                     mean.data_ptr<float>(), rstd.data_ptr<float>(), c, c / groups};
    const float* xp = x.data_ptr<float>();
    float* yp = y.data_ptr<float>();
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        float a, bb, k;
        aff.at(i / c, i % c, &a, &bb, &k);
        silu_affine(xp + i * plane, yp + i * plane, plane, a, bb);
      }
    });
    ctx->save_for_backward({x, wc, bc, sc, tc, mean, rstd});
    ctx->saved_data["groups"] = groups;
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &w = saved[1], &b = saved[2], &scale = saved[3], &shift = saved[4];
    const auto &mean = saved[5], &rstd = saved[6];
    const int64_t groups = ctx->saved_data["groups"].toInt();
    const int64_t n = x.size(0), c = x.size(1), plane = x.numel() / (n * c), per_group = c / groups;
    const double m = static_cast<double>(per_group * plane);
    auto dy = grads[0].contiguous();
    auto dx = at::empty_like(x);
    const Affine aff{data_or_null(w), data_or_null(b), data_or_null(scale), data_or_null(shift),
                     mean.data_ptr<float>(), rstd.data_ptr<float>(), c, per_group};
    const float *xp = x.data_ptr<float>(), *dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    std::vector<double> s1(n * c), s2(n * c);
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        float a, bb, k;
        aff.at(i / c, i % c, &a, &bb, &k);
        silu_affine_backward(xp + i * plane, dyp + i * plane, dxp + i * plane, plane, a, bb, &s1[i], &s2[i]);
      }
    });
    // Per plane: Σ dz·xhat = rstd·(S2 − mean·S1); the group sums of the GroupNorm backward.
    const float *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
    auto opts = x.options();
    at::Tensor dw = w.defined() ? at::zeros({c}, opts) : at::Tensor(), db = b.defined() ? at::zeros({c}, opts) : at::Tensor();
    at::Tensor dscale = scale.defined() ? at::empty({n, c}, opts) : at::Tensor();
    at::Tensor dshift = shift.defined() ? at::empty({n, c}, opts) : at::Tensor();
    std::vector<double> ga(n * groups, 0.0), gb(n * groups, 0.0);
    for (int64_t i = 0; i < n * c; i++) {
      const int64_t nn = i / c, cc = i % c, g = nn * groups + cc / per_group;
      const double wc = w.defined() ? w.data_ptr<float>()[cc] : 1.0, bc = b.defined() ? b.data_ptr<float>()[cc] : 0.0;
      const double one_s = scale.defined() ? 1.0 + scale.data_ptr<float>()[i] : 1.0;
      const double dz_xhat = rp[g] * (s2[i] - mp[g] * s1[i]);
      if (dw.defined()) dw.data_ptr<float>()[cc] += static_cast<float>(one_s * dz_xhat);
      if (db.defined()) db.data_ptr<float>()[cc] += static_cast<float>(one_s * s1[i]);
      if (dscale.defined()) dscale.data_ptr<float>()[i] = static_cast<float>(wc * dz_xhat + bc * s1[i]);
      if (dshift.defined()) dshift.data_ptr<float>()[i] = static_cast<float>(s1[i]);
      ga[g] += wc * one_s * s1[i];
      gb[g] += wc * one_s * dz_xhat;
    }
    at::parallel_for(0, n * c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) {
        const int64_t g = (i / c) * groups + (i % c) / per_group;
        float a, bb, k;
        aff.at(i / c, i % c, &a, &bb, &k);
        group_norm_dx(xp + i * plane, dxp + i * plane, plane, k, rp[g], mp[g], static_cast<float>(ga[g] / m),
                      static_cast<float>(gb[g] / m));
      }
    });
    return {dx, dw, db, dscale, dshift, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

MDM_API mdm_tensor mdm_group_norm_silu(mdm_tensor x, int32_t groups, mdm_tensor w, mdm_tensor b, mdm_tensor scale,
                                       mdm_tensor shift, double eps, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& input = mdm::ref(x);
    auto wo = mdm::opt(w), bo = mdm::opt(b), so = mdm::opt(scale), to = mdm::opt(shift);
    if (input.dim() < 2 || groups <= 0 || input.size(1) % groups != 0)
      throw std::invalid_argument("group_norm_silu: " + std::to_string(input.dim() >= 2 ? input.size(1) : 0) +
                                  " channels do not split into " + std::to_string(groups) + " groups");
    for (const auto* t : {&so, &to})
      if (t->has_value() && ((*t)->dim() != 2 || (*t)->size(0) != input.size(0) || (*t)->size(1) != input.size(1)))
        throw std::invalid_argument("group_norm_silu: scale and shift must be [N, C] = [" +
                                    std::to_string(input.size(0)) + ", " + std::to_string(input.size(1)) + "]");
    if (!fusable(input, wo, bo, so, to)) return mdm::wrap(reference(input, groups, wo, bo, so, to, eps));
    return mdm::wrap(GroupNormSiLU::apply(input, wo, bo, so, to, static_cast<int64_t>(groups), eps));
  })
}
