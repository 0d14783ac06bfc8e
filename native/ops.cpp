// Elementwise arithmetic, comparisons and reductions; the op codes are mdm.h's.
#include "common.h"

#include <ATen/WrapDimUtils.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/add.h>
#include <ATen/ops/all.h>
#include <ATen/ops/amax.h>
#include <ATen/ops/amin.h>
#include <ATen/ops/any.h>
#include <ATen/ops/argmax.h>
#include <ATen/ops/argmin.h>
#include <ATen/ops/argsort.h>
#include <ATen/ops/atan2.h>
#include <ATen/ops/ceil.h>
#include <ATen/ops/clamp.h>
#include <ATen/ops/clamp_max.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/cos.h>
#include <ATen/ops/cumsum.h>
#include <ATen/ops/div.h>
#include <ATen/ops/einsum.h>
#include <ATen/ops/eq.h>
#include <ATen/ops/erf.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/expm1.h>
#include <ATen/ops/floor.h>
#include <ATen/ops/ge.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/gt.h>
#include <ATen/ops/isnan.h>
#include <ATen/ops/le.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/log.h>
#include <ATen/ops/log1p.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/logical_not.h>
#include <ATen/ops/logical_or.h>
#include <ATen/ops/logsumexp.h>
#include <ATen/ops/lt.h>
#include <ATen/ops/masked_fill.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/max.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/mean.h>
#include <ATen/ops/min.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/mul.h>
#include <ATen/ops/ne.h>
#include <ATen/ops/neg.h>
#include <ATen/ops/pow.h>
#include <ATen/ops/reciprocal.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/remainder.h>
#include <ATen/ops/result_type.h>
#include <ATen/ops/round.h>
#include <ATen/ops/rsqrt.h>
#include <ATen/ops/rsub.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/sign.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/sin.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/sqrt.h>
#include <ATen/ops/square.h>
#include <ATen/ops/std.h>
#include <ATen/ops/sub.h>
#include <ATen/ops/sum.h>
#include <ATen/ops/tanh.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/var.h>
#include <ATen/ops/where.h>

#include <algorithm>
#include <cmath>

static at::Tensor unary(int32_t op, const at::Tensor& a) {
  switch (op) {
    case MDM_UNARY_NEG: return at::neg(a);
    case MDM_UNARY_EXP: return at::exp(a);
    case MDM_UNARY_LOG: return at::log(a);
    case MDM_UNARY_SQRT: return at::sqrt(a);
    case MDM_UNARY_RSQRT: return at::rsqrt(a);
    case MDM_UNARY_ABS: return at::abs(a);
    case MDM_UNARY_SIN: return at::sin(a);
    case MDM_UNARY_COS: return at::cos(a);
    case MDM_UNARY_TANH: return at::tanh(a);
    case MDM_UNARY_SIGMOID: return at::sigmoid(a);
    case MDM_UNARY_RELU: return at::relu(a);
    case MDM_UNARY_SILU: return at::silu(a);
    case MDM_UNARY_GELU: return at::gelu(a);
    case MDM_UNARY_GELU_TANH: return at::gelu(a, "tanh");
    case MDM_UNARY_FLOOR: return at::floor(a);
    case MDM_UNARY_CEIL: return at::ceil(a);
    case MDM_UNARY_ROUND: return at::round(a);
    case MDM_UNARY_SIGN: return at::sign(a);
    case MDM_UNARY_LOGICAL_NOT: return at::logical_not(a);
    case MDM_UNARY_SQUARE: return at::square(a);
    case MDM_UNARY_RECIPROCAL: return at::reciprocal(a);
    case MDM_UNARY_LOG1P: return at::log1p(a);
    case MDM_UNARY_ERF: return at::erf(a);
    case MDM_UNARY_EXPM1: return at::expm1(a);
    case MDM_UNARY_ISNAN: return at::isnan(a);
  }
  throw std::invalid_argument("unknown unary op code " + std::to_string(op));
}

// The signed integer division instruction traps (SIGFPE, which no exception guard catches) on the
// minimum value divided by -1. x % -1 is 0 for every x, as x % 1 is: so divide by 1 there.
// Division by zero needs nothing here: libtorch checks it (ZeroDivisionError) before dividing.
static bool signed_integral(at::ScalarType t) { return at::isIntegralType(t, false) && at::isSignedType(t); }

