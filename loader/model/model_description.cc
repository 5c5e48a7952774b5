#include "loader/model/model_description.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed {
namespace {

std::map<std::string, std::unique_ptr<Architecture>, std::less<>>& Registry() {
  static auto* registry = new std::map<std::string, std::unique_ptr<Architecture>, std::less<>>();
  return *registry;
}

}  // namespace

std::string_view LayerKindName(LayerKind kind) {
  switch (kind) {
    case LayerKind::kFullAttention: return "full-attention";
    case LayerKind::kLinearAttention: return "linear-attention";
  }
  return "?";
}

const gguf::TensorInfo* LayerDescription::Find(std::string_view name) const {
  auto it = tensors.find(Sv(name));
  return it == tensors.end() ? nullptr : it->second;
}

bool RegisterArchitecture(std::unique_ptr<Architecture> arch) {
  std::string name(arch->name());
  Registry().emplace(std::move(name), std::move(arch));
  return true;
}

std::vector<std::string_view> KnownArchitectures() {
  std::vector<std::string_view> out;
  for (const auto& [name, arch] : Registry()) out.push_back(name);
  return out;
}

absl::StatusOr<ModelDescription> DescribeModel(const gguf::GgufFile& file,
                                               std::span<const gguf::TensorInfo> tensors) {
  ASSIGN_OR_RETURN(std::string_view name, file.GetString("general.architecture"));
  auto it = Registry().find(name);
  if (it == Registry().end()) {
    return absl::NotFoundError(absl::StrCat("architecture '", Sv(name), "' is not supported; moed implements: ",
                                            absl::StrJoin(KnownArchitectures(), ", ", [](std::string* out, std::string_view s) {
                                              out->append(s);
                                            })));
  }
  return it->second->Describe(file, tensors);
}

}  // namespace moed
