// moed-model convert: a Hugging Face safetensors checkpoint to a GGUF file, matching llama.cpp's
// convert_hf_to_gguf.py (--no-mtp) tensor for tensor.
#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "loader/convert/hf_to_gguf.h"
#include "tools/moed_model/subcommand.h"

namespace moed::tool {
namespace {

absl::Status RunConvert(const Args& args) {
  RETURN_IF_ERROR(args.CheckKnown({"outtype"}));
  if (args.positional().size() != 2) {
    return absl::InvalidArgumentError(
        "expected HF_DIR and OUT.gguf (see 'moed-model convert --help')");
  }
  // llama.cpp's default output type is f16.
  const std::string outtype = absl::AsciiStrToLower(args.Get("outtype").value_or("f16"));
  GgmlType type;
  if (outtype == "f32") {
    type = GgmlType::kF32;
  } else if (outtype == "f16") {
    type = GgmlType::kF16;
  } else if (outtype == "bf16") {
    type = GgmlType::kBf16;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--outtype must be f32, f16 or bf16, not '", outtype, "'"));
  }
  const std::string& in = args.positional()[0];
  const std::string& out = args.positional()[1];
  RETURN_IF_ERROR(convert::ConvertHfToGguf(in, out, type));
  std::printf("wrote %s\n", out.c_str());
  return absl::OkStatus();
}

MOED_SUBCOMMAND(kConvert,
                {
                    .name = "convert",
                    .usage = "HF_DIR OUT.gguf [--outtype f32|f16|bf16]",
                    .help = "convert a Hugging Face safetensors checkpoint to GGUF (as llama.cpp "
                            "convert_hf_to_gguf.py --no-mtp; --outtype defaults to f16)",
                    .bool_flags = {},
                    .run = &RunConvert,
                });

}  // namespace
}  // namespace moed::tool
