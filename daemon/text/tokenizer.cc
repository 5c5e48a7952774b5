// Tokenizer (see tokenizer.h). GGUF loading lives in tokenizer_gguf.cc.
#include "daemon/text/tokenizer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "daemon/text/utf8.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"

namespace moed::text {
namespace {

// Tokens llama.cpp also treats as end-of-generation when they are present in the vocab.
constexpr std::string_view kEogTexts[] = {"<|im_end|>",  "<|endoftext|>", "<|eot_id|>",
                                          "<|eom_id|>",  "<end_of_turn>", "<|end|>",
                                          "<|return|>", "<|call|>"};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromVocab(VocabData vocab) {
  if (vocab.model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat("unsupported tokenizer model '", vocab.model,
                                                 "' (only byte-level BPE, 'gpt2', is supported)"));
  }
  if (vocab.tokens.empty()) return absl::InvalidArgumentError("vocab has no tokens");
  if (vocab.tokens.size() > (1u << 30)) return absl::InvalidArgumentError("vocab is too large");
  if (!vocab.types.empty() && vocab.types.size() != vocab.tokens.size()) {
    return absl::InvalidArgumentError(absl::StrCat("token_type has ", vocab.types.size(),
                                                   " entries but there are ",
                                                   vocab.tokens.size(), " tokens"));
  }
  const int32_t n = static_cast<int32_t>(vocab.tokens.size());
  for (int32_t* id : {&vocab.bos_id, &vocab.eos_id, &vocab.eot_id, &vocab.pad_id, &vocab.unk_id}) {
    if (*id < kNoToken || *id >= n) {
      return absl::InvalidArgumentError(
          absl::StrCat("special token id ", *id, " is outside the vocab of ", n));
    }
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  ASSIGN_OR_RETURN(t->pre_tokenizer_, PreTokenizer::ForName(vocab.pre));
  t->token_ids_.reserve(vocab.tokens.size());
  for (int32_t i = 0; i < n; ++i) t->token_ids_.try_emplace(vocab.tokens[i], i);
  ASSIGN_OR_RETURN(BytePairEncoder bpe, BytePairEncoder::Build(t->token_ids_, vocab.merges));
  t->bpe_ = std::make_unique<BytePairEncoder>(std::move(bpe));
  t->vocab_ = std::move(vocab);

  t->special_by_byte_.resize(256);
  for (int32_t i = 0; i < n; ++i) {
    if (!t->IsSpecial(i) || t->vocab_.tokens[i].empty()) continue;
    t->special_by_byte_[static_cast<uint8_t>(t->vocab_.tokens[i][0])].push_back(i);
  }
  for (auto& list : t->special_by_byte_) {
    std::stable_sort(list.begin(), list.end(), [&](int32_t a, int32_t b) {
      return t->vocab_.tokens[a].size() > t->vocab_.tokens[b].size();
    });
  }
  auto add_eog = [&](int32_t id) {
    if (id >= 0 && std::find(t->eog_ids_.begin(), t->eog_ids_.end(), id) == t->eog_ids_.end()) {
      t->eog_ids_.push_back(id);
    }
  };
  add_eog(t->vocab_.eos_id);
  add_eog(t->vocab_.eot_id);
  for (std::string_view s : kEogTexts) {
    const int32_t id = t->TokenId(s);
    if (id >= 0 && t->token_type(id) == TokenType::kControl) add_eog(id);
  }
  return t;
}

TokenType Tokenizer::token_type(int32_t id) const {
  return vocab_.types.empty() ? TokenType::kNormal : vocab_.types[id];
}

int32_t Tokenizer::TokenId(std::string_view text) const {
  auto it = token_ids_.find(Sv(text));
  return it == token_ids_.end() ? kNoToken : it->second;
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const TokenType t = token_type(id);
  return t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUserDefined;
}

bool Tokenizer::IsEog(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

int32_t Tokenizer::MatchSpecial(std::string_view text, size_t pos, bool parse_special,
                                size_t* len) const {
  for (int32_t id : special_by_byte_[static_cast<uint8_t>(text[pos])]) {
    if (!parse_special && token_type(id) != TokenType::kUserDefined) continue;
    const std::string& s = vocab_.tokens[id];
    if (text.size() - pos >= s.size() && text.compare(pos, s.size(), s) == 0) {
      *len = s.size();
      return id;
    }
  }
  return kNoToken;
}

absl::Status Tokenizer::EncodeFragment(std::string_view text, std::vector<int32_t>* out) const {
  if (text.empty()) return absl::OkStatus();
  std::vector<std::string_view> words;
  RETURN_IF_ERROR(pre_tokenizer_->Split(text, &words));
  for (std::string_view w : words) bpe_->EncodeWord(w, out);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text,
                                                       EncodeOptions options) const {
  const size_t bad = FirstInvalidUtf8(text);
  if (bad != text.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot tokenize: text is not valid UTF-8 (byte offset ", bad, ")"));
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (options.add_special && vocab_.add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  size_t start = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t len = 0;
    const int32_t id = special_by_byte_[static_cast<uint8_t>(text[pos])].empty()
                           ? kNoToken
                           : MatchSpecial(text, pos, options.parse_special, &len);
    if (id == kNoToken) {
      ++pos;
      continue;
    }
    RETURN_IF_ERROR(EncodeFragment(text.substr(start, pos - start), &out));
    out.push_back(id);
    pos += len;
    start = pos;
  }
  RETURN_IF_ERROR(EncodeFragment(text.substr(start), &out));
  if (options.add_special && vocab_.add_eos && vocab_.eos_id >= 0) out.push_back(vocab_.eos_id);
  return out;
}

absl::StatusOr<std::string> Tokenizer::TokenToPiece(int32_t id, bool special) const {
  if (id < 0 || id >= n_vocab()) {
    return absl::OutOfRangeError(absl::StrCat("token id ", id, " is outside the vocab of ",
                                              n_vocab()));
  }
  const std::string& text = vocab_.tokens[id];
  switch (token_type(id)) {
    case TokenType::kControl:
    case TokenType::kUnknown:
      return special ? text : std::string();
    case TokenType::kUserDefined:
      return text;
    case TokenType::kUnused:
      return std::string();
    default:
      return ByteLevelDecode(text);
  }
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids, bool special) const {
  std::string out;
  for (int32_t id : ids) {
    ASSIGN_OR_RETURN(std::string piece, TokenToPiece(id, special));
    out += piece;
  }
  return out;
}

absl::StatusOr<std::string> StreamingDetokenizer::Push(int32_t id) {
  ASSIGN_OR_RETURN(std::string piece, tokenizer_->TokenToPiece(id, special_));
  return PushBytes(piece);
}

std::string StreamingDetokenizer::PushBytes(std::string_view bytes) {
  pending_.append(bytes);
  const size_t n = CompleteUtf8Prefix(pending_);
  std::string out = SanitizeUtf8(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string StreamingDetokenizer::Flush() {
  std::string out = SanitizeUtf8(pending_);
  pending_.clear();
  return out;
}

}  // namespace moed::text
