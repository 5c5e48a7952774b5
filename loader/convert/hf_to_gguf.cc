// Architecture dispatch of the HF -> GGUF conversion (hf_to_gguf.h).
#include "loader/convert/hf_to_gguf.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "loader/convert/hf_checkpoint.h"
#include "loader/convert/hf_qwen35moe.h"

namespace moed::convert {

absl::Status ConvertHfToGguf(const std::string& hf_dir, const std::string& out_path,
                             GgmlType outtype) {
  if (outtype != GgmlType::kF32 && outtype != GgmlType::kF16 && outtype != GgmlType::kBf16) {
    return absl::InvalidArgumentError("the output type must be F32, F16 or BF16");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<HfCheckpoint> checkpoint, HfCheckpoint::Open(hf_dir));
  const std::string& arch = checkpoint->architecture();
  if (arch.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", hf_dir, "/config.json' names no architecture"));
  }
  const nlohmann::json& config = checkpoint->hparams();
  if (auto q = config.find("quantization_config"); q != config.end() && !q->is_null()) {
    return absl::UnimplementedError(absl::StrCat(
        "'", hf_dir,
        "' is a quantized checkpoint (quantization_config); convert the unquantized weights"));
  }
  if (IsQwen35MoeArchitecture(arch)) return ConvertQwen35Moe(*checkpoint, out_path, outtype);
  return absl::UnimplementedError(
      absl::StrCat("architecture '", arch,
                   "' is not supported (supported: Qwen3_5MoeForCausalLM, "
                   "Qwen3_5MoeForConditionalGeneration)"));
}

}  // namespace moed::convert