static at::Tensor int_safe_remainder(const at::Tensor& a, const at::Tensor& b) {
  if (!signed_integral(at::result_type(a, b))) return at::remainder(a, b);
  return at::remainder(a, at::where(b.eq(-1), at::ones({}, b.options()), b));
}

static at::Tensor int_safe_remainder(const at::Tensor& a, const at::Scalar& s) {
  if (s.isIntegral(false) && s.toLong() == -1 && signed_integral(a.scalar_type())) return at::remainder(a, 1);
  return at::remainder(a, s);
}

static at::Tensor binary(int32_t op, const at::Tensor& a, const at::Tensor& b) {
  switch (op) {
    case MDM_BINARY_ADD: return at::add(a, b);
    case MDM_BINARY_SUB: return at::sub(a, b);
    case MDM_BINARY_MUL: return at::mul(a, b);
    case MDM_BINARY_DIV: return at::div(a, b);
    case MDM_BINARY_POW: return at::pow(a, b);
    case MDM_BINARY_MAXIMUM: return at::maximum(a, b);
    case MDM_BINARY_MINIMUM: return at::minimum(a, b);
    case MDM_BINARY_EQ: return at::eq(a, b);
    case MDM_BINARY_NE: return at::ne(a, b);
    case MDM_BINARY_LT: return at::lt(a, b);
    case MDM_BINARY_LE: return at::le(a, b);
    case MDM_BINARY_GT: return at::gt(a, b);
    case MDM_BINARY_GE: return at::ge(a, b);
    case MDM_BINARY_LOGICAL_AND: return at::logical_and(a, b);
    case MDM_BINARY_LOGICAL_OR: return at::logical_or(a, b);
    case MDM_BINARY_REMAINDER: return int_safe_remainder(a, b);
    case MDM_BINARY_ATAN2: return at::atan2(a, b);
  }
  throw std::invalid_argument("unknown binary op code " + std::to_string(op));
}

// A JavaScript number is both an int and a float: keep integer tensors integral when the value is
// integral, as Python does for `int_tensor + 1`.
static at::Scalar scalar_for(const at::Tensor& a, double v) {
  if (!at::isFloatingType(a.scalar_type()) && std::trunc(v) == v && std::fabs(v) < 9007199254740992.0)
    return at::Scalar(static_cast<int64_t>(v));
  return at::Scalar(v);
}

static at::Tensor binary_scalar(int32_t op, const at::Tensor& a, double v) {
  auto s = scalar_for(a, v);
  switch (op) {
    case MDM_BINARY_ADD: return at::add(a, s);
    case MDM_BINARY_SUB: return at::sub(a, s);
    case MDM_BINARY_MUL: return at::mul(a, s);
    case MDM_BINARY_DIV: return at::div(a, s);
    case MDM_BINARY_POW: return at::pow(a, s);
    case MDM_BINARY_MAXIMUM: return at::clamp_min(a, s);
    case MDM_BINARY_MINIMUM: return at::clamp_max(a, s);
    case MDM_BINARY_EQ: return at::eq(a, s);
    case MDM_BINARY_NE: return at::ne(a, s);
    case MDM_BINARY_LT: return at::lt(a, s);
    case MDM_BINARY_LE: return at::le(a, s);
    case MDM_BINARY_GT: return at::gt(a, s);
    case MDM_BINARY_GE: return at::ge(a, s);
    case MDM_BINARY_REMAINDER: return int_safe_remainder(a, s);
    case MDM_BINARY_RSUB: return at::rsub(a, s);
    case MDM_BINARY_RDIV: return at::mul(at::reciprocal(a), s);
  }
  throw std::invalid_argument("unsupported scalar op code " + std::to_string(op));
}

// When no input needs a gradient, the autograd and view-tracking dispatch layers would only pass
// the call through: skipping them gives the same result sooner, which matters for small tensors.
// Only for these out-of-place, non-view ops, whose outputs carry no autograd or view metadata.
struct SkipAutogradUnless {
  c10::optional<at::AutoDispatchBelowADInplaceOrView> guard;
  explicit SkipAutogradUnless(bool needs_grad) {
    if (!needs_grad) guard.emplace();
  }
};

MDM_API mdm_tensor mdm_unary(int32_t op, mdm_tensor a, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& x = mdm::ref(a);
    SkipAutogradUnless skip(x.requires_grad());
    return mdm::wrap(unary(op, x));
  })
}

