// libtorch's Adam, AdamW and SGD behind a handle, with state export and import for exact resume.
#include "common.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

struct mdm_optimizer_s {
  std::unique_ptr<torch::optim::Optimizer> impl;
};

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
        return new mdm_optimizer_s{std::make_unique<torch::optim::Adam>(ps, o)};
      }
      case MDM_OPTIMIZER_ADAMW: {
        need(6);
        auto o = torch::optim::AdamWOptions(hp[0]).betas({hp[1], hp[2]}).eps(hp[3]).weight_decay(hp[4]).amsgrad(hp[5] != 0);
        return new mdm_optimizer_s{std::make_unique<torch::optim::AdamW>(ps, o)};
      }
      case MDM_OPTIMIZER_SGD: {
        need(5);
        auto o = torch::optim::SGDOptions(hp[0]).momentum(hp[1]).dampening(hp[2]).weight_decay(hp[3]).nesterov(hp[4] != 0);
        return new mdm_optimizer_s{std::make_unique<torch::optim::SGD>(ps, o)};
      }
    }
    throw std::invalid_argument("unknown optimizer kind " + std::to_string(kind));
  })
}

MDM_API void mdm_optim_free(mdm_optimizer o) { delete o; }

MDM_API int32_t mdm_optim_step(mdm_optimizer o, mdm_status* st) {
  GUARD_STATUS(st, {
    if (o == nullptr) throw std::invalid_argument("null optimizer handle");
    o->impl->step();
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
