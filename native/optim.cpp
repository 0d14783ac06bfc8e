// libtorch's Adam, AdamW and SGD behind a handle, with state export and import for exact resume.
#include "common.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/version.h>
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros_like.h>
#endif

struct mdm_optimizer_s {
  std::unique_ptr<torch::optim::Optimizer> impl;
  int32_t kind;
};

namespace {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
// libtorch's Adam and AdamW steps run about ten ops per parameter; since PyTorch 2.4 the whole update
// is one multi-tensor kernel, on the CPU too (torch.optim's fused=True): several times faster for a
// UNet's hundreds of parameters. It updates the optimizer's own state tensors and step counts, so a
// checkpoint is the same either way. Returns false (libtorch's step then) where the kernel does not
// apply: other parameter dtypes or devices.
template <typename Options, typename State>
bool fused_adam_step(torch::optim::Optimizer& opt, bool decoupled) {
  for (const auto& group : opt.param_groups())
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto t = p.scalar_type();
      if (!(p.device().is_cpu() || p.device().is_cuda()) || (t != at::kFloat && t != at::kDouble) ||
          p.grad().is_sparse() || p.grad().scalar_type() != t)
        return false;
    }
  auto& states = opt.state();
  for (auto& group : opt.param_groups()) {
    const auto& o = static_cast<const Options&>(group.options());
    std::vector<at::Tensor> params, grads, avgs, sqs, maxes, steps;
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      auto it = states.find(p.unsafeGetTensorImpl());
      if (it == states.end()) {
        auto fresh = std::make_unique<State>();
        fresh->exp_avg(at::zeros_like(p, at::MemoryFormat::Preserve));
        fresh->exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        if (o.amsgrad()) fresh->max_exp_avg_sq(at::zeros_like(p, at::MemoryFormat::Preserve));
        it = states.emplace(p.unsafeGetTensorImpl(), std::move(fresh)).first;
      }
      auto& s = static_cast<State&>(*it->second);
      s.step(s.step() + 1);
      params.push_back(p);
      grads.push_back(p.grad());
      avgs.push_back(s.exp_avg());
      sqs.push_back(s.exp_avg_sq());
      if (o.amsgrad()) maxes.push_back(s.max_exp_avg_sq());
      // The kernel reads each parameter's step count from a float tensor.
      steps.push_back(at::scalar_tensor(static_cast<double>(s.step()), p.options().dtype(at::kFloat)));
    }
    if (params.empty()) continue;
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    at::NoGradGuard no_grad;
    if (decoupled)
      at::_fused_adamw_(params, grads, avgs, sqs, maxes, steps, o.lr(), beta1, beta2, o.weight_decay(), o.eps(),
                        o.amsgrad(), false);
    else
      at::_fused_adam_(params, grads, avgs, sqs, maxes, steps, o.lr(), beta1, beta2, o.weight_decay(), o.eps(),
                       o.amsgrad(), false);
  }
  return true;
}
#endif

bool fused_step(mdm_optimizer_s& o) {
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  if (o.kind == MDM_OPTIMIZER_ADAM)
    return fused_adam_step<torch::optim::AdamOptions, torch::optim::AdamParamState>(*o.impl, false);
  if (o.kind == MDM_OPTIMIZER_ADAMW)
    return fused_adam_step<torch::optim::AdamWOptions, torch::optim::AdamWParamState>(*o.impl, true);
#endif
  return false;
}

}  // namespace

struct mdm_blob_s {
  std::string bytes;
};

// Hyper-parameters arrive in the order mdm.h gives for each kind.
MDM_API mdm_optimizer mdm_optim_new(int32_t kind, const mdm_tensor* params, int32_t n, const double* hp,
                                    int32_t nhp, mdm_status* st) {
  GUARD(st, nullptr, {
    auto ps = mdm::tensors(params, n);
    auto need = [&](int64_t k) {
      if (nhp != k)
        throw std::invalid_argument("optimizer kind " + std::to_string(kind) + " takes " + std::to_string(k) +
                                    " hyper-parameters, got " + std::to_string(nhp));
    };
    switch (kind) {
      case MDM_OPTIMIZER_ADAM: {
        need(6);
        auto o = torch::optim::AdamOptions(hp[0]).betas({hp[1], hp[2]}).eps(hp[3]).weight_decay(hp[4]).amsgrad(hp[5] != 0);
        return new mdm_optimizer_s{std::make_unique<torch::optim::Adam>(ps, o), kind};
      }
      case MDM_OPTIMIZER_ADAMW: {
        need(6);
        auto o = torch::optim::AdamWOptions(hp[0]).betas({hp[1], hp[2]}).eps(hp[3]).weight_decay(hp[4]).amsgrad(hp[5] != 0);
        return new mdm_optimizer_s{std::make_unique<torch::optim::AdamW>(ps, o), kind};
      }
      case MDM_OPTIMIZER_SGD: {
        need(5);
        auto o = torch::optim::SGDOptions(hp[0]).momentum(hp[1]).dampening(hp[2]).weight_decay(hp[3]).nesterov(hp[4] != 0);
        return new mdm_optimizer_s{std::make_unique<torch::optim::SGD>(ps, o), kind};
      }
    }
    throw std::invalid_argument("unknown optimizer kind " + std::to_string(kind));
  })
}

