// silu(GroupNorm(x)·(1 + scale) + shift) in one kernel: the UNet's norm-activation pair (with the
// timestep's scale-shift between them in the ResBlocks' second half).
//
// As separate ops (libtorch's group_norm, mul, add, silu) the forward pass reads the activations
// five times and writes them four, and autograd keeps four copies of them for the backward pass.
// Here the forward pass reads them twice (group statistics, then the fused affine-SiLU) and writes
// once, and the backward pass recomputes what it needs from x and the [N, G] statistics: it keeps x
// alone. float32 CPU tensors take this path in the default layout ([N, C, *], each (n, c) plane
// contiguous) and in channels-last ([N, C, H, W] stored as N, H, W, C); anything else (other dtypes,
// devices, strides) the separate ops, with the same result.
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

// e^x for float32 within 1.4 ulp (measured over [-87, 87]), in straight-line arithmetic that the
// compiler vectorises: x = n·ln2 + f with n rounded by the 1.5·2^23 trick and ln2 split in two
// (Cody and Waite), e^f by Cephes' expf polynomial, 2^n written into the exponent bits.
__attribute__((always_inline)) inline float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : (x > 87.0f ? 87.0f : x);
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float f = x - n * 0.693359375f;
  f = f - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * f + 1.3981999507e-3f;
  p = p * f + 8.3334519073e-3f;
  p = p * f + 4.1665795894e-2f;
  p = p * f + 1.6666665459e-1f;
  p = p * f + 5.0000001201e-1f;
  const float e = p * f * f + f + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return e * scale;
}

// The vector kernels, compiled for AVX-512, AVX2 and the baseline (the loader picks one). Each runs
// over `n` values; a coefficient pointer with a stride of 0 repeats one value (the default layout's
// planes), of 1 gives a value per element (channels-last rows, where channels are innermost).

// y = silu(a·x + b)
__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_affine(const float* x, float* y, int64_t n,
                                                                              const float* a, const float* b,
                                                                              int64_t stride) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float z = a[i * stride] * x[i] + b[i * stride];
    y[i] = z / (1.0f + exp_approx(-z));
  }
}

// dz = dy·silu'(a·x + b) into out, adding Σ dz and Σ dz·x into s1 and s2 (one sum, or one per element).
__attribute__((target_clones("avx512f", "avx2", "default"))) void silu_affine_backward(
    const float* x, const float* dy, float* out, int64_t n, const float* a, const float* b, int64_t stride,
    double* s1, double* s2) {
  if (stride == 0) {
    double t1 = 0.0, t2 = 0.0;
#pragma omp simd reduction(+ : t1, t2)
    for (int64_t i = 0; i < n; i++) {
      const float z = a[0] * x[i] + b[0];
      const float s = 1.0f / (1.0f + exp_approx(-z));
      const float dz = dy[i] * s * (1.0f + z * (1.0f - s));
      out[i] = dz;
      t1 += dz;
      t2 += static_cast<double>(dz) * x[i];
    }
    s1[0] += t1;
    s2[0] += t2;
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    const float z = a[i] * x[i] + b[i];
    const float s = 1.0f / (1.0f + exp_approx(-z));
    const float dz = dy[i] * s * (1.0f + z * (1.0f - s));
    out[i] = dz;
    s1[i] += dz;
    s2[i] += static_cast<double>(dz) * x[i];
  }
}

// dx = p·dz + q·x + r, in place over dz.
__attribute__((target_clones("avx512f", "avx2", "default"))) void affine2(const float* x, float* dz, int64_t n,
                                                                          const float* p, const float* q,
                                                                          const float* r, int64_t stride) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) dz[i] = p[i * stride] * dz[i] + q[i * stride] * x[i] + r[i * stride];
}

// Σ x and Σ x² into s and ss (double), one sum or one per element as above.
__attribute__((target_clones("avx512f", "avx2", "default"))) void moments(const float* x, int64_t n, double* s,
                                                                          double* ss, int64_t stride) {
  if (stride == 0) {
    double t = 0.0, tt = 0.0;
#pragma omp simd reduction(+ : t, tt)
    for (int64_t i = 0; i < n; i++) {
      t += x[i];
      tt += static_cast<double>(x[i]) * x[i];
    }
    s[0] += t;
    ss[0] += tt;
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; i++) {
    s[i] += x[i];
    ss[i] += static_cast<double>(x[i]) * x[i];
  }
}

// Where x's values lie: for the default layout, plane (n, c) is contiguous; for channels-last, row
// (n, hw) holds the C channels contiguously.
struct Shape {
  int64_t n, c, plane, groups;
  bool channels_last;
  int64_t per_group() const { return c / groups; }
  int64_t group(int64_t nn, int64_t cc) const { return nn * groups + cc / per_group(); }
};

