// Reading PyTorch's own checkpoint format (torch.save of a state dict) through libtorch's unpickler,
// and swapping a parameter's data in place (Module.to keeps handles and optimizer references).
#include "common.h"

#include <torch/serialize.h>

struct mdm_named_s {
  std::vector<std::string> names;
  std::vector<at::Tensor> tensors;
  std::vector<std::string> skipped;  // non-tensor entries, reported by name
};
using mdm_named = mdm_named_s*;

// Flattens nested dicts with dotted keys, as a state dict inside {"model": ...} would need.
static void flatten(const c10::IValue& v, const std::string& prefix, mdm_named_s& out) {
  if (v.isTensor()) {
    out.names.push_back(prefix);
    out.tensors.push_back(v.toTensor());
  } else if (v.isGenericDict()) {
    for (const auto& item : v.toGenericDict()) {
      const auto& key = item.key();
      std::string name = key.isString() ? key.toStringRef() : key.isInt() ? std::to_string(key.toInt()) : "?";
      flatten(item.value(), prefix.empty() ? name : prefix + "." + name, out);
    }
  } else {
    out.skipped.push_back(prefix.empty() ? "<root>" : prefix);
  }
}

// Parses the bytes of a .pt file written by torch.save (zip format) holding a dict of tensors.
MDM_API mdm_named mdm_pt_load(const void* data, int64_t size, mdm_status* st) {
  GUARD(st, nullptr, {
    if (size <= 0) throw std::invalid_argument("empty checkpoint data");
    std::vector<char> bytes(static_cast<const char*>(data), static_cast<const char*>(data) + size);
    auto value = torch::pickle_load(bytes);
    if (!value.isGenericDict() && !value.isTensor())
      throw std::invalid_argument(std::string("checkpoint holds a ") + value.tagKind() +
                                  ", not a dict of tensors (a state dict)");
    auto out = std::make_unique<mdm_named_s>();
    flatten(value, "", *out);
    return out.release();
  })
}

MDM_API int32_t mdm_named_count(mdm_named n) { return n == nullptr ? 0 : static_cast<int32_t>(n->names.size()); }

MDM_API int32_t mdm_named_skipped(mdm_named n) { return n == nullptr ? 0 : static_cast<int32_t>(n->skipped.size()); }

// Names stay owned by the list; copy them before freeing it.
MDM_API const char* mdm_named_name(mdm_named n, int32_t i, int32_t skipped) {
  if (n == nullptr) return nullptr;
  const auto& v = skipped ? n->skipped : n->names;
  return i >= 0 && i < static_cast<int32_t>(v.size()) ? v[i].c_str() : nullptr;
}

MDM_API mdm_tensor mdm_named_tensor(mdm_named n, int32_t i, mdm_status* st) {
  GUARD(st, nullptr, {
    if (n == nullptr || i < 0 || i >= static_cast<int32_t>(n->tensors.size()))
      throw std::invalid_argument("named tensor index out of range");
    return mdm::wrap(n->tensors[i]);
  })
}

MDM_API void mdm_named_free(mdm_named n) { delete n; }

// Replaces the data behind `t` (device, dtype, storage) while `t` keeps its identity as a leaf.
MDM_API int32_t mdm_set_data(mdm_tensor t, mdm_tensor src, mdm_status* st) {
  GUARD_STATUS(st, {
    if (t == nullptr) throw std::invalid_argument("null tensor handle");
    t->set_data(mdm::ref(src));
  })
}