MDM_API void mdm_optim_free(mdm_optimizer o) { delete o; }

MDM_API int32_t mdm_optim_step(mdm_optimizer o, mdm_status* st) {
  GUARD_STATUS(st, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    if (!fused_step(*o)) o->impl->step();
  })
}

// Zeroes (or, with set_to_none, drops) the gradients of every parameter.
MDM_API int32_t mdm_optim_zero_grad(mdm_optimizer o, int32_t set_to_none, mdm_status* st) {
  GUARD_STATUS(st, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    for (auto& group : o->impl->param_groups())
      for (auto& p : group.params()) {
        auto& g = p.mutable_grad();
        if (!g.defined()) continue;
        if (set_to_none) {
          g = at::Tensor();
        } else {
          g = g.detach();
          g.zero_();
        }
      }
  })
}

MDM_API int32_t mdm_optim_set_lr(mdm_optimizer o, double lr, mdm_status* st) {
  GUARD_STATUS(st, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    for (auto& group : o->impl->param_groups()) group.options().set_lr(lr);
  })
}

MDM_API double mdm_optim_get_lr(mdm_optimizer o, mdm_status* st) {
  GUARD(st, -1.0, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    return o->impl->param_groups().at(0).options().get_lr();
  })
}

// Serialises the optimizer's state (moments, step counts, options) with libtorch's archive format.
MDM_API mdm_blob mdm_optim_state_save(mdm_optimizer o, mdm_status* st) {
  GUARD(st, nullptr, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    torch::serialize::OutputArchive archive;
    o->impl->save(archive);
    auto blob = std::make_unique<mdm_blob_s>();
    archive.save_to([&](const void* data, size_t size) {
      blob->bytes.append(static_cast<const char*>(data), size);
      return size;
    });
    return blob.release();
  })
}

MDM_API int32_t mdm_optim_state_load(mdm_optimizer o, const void* data, int64_t size, mdm_status* st) {
  GUARD_STATUS(st, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    if (size <= 0) throw std::invalid_argument("empty optimizer state");
    torch::serialize::InputArchive archive;
    archive.load_from(static_cast<const char*>(data), static_cast<size_t>(size));
    // libtorch's load() restores the per-parameter state only; torch.optim's load_state_dict also
    // restores each group's options (lr, betas, ...). Read them all before changing anything, so
    // that a bad state leaves the optimizer as it was.
    auto& groups = o->impl->param_groups();
    torch::serialize::InputArchive groups_archive;
    archive.read("param_groups", groups_archive);
    std::vector<std::unique_ptr<torch::optim::OptimizerOptions>> options;
    for (size_t i = 0; i < groups.size(); i++) {
      torch::serialize::InputArchive group_archive, options_archive;
      groups_archive.read("param_groups/" + std::to_string(i), group_archive);
      group_archive.read("options", options_archive);
      options.push_back(groups[i].options().clone());
      options.back()->serialize(options_archive);
    }
    o->impl->load(archive);
    for (size_t i = 0; i < groups.size(); i++) groups[i].set_options(std::move(options[i]));
  })
}

MDM_API int64_t mdm_blob_size(mdm_blob b) { return b == nullptr ? 0 : static_cast<int64_t>(b->bytes.size()); }

MDM_API int32_t mdm_blob_copy(mdm_blob b, void* dst, int64_t size, mdm_status* st) {
  GUARD_STATUS(st, {
    if (b == nullptr || size != static_cast<int64_t>(b->bytes.size()))
      throw std::invalid_argument("blob size mismatch");
    std::memcpy(dst, b->bytes.data(), b->bytes.size());
  })
}

MDM_API void mdm_blob_free(mdm_blob b) { delete b; }