// Mean and 1/sqrt(var + eps) of each (n, g) (biased variance, double accumulation), from per-(n, c)
// sums over the plane.
void group_moments(const float* x, const Shape& s, double eps, float* mean, float* rstd) {
  std::vector<double> sum(s.n * s.c, 0.0), sumsq(s.n * s.c, 0.0);
  if (s.channels_last) {
    at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
      for (int64_t nn = begin; nn < end; nn++)
        for (int64_t hw = 0; hw < s.plane; hw++)
          moments(x + (nn * s.plane + hw) * s.c, s.c, &sum[nn * s.c], &sumsq[nn * s.c], 1);
    });
  } else {
    at::parallel_for(0, s.n * s.c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) moments(x + i * s.plane, s.plane, &sum[i], &sumsq[i], 0);
    });
  }
  const double m = static_cast<double>(s.per_group() * s.plane);
  for (int64_t nn = 0; nn < s.n; nn++) {
    for (int64_t g = 0; g < s.groups; g++) {
      double t = 0.0, tt = 0.0;
      for (int64_t cc = g * s.per_group(); cc < (g + 1) * s.per_group(); cc++) {
        t += sum[nn * s.c + cc];
        tt += sumsq[nn * s.c + cc];
      }
      const double mu = t / m, var = std::max(tt / m - mu * mu, 0.0);
      mean[nn * s.groups + g] = static_cast<float>(mu);
      rstd[nn * s.groups + g] = static_cast<float>(1.0 / std::sqrt(var + eps));
    }
  }
}

// Per-(n, c) coefficients of z = a·x + b: a = rstd·w·(1 + scale), b = (bias − mean·rstd·w)·(1 + scale) + shift.
void affine_coefficients(const Shape& s, const float* w, const float* bias, const float* scale, const float* shift,
                         const float* mean, const float* rstd, float* a, float* b) {
  for (int64_t nn = 0; nn < s.n; nn++) {
    for (int64_t cc = 0; cc < s.c; cc++) {
      const int64_t i = nn * s.c + cc, g = s.group(nn, cc);
      const float wc = w ? w[cc] : 1.0f, bc = bias ? bias[cc] : 0.0f;
      const float s1 = scale ? 1.0f + scale[i] : 1.0f, t = shift ? shift[i] : 0.0f;
      a[i] = rstd[g] * wc * s1;
      b[i] = (bc - mean[g] * rstd[g] * wc) * s1 + t;
    }
  }
}

bool fusable(const at::Tensor& x, const c10::optional<at::Tensor>& w, const c10::optional<at::Tensor>& b,
             const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift) {
  if (!x.device().is_cpu() || x.scalar_type() != at::kFloat || x.dim() < 2) return false;
  if (!x.is_contiguous() && !(x.dim() == 4 && x.is_contiguous(at::MemoryFormat::ChannelsLast))) return false;
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

Shape shape_of(const at::Tensor& x, int64_t groups) {
  const int64_t n = x.size(0), c = x.size(1);
  // A contiguous [N, C, 1, 1] is both layouts; the default one is then the plain reading.
  return {n, c, x.numel() / (n * c), groups, !x.is_contiguous()};
}

// Runs `row(i, a, b, stride)` over the default layout's planes or channels-last's rows, in parallel.
template <typename F>
void for_each_run(const Shape& s, const float* a, const float* b, F row) {
  if (s.channels_last) {
    at::parallel_for(0, s.n * s.plane, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) row(i * s.c, s.c, a + (i / s.plane) * s.c, b + (i / s.plane) * s.c, 1);
    });
  } else {
    at::parallel_for(0, s.n * s.c, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) row(i * s.plane, s.plane, a + i, b + i, 0);
    });
  }
}

