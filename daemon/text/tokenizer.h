// Tokenizer: text <-> token ids for byte-level BPE vocabs (tokenizer.ggml.model "gpt2"), as
// llama.cpp and HF tokenizers do it: special tokens are cut out first (leftmost-longest), each
// remaining fragment is split by the pre-tokenizer regex, and each word is BPE-merged.
//
// Control tokens (<|im_start|>, ...) are recognised in text only when EncodeOptions::parse_special
// is set (the server sets it for rendered chat templates, never for raw user text); user-defined
// (added) tokens are always recognised, as in llama.cpp.
#ifndef MOED_DAEMON_TEXT_TOKENIZER_H_
#define MOED_DAEMON_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "daemon/text/bpe.h"
#include "daemon/text/pretokenizer.h"

namespace moed::gguf {
class GgufFile;
}

namespace moed::text {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

inline constexpr int32_t kNoToken = -1;

// Everything a tokenizer is built from; FromGguf fills it from tokenizer.ggml.* keys.
struct VocabData {
  std::string model = "gpt2";
  std::string pre = "default";
  std::vector<std::string> tokens;
  std::vector<TokenType> types;  // empty: all normal
  std::vector<std::string> merges;
  int32_t bos_id = kNoToken;
  int32_t eos_id = kNoToken;
  int32_t eot_id = kNoToken;
  int32_t pad_id = kNoToken;
  int32_t unk_id = kNoToken;
  bool add_bos = false;
  bool add_eos = false;
};

struct EncodeOptions {
  bool add_special = false;    // prepend BOS / append EOS where the vocab asks for them
  bool parse_special = false;  // recognise control tokens written in the text
};

class Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromVocab(VocabData vocab);
  // Reads tokenizer.ggml.{model,pre,tokens,token_type,merges,*_token_id,add_*_token}.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGguf(const gguf::GgufFile& file);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromGgufPath(const std::string& path);

  // InvalidArgument if `text` is not valid UTF-8 (with the byte offset).
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text,
                                              EncodeOptions options = {}) const;

  // The bytes a token stands for: byte-level decoded for normal tokens, the text itself for
  // user-defined tokens, and for control/unknown tokens the text only when `special` is set.
  // A piece may be part of a UTF-8 character. OutOfRange for a bad id.
  absl::StatusOr<std::string> TokenToPiece(int32_t id, bool special = false) const;
  // Concatenated pieces (raw bytes: may be invalid UTF-8 if the ids split a character).
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool special = false) const;

  int32_t n_vocab() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  const std::string& token_text(int32_t id) const { return vocab_.tokens[id]; }
  TokenType token_type(int32_t id) const;
  // Id of a token spelled exactly `text` (vocab spelling), or kNoToken.
  int32_t TokenId(std::string_view text) const;
  bool IsSpecial(int32_t id) const;  // control, unknown or user-defined
  // End of generation: EOS, EOT and the chat end markers (<|im_end|>, <|endoftext|>, ...).
  bool IsEog(int32_t id) const;
  const std::vector<int32_t>& eog_ids() const { return eog_ids_; }
  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  const std::string& pre() const { return vocab_.pre; }

 private:
  Tokenizer() = default;
  // Finds the longest special token at text[pos]; returns its id or kNoToken.
  int32_t MatchSpecial(std::string_view text, size_t pos, bool parse_special, size_t* len) const;
  absl::Status EncodeFragment(std::string_view text, std::vector<int32_t>* out) const;

  VocabData vocab_;
  absl::flat_hash_map<std::string, int32_t> token_ids_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BytePairEncoder> bpe_;
  // Special tokens by first byte, longest first.
  std::vector<std::vector<int32_t>> special_by_byte_;
  std::vector<int32_t> eog_ids_;
};

// Turns a stream of token ids into text that is always valid UTF-8: bytes of a character split
// across tokens are held back until the character is complete; bytes that can never become a
// character are emitted as U+FFFD.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer* tokenizer, bool special = false)
      : tokenizer_(tokenizer), special_(special) {}
  // The text that became complete with this token (possibly empty).
  absl::StatusOr<std::string> Push(int32_t id);
  // Feeds raw bytes (tests, and callers that already have pieces).
  std::string PushBytes(std::string_view bytes);
  // End of stream: what is held back, with an incomplete tail as U+FFFD.
  std::string Flush();
  size_t pending_bytes() const { return pending_.size(); }

 private:
  const Tokenizer* tokenizer_;
  bool special_;
  std::string pending_;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_TOKENIZER_H_
