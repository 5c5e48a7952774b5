// A model file opened for serving: the mapped GGUF, its Phase Twin resolution, and the
// architecture description built on the resolved tensors. Everything a stage binds to lives
// here, so it outlives the stages that use it.
#ifndef MOED_WORKERS_ENGINE_LOADED_MODEL_H_
#define MOED_WORKERS_ENGINE_LOADED_MODEL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/gguf/gguf_file.h"
#include "loader/model/model_description.h"
#include "loader/model/qwen35moe.h"
#include "loader/tensor_variant.h"

namespace moed::engine {

struct LoadedModel {
  std::unique_ptr<gguf::GgufFile> file;
  VariantPlan plan;
  std::vector<gguf::TensorInfo> tensors;  // resolved; `description` points into it
  ModelDescription description;

  const Qwen35MoeHparams& hparams() const { return description.hparams_as<Qwen35MoeHparams>(); }
};

// Opens, resolves variants (file keys unless overridden) and describes the model. Only
// qwen35moe is runnable today: another architecture is an Unimplemented error naming it.
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModel(const std::string& path,
                                                       const VariantOptions& variants = {});

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_LOADED_MODEL_H_
