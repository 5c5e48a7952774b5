#include "workers/engine/loaded_model.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"

namespace moed::engine {

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path, const VariantOptions& variants) {
  auto model = std::make_unique<LoadedModel>();
  ASSIGN_OR_RETURN(model->file, gguf::GgufFile::Open(path));
  ASSIGN_OR_RETURN(model->plan, ResolveTensorVariants(*model->file, variants));
  model->tensors = model->plan.Infos();
  ASSIGN_OR_RETURN(model->description, DescribeModel(*model->file, model->tensors));
  if (model->description.architecture != "qwen35moe") {
    return absl::UnimplementedError(
        absl::StrCat("the CPU engine runs qwen35moe models; '", model->description.architecture, "' is described only"));
  }
  return model;
}

}  // namespace moed::engine