MDM_API mdm_tensor mdm_binary(int32_t op, mdm_tensor a, mdm_tensor b, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& x = mdm::ref(a);
    const auto& y = mdm::ref(b);
    SkipAutogradUnless skip(x.requires_grad() || y.requires_grad());
    return mdm::wrap(binary(op, x, y));
  })
}

MDM_API mdm_tensor mdm_binary_scalar(int32_t op, mdm_tensor a, double v, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& x = mdm::ref(a);
    SkipAutogradUnless skip(x.requires_grad());
    return mdm::wrap(binary_scalar(op, x, v));
  })
}

MDM_API int32_t mdm_inplace(int32_t op, mdm_tensor a, mdm_tensor b, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& t = mdm::mut(a);
    const auto& o = mdm::ref(b);
    switch (op) {
      case MDM_INPLACE_ADD: t.add_(o); break;
      case MDM_INPLACE_SUB: t.sub_(o); break;
      case MDM_INPLACE_MUL: t.mul_(o); break;
      case MDM_INPLACE_DIV: t.div_(o); break;
      case MDM_INPLACE_COPY: t.copy_(o); break;
      default: throw std::invalid_argument("unknown in-place op code " + std::to_string(op));
    }
  })
}

MDM_API int32_t mdm_inplace_scalar(int32_t op, mdm_tensor a, double v, mdm_status* st) {
  GUARD_STATUS(st, {
    auto& t = mdm::mut(a);
    auto s = scalar_for(t, v);
    switch (op) {
      case MDM_INPLACE_ADD: t.add_(s); break;
      case MDM_INPLACE_SUB: t.sub_(s); break;
      case MDM_INPLACE_MUL: t.mul_(s); break;
      case MDM_INPLACE_DIV: t.div_(s); break;
      case MDM_INPLACE_FILL: t.fill_(s); break;
      default: throw std::invalid_argument("unknown in-place scalar op code " + std::to_string(op));
    }
  })
}

MDM_API int32_t mdm_lerp_(mdm_tensor a, mdm_tensor b, double weight, mdm_status* st) {
  GUARD_STATUS(st, {
    mdm::mut(a).lerp_(mdm::ref(b), weight);
  })
}

MDM_API mdm_tensor mdm_where(mdm_tensor cond, mdm_tensor a, mdm_tensor b, mdm_status* st) {
  GUARD_TENSOR(st, at::where(mdm::ref(cond), mdm::ref(a), mdm::ref(b)))
}

MDM_API mdm_tensor mdm_clamp(mdm_tensor a, double lo, double hi, int32_t has_lo, int32_t has_hi, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& t = mdm::ref(a);
    c10::optional<at::Scalar> l, h;
    if (has_lo) l = scalar_for(t, lo);
    if (has_hi) h = scalar_for(t, hi);
    return mdm::wrap(at::clamp(t, l, h));
  })
}

MDM_API mdm_tensor mdm_masked_fill(mdm_tensor a, mdm_tensor mask, double v, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& t = mdm::ref(a);
    return mdm::wrap(at::masked_fill(t, mdm::ref(mask), scalar_for(t, v)));
  })
}

MDM_API mdm_tensor mdm_reduce(int32_t op, mdm_tensor a, const int64_t* dims, int32_t n, int32_t keepdim,
                              mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& t = mdm::ref(a);
    std::vector<int64_t> d(dims, dims + n);
    if (n == 0)
      for (int64_t i = 0; i < t.dim(); i++) d.push_back(i);
    bool k = keepdim != 0;
    switch (op) {
      case MDM_REDUCE_SUM: return mdm::wrap(n == 0 && !k ? at::sum(t) : at::sum(t, d, k));
      case MDM_REDUCE_MEAN: return mdm::wrap(n == 0 && !k ? at::mean(t) : at::mean(t, d, k));
      case MDM_REDUCE_AMAX: return mdm::wrap(at::amax(t, d, k));
      case MDM_REDUCE_AMIN: return mdm::wrap(at::amin(t, d, k));
      case MDM_REDUCE_LOGSUMEXP: return mdm::wrap(at::logsumexp(t, d, k));
      case MDM_REDUCE_ALL:
      case MDM_REDUCE_ANY: {
        // One dimension at a time, highest first, so that the indices still to go stay valid.
        for (auto& x : d) x = at::maybe_wrap_dim(x, t.dim());
        std::sort(d.begin(), d.end());
        if (std::adjacent_find(d.begin(), d.end()) != d.end())
          throw std::invalid_argument("all/any: a dimension appears more than once in the list");
        auto r = t.to(at::kBool);
        for (auto it = d.rbegin(); it != d.rend(); ++it)
          r = op == MDM_REDUCE_ALL ? at::all(r, *it, k) : at::any(r, *it, k);
        return mdm::wrap(r);
      }
    }
    throw std::invalid_argument("unknown reduction op code " + std::to_string(op));
  })
}

