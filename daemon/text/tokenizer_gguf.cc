// Tokenizer::FromGguf: reads the tokenizer.ggml.* metadata keys of a model file.
#include "absl/strings/str_cat.h"
#include "daemon/text/tokenizer.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "loader/gguf/gguf_file.h"

namespace moed::text {
namespace {

// An optional token id key: absent -> kNoToken.
absl::StatusOr<int32_t> OptionalId(const gguf::GgufFile& file, std::string_view key) {
  if (file.FindValue(key) == nullptr) return kNoToken;
  ASSIGN_OR_RETURN(uint64_t v, file.GetUint(key));
  if (v > static_cast<uint64_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(key), " = ", v, " is not a token id"));
  }
  return static_cast<int32_t>(v);
}

absl::StatusOr<bool> OptionalBool(const gguf::GgufFile& file, std::string_view key, bool dflt) {
  if (file.FindValue(key) == nullptr) return dflt;
  return file.GetBool(key);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGguf(const gguf::GgufFile& file) {
  VocabData v;
  ASSIGN_OR_RETURN(std::string_view model, file.GetString("tokenizer.ggml.model"));
  v.model = std::string(model);
  if (file.FindValue("tokenizer.ggml.pre") != nullptr) {
    ASSIGN_OR_RETURN(std::string_view pre, file.GetString("tokenizer.ggml.pre"));
    v.pre = std::string(pre);
  }
  const gguf::Value* tokens = file.FindValue("tokenizer.ggml.tokens");
  if (tokens == nullptr) return absl::NotFoundError("GGUF has no tokenizer.ggml.tokens");
  ASSIGN_OR_RETURN(auto token_strings, tokens->GetStrings());
  v.tokens.assign(token_strings.begin(), token_strings.end());
  if (const gguf::Value* types = file.FindValue("tokenizer.ggml.token_type")) {
    if (!types->is_array() || types->size() != v.tokens.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.ggml.token_type must be an array of ", v.tokens.size(), " integers"));
    }
    v.types.reserve(v.tokens.size());
    for (uint64_t i = 0; i < types->size(); ++i) {
      ASSIGN_OR_RETURN(int64_t t, types->GetIntAt(i));
      if (t < 0 || t > 6) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.ggml.token_type[", i, "] = ", t, " is not a token type"));
      }
      v.types.push_back(static_cast<TokenType>(t));
    }
  }
  if (const gguf::Value* merges = file.FindValue("tokenizer.ggml.merges")) {
    ASSIGN_OR_RETURN(auto merge_strings, merges->GetStrings());
    v.merges.assign(merge_strings.begin(), merge_strings.end());
  }
  ASSIGN_OR_RETURN(v.bos_id, OptionalId(file, "tokenizer.ggml.bos_token_id"));
  ASSIGN_OR_RETURN(v.eos_id, OptionalId(file, "tokenizer.ggml.eos_token_id"));
  ASSIGN_OR_RETURN(v.eot_id, OptionalId(file, "tokenizer.ggml.eot_token_id"));
  ASSIGN_OR_RETURN(v.pad_id, OptionalId(file, "tokenizer.ggml.padding_token_id"));
  ASSIGN_OR_RETURN(v.unk_id, OptionalId(file, "tokenizer.ggml.unknown_token_id"));
  ASSIGN_OR_RETURN(v.add_bos, OptionalBool(file, "tokenizer.ggml.add_bos_token", false));
  ASSIGN_OR_RETURN(v.add_eos, OptionalBool(file, "tokenizer.ggml.add_eos_token", false));
  return FromVocab(std::move(v));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromGgufPath(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<gguf::GgufFile> file, gguf::GgufFile::Open(path));
  auto t = FromGguf(*file);
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat(path, ": ", t.status().message()));
  }
  return t;
}

}  // namespace moed::text
