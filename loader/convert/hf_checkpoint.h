// A Hugging Face model directory as llama.cpp's converter sees it: config.json (with the text
// sub-config merged into the top level), the optional generation_config.json, and every tensor of
// the safetensors parts, listed in the converter's order (parts sorted by file name, tensors
// sorted by name inside each part). Architecture-independent; the per-architecture conversions
// (hf_qwen35moe.h, ...) build on it.
#ifndef MOED_LOADER_CONVERT_HF_CHECKPOINT_H_
#define MOED_LOADER_CONVERT_HF_CHECKPOINT_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "loader/safetensors.h"
#include "nlohmann/json.hpp"

namespace moed::convert {

struct HfTensorRef {
  std::string name;  // as stored in the checkpoint
  const SafetensorsFile* file = nullptr;
  const SafetensorsTensor* tensor = nullptr;
};

class HfCheckpoint {
 public:
  // Errors: NotFound when config.json or the weights are missing, InvalidArgument for malformed
  // JSON or safetensors, or an index that disagrees with the parts; Unimplemented for
  // pytorch_model.bin checkpoints.
  static absl::StatusOr<std::unique_ptr<HfCheckpoint>> Open(const std::string& dir);

  const std::string& dir() const { return dir_; }
  // The directory's own name (the converter derives general.name from it).
  const std::string& dir_name() const { return dir_name_; }
  // config.json as stored.
  const nlohmann::json& config() const { return config_; }
  // config.json with "text_config" (or its aliases) merged over the top level.
  const nlohmann::json& hparams() const { return hparams_; }
  // generation_config.json, or null when absent or unreadable (the converter ignores it then).
  const nlohmann::json& generation_config() const { return generation_config_; }
  // README.md (the model card), empty when absent.
  const std::string& readme() const { return readme_; }
  // architectures[0] (of text_config if it names one); empty if none.
  const std::string& architecture() const { return architecture_; }

  // Every tensor, in the converter's order.
  const std::vector<HfTensorRef>& tensors() const { return tensors_; }

 private:
  HfCheckpoint() = default;

  std::string dir_;
  std::string dir_name_;
  nlohmann::json config_;
  nlohmann::json hparams_;
  nlohmann::json generation_config_;
  std::string readme_;
  std::string architecture_;
  std::vector<std::unique_ptr<SafetensorsFile>> parts_;
  std::vector<HfTensorRef> tensors_;
};

// Typed access to config values; errors name the key ("config.json: 'hidden_size' must be ...").
absl::StatusOr<int64_t> JsonInt(const nlohmann::json& obj, std::string_view key);
absl::StatusOr<double> JsonNumber(const nlohmann::json& obj, std::string_view key);
// The first key present (like the converter's find_hparam); NotFound naming them all if none is.
absl::StatusOr<int64_t> FindJsonInt(const nlohmann::json& obj,
                                    std::initializer_list<std::string_view> keys);
// nullopt if none of the keys is present (or the value is null).
std::optional<std::string_view> FindPresentKey(const nlohmann::json& obj,
                                               std::initializer_list<std::string_view> keys);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_HF_CHECKPOINT_H_