struct GroupNormSiLU : public torch::autograd::Function<GroupNormSiLU> {
  // Optional inputs arrive as optionals: autograd takes an undefined tensor argument for a variable.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const c10::optional<at::Tensor>& w, const c10::optional<at::Tensor>& b,
                            const c10::optional<at::Tensor>& scale, const c10::optional<at::Tensor>& shift,
                            int64_t groups, double eps) {
    const Shape s = shape_of(x, groups);
    const auto contiguous = [](const c10::optional<at::Tensor>& t) { return t.has_value() ? t->contiguous() : at::Tensor(); };
    auto wc = contiguous(w), bc = contiguous(b), sc = contiguous(scale), tc = contiguous(shift);
    auto mean = at::empty({s.n, groups}, x.options()), rstd = at::empty({s.n, groups}, x.options());
    const float* xp = x.data_ptr<float>();
    group_moments(xp, s, eps, mean.data_ptr<float>(), rstd.data_ptr<float>());
    std::vector<float> a(s.n * s.c), bb(s.n * s.c);
    affine_coefficients(s, data_or_null(wc), data_or_null(bc), data_or_null(sc), data_or_null(tc),
                        mean.data_ptr<float>(), rstd.data_ptr<float>(), a.data(), bb.data());
    auto y = at::empty_like(x);  // same layout as x
    float* yp = y.data_ptr<float>();
    for_each_run(s, a.data(), bb.data(), [&](int64_t at, int64_t len, const float* ai, const float* bi, int64_t stride) {
      silu_affine(xp + at, yp + at, len, ai, bi, stride);
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
    const Shape s = shape_of(x, ctx->saved_data["groups"].toInt());
    const float *xp = x.data_ptr<float>(), *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
    auto dy = grads[0].contiguous(x.suggest_memory_format());
    auto dx = at::empty_like(x);
    const float* dyp = dy.data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    const float *wp = data_or_null(w), *bp = data_or_null(b), *sp = data_or_null(scale);
    std::vector<float> a(s.n * s.c), bb(s.n * s.c);
    affine_coefficients(s, wp, bp, sp, data_or_null(shift), mp, rp, a.data(), bb.data());

    // Pass 1: dz = dy·silu'(z) into dx, with S1 = Σ dz and S2 = Σ dz·x per (n, c).
    std::vector<double> s1(s.n * s.c, 0.0), s2(s.n * s.c, 0.0);
    if (s.channels_last) {
      // A thread per sample owns that sample's accumulators.
      at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
        for (int64_t nn = begin; nn < end; nn++)
          for (int64_t hw = 0; hw < s.plane; hw++) {
            const int64_t at = (nn * s.plane + hw) * s.c;
            silu_affine_backward(xp + at, dyp + at, dxp + at, s.c, &a[nn * s.c], &bb[nn * s.c], 1, &s1[nn * s.c],
                                 &s2[nn * s.c]);
          }
      });
    } else {
      at::parallel_for(0, s.n * s.c, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++)
          silu_affine_backward(xp + i * s.plane, dyp + i * s.plane, dxp + i * s.plane, s.plane, &a[i], &bb[i], 0,
                               &s1[i], &s2[i]);
      });
    }

    // Per (n, c): Σ dz·xhat = rstd·(S2 − mean·S1), the parameter gradients and the group sums of the
    // GroupNorm backward; then dx = rstd·(k·dz − ga − xhat·gb) = p·dz + q·x + r per (n, c).
    auto opts = x.options();
    at::Tensor dw = w.defined() ? at::zeros({s.c}, opts) : at::Tensor();
    at::Tensor db = b.defined() ? at::zeros({s.c}, opts) : at::Tensor();
    at::Tensor dscale = scale.defined() ? at::empty({s.n, s.c}, opts) : at::Tensor();
    at::Tensor dshift = shift.defined() ? at::empty({s.n, s.c}, opts) : at::Tensor();
    std::vector<double> ga(s.n * s.groups, 0.0), gb(s.n * s.groups, 0.0), k(s.n * s.c);
    for (int64_t i = 0; i < s.n * s.c; i++) {
      const int64_t nn = i / s.c, cc = i % s.c, g = s.group(nn, cc);
      const double wc = wp ? wp[cc] : 1.0, bc = bp ? bp[cc] : 0.0, one_s = sp ? 1.0 + sp[i] : 1.0;
      const double dz_xhat = rp[g] * (s2[i] - mp[g] * s1[i]);
      if (dw.defined()) dw.data_ptr<float>()[cc] += static_cast<float>(one_s * dz_xhat);
      if (db.defined()) db.data_ptr<float>()[cc] += static_cast<float>(one_s * s1[i]);
      if (dscale.defined()) dscale.data_ptr<float>()[i] = static_cast<float>(wc * dz_xhat + bc * s1[i]);
      if (dshift.defined()) dshift.data_ptr<float>()[i] = static_cast<float>(s1[i]);
      k[i] = wc * one_s;
      ga[g] += k[i] * s1[i];
      gb[g] += k[i] * dz_xhat;
    }
    const double m = static_cast<double>(s.per_group() * s.plane);
    std::vector<float> p(s.n * s.c), q(s.n * s.c), r(s.n * s.c);
    for (int64_t i = 0; i < s.n * s.c; i++) {
      const int64_t g = s.group(i / s.c, i % s.c);
      const double rs = rp[g], gam = ga[g] / m, gbm = gb[g] / m;
      p[i] = static_cast<float>(rs * k[i]);
      q[i] = static_cast<float>(-rs * rs * gbm);
      r[i] = static_cast<float>(rs * (mp[g] * rs * gbm - gam));
    }
    if (s.channels_last) {
      at::parallel_for(0, s.n * s.plane, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++) {
          const int64_t off = (i / s.plane) * s.c;
          affine2(xp + i * s.c, dxp + i * s.c, s.c, &p[off], &q[off], &r[off], 1);
        }
      });
    } else {
      at::parallel_for(0, s.n * s.c, 1, [&](int64_t begin, int64_t end) {
        for (int64_t i = begin; i < end; i++)
          affine2(xp + i * s.plane, dxp + i * s.plane, s.plane, &p[i], &q[i], &r[i], 0);
      });
    }
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
