// The YAML front matter of a Hugging Face README.md ("model card"), which llama.cpp's converter
// mines for general.license, general.tags, general.base_model.*, ... (gguf-py metadata.py).
//
// This is not a YAML parser: it reads the subset model cards use at the top level -- "key: scalar"
// (plain, 'single' or "double" quoted), "key: [a, b]" flow lists and block lists of scalars, with
// comments -- and resolves plain scalars as PyYAML's safe_load does (null, booleans, numbers and
// dates are not strings). Anything else (nested maps, block scalars, lists of maps) is kOther, so a
// caller can skip it knowingly instead of misreading it.
#ifndef MOED_LOADER_CONVERT_MODEL_CARD_H_
#define MOED_LOADER_CONVERT_MODEL_CARD_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace moed::convert {

struct CardValue {
  enum class Kind { kString, kList, kNull, kOther };
  Kind kind = Kind::kNull;
  std::string str;                // kString
  std::vector<std::string> list;  // kList: every item a string
};

using ModelCard = std::map<std::string, CardValue, std::less<>>;

// Empty when the text does not open with a "---" line (no front matter), like metadata.py.
ModelCard ParseModelCard(std::string_view readme);

}  // namespace moed::convert

#endif  // MOED_LOADER_CONVERT_MODEL_CARD_H_