MDM_API mdm_tensor mdm_var(mdm_tensor a, const int64_t* dims, int32_t n, int32_t unbiased, int32_t keepdim,
                           int32_t take_sqrt, mdm_status* st) {
  GUARD(st, nullptr, {
    const auto& t = mdm::ref(a);
    at::OptionalIntArrayRef d = n == 0 ? at::OptionalIntArrayRef() : mdm::ints(dims, n);
    return mdm::wrap(take_sqrt ? at::std(t, d, unbiased != 0, keepdim != 0)
                               : at::var(t, d, unbiased != 0, keepdim != 0));
  })
}

MDM_API int32_t mdm_minmax_dim(int32_t extreme, mdm_tensor a, int32_t dim, int32_t keepdim, mdm_tensor* out,
                               int32_t capacity, mdm_status* st) {
  GUARD(st, -1, {
    auto r = extreme == MDM_EXTREME_MAX ? at::max(mdm::ref(a), dim, keepdim != 0) : at::min(mdm::ref(a), dim, keepdim != 0);
    return mdm::emit({std::get<0>(r), std::get<1>(r)}, out, capacity);
  })
}

MDM_API mdm_tensor mdm_argminmax(int32_t extreme, mdm_tensor a, int32_t dim, int32_t has_dim, int32_t keepdim,
                                 mdm_status* st) {
  GUARD(st, nullptr, {
    c10::optional<int64_t> d;
    if (has_dim) d = dim;
    return mdm::wrap(extreme == MDM_EXTREME_MAX ? at::argmax(mdm::ref(a), d, keepdim != 0)
                                                : at::argmin(mdm::ref(a), d, keepdim != 0));
  })
}

MDM_API mdm_tensor mdm_argsort(mdm_tensor a, int32_t dim, int32_t descending, mdm_status* st) {
  GUARD_TENSOR(st, at::argsort(mdm::ref(a), dim, descending != 0))
}

MDM_API int32_t mdm_sort(mdm_tensor a, int32_t dim, int32_t descending, mdm_tensor* out, int32_t capacity,
                         mdm_status* st) {
  GUARD(st, -1, {
    auto r = at::sort(mdm::ref(a), dim, descending != 0);
    return mdm::emit({std::get<0>(r), std::get<1>(r)}, out, capacity);
  })
}

MDM_API int32_t mdm_topk(mdm_tensor a, int32_t k, int32_t dim, int32_t largest, mdm_tensor* out, int32_t capacity,
                         mdm_status* st) {
  GUARD(st, -1, {
    auto r = at::topk(mdm::ref(a), k, dim, largest != 0, true);
    return mdm::emit({std::get<0>(r), std::get<1>(r)}, out, capacity);
  })
}

MDM_API mdm_tensor mdm_cumsum(mdm_tensor a, int32_t dim, mdm_status* st) {
  GUARD_TENSOR(st, at::cumsum(mdm::ref(a), dim))
}

MDM_API mdm_tensor mdm_matmul(mdm_tensor a, mdm_tensor b, mdm_status* st) {
  GUARD_TENSOR(st, at::matmul(mdm::ref(a), mdm::ref(b)))
}

MDM_API mdm_tensor mdm_bmm(mdm_tensor a, mdm_tensor b, mdm_status* st) {
  GUARD_TENSOR(st, mdm::bmm(mdm::ref(a), mdm::ref(b)))
}

MDM_API mdm_tensor mdm_linear(mdm_tensor x, mdm_tensor w, mdm_tensor b, mdm_status* st) {
  GUARD_TENSOR(st, at::linear(mdm::ref(x), mdm::ref(w), mdm::opt(b)))
}

MDM_API mdm_tensor mdm_einsum(const char* equation, const mdm_tensor* ts, int32_t n, mdm_status* st) {
  GUARD_TENSOR(st, at::einsum(equation, mdm::tensors(ts, n)))
}
