// Entry point of the HF safetensors -> GGUF conversion: opens the model directory, picks the
// architecture converter from config.json's "architectures", and writes the GGUF. Each supported
// architecture lives in its own hf_<arch>.{h,cc} beside this file.
#ifndef MOED_LOADER_CONVERT_HF_TO_GGUF_H_
#define MOED_LOADER_CONVERT_HF_TO_GGUF_H_

#include <string>

#include "absl/status/status.h"
#include "kernels/quants/ggml_type.h"

namespace moed::convert {

// Converts the checkpoint in `hf_dir` (config.json + model*.safetensors) to `out_path`, as
// llama.cpp's convert_hf_to_gguf.py --no-mtp --outtype {f32,f16,bf16} would.
// Errors: NotFound (no config.json, no weights, a required tensor missing), Unimplemented (an
// architecture or dtype this converter does not handle), InvalidArgument (malformed inputs).
absl::Status ConvertHfToGguf(const std::string& hf_dir, const std::string& out_path,
                             GgmlType outtype);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_HF_TO_GGUF_H_
