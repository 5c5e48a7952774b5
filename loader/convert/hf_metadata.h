// The general.* keys llama.cpp's converter writes for any model (gguf-py metadata.py and
// utility.py): general.type, the sampling defaults of generation_config.json, what the README.md
// model card says (license, tags, languages, base models, datasets, ...; see model_card.h for the
// YAML subset read), general.name and its components parsed from the model id ("Qwen3.5-35B-A3B"
// -> name "Qwen3.5 35B A3B", basename "Qwen3.5", size label "35B-A3B"), and a computed size label
// ("8x281K") when nothing else gives one. Not reproduced: --metadata override files and
// --model-name, which this converter does not take.
#ifndef MOED_LOADER_CONVERT_HF_METADATA_H_
#define MOED_LOADER_CONVERT_HF_METADATA_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "loader/convert/convert_tensor.h"
#include "loader/convert/hf_checkpoint.h"
#include "loader/gguf/gguf_writer.h"

namespace moed::convert {

struct ModelIdComponents {
  std::optional<std::string> full_name;  // the part after "org/"
  std::optional<std::string> organization;
  std::optional<std::string> basename;
  std::optional<std::string> finetune;
  std::optional<std::string> version;
  std::optional<std::string> size_label;
};

// Metadata.get_model_id_components.
ModelIdComponents GetModelIdComponents(std::string_view model_id, int64_t total_params);
// Metadata.id_to_title: "qwen3.5-35b-a3b" -> "Qwen3.5 35b A3B" (words starting with a digit or
// shaped like v1.2 are kept as they are).
std::string IdToTitle(std::string_view id);
// utility.size_label: "8x281K", "35B", ...
std::string SizeLabel(const ParameterCounts& counts);

// Adds general.type, general.sampling.*, general.name, ..., general.size_label, general.license*,
// general.source.*, general.base_model.*, general.dataset.*, general.tags and general.languages,
// in the converter's order.
// REQUIRES: general.architecture was set first.
void SetGeneralMetadata(const HfCheckpoint& checkpoint, const ParameterCounts& counts,
                        gguf::GgufWriter& writer);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_HF_METADATA_H_
