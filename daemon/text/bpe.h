// Byte-level BPE (GPT-2 style): a word's raw bytes start as one symbol each (the vocab stores them
// as the printable characters of GPT-2's bytes_to_unicode map), then the adjacent pair with the
// lowest merge rank is merged until no ranked pair is left. Symbols are token ids throughout, so a
// merge is one hash lookup on an id pair.
#ifndef MOED_DAEMON_TEXT_BPE_H_
#define MOED_DAEMON_TEXT_BPE_H_

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace moed::text {

// GPT-2's byte <-> printable-codepoint map: bytes 33..126, 161..172 and 174..255 map to
// themselves, the other 68 to U+0100.. in byte order.
char32_t ByteToUnicode(uint8_t b);
// The byte for a mapped codepoint, or -1 if `cp` is not in the map's image.
int UnicodeToByte(char32_t cp);
// Raw bytes -> the byte-level (vocab) spelling, and back. Decoding passes codepoints that are
// not in the map through as UTF-8.
std::string ByteLevelEncode(std::string_view bytes);
std::string ByteLevelDecode(std::string_view text);

class BytePairEncoder {
 public:
  // `token_ids` maps each vocab string to its id. `merges` are "left right" in rank order;
  // merges whose parts or result are not in the vocab are skipped. Every single byte must have a
  // token (FailedPrecondition naming the byte otherwise).
  static absl::StatusOr<BytePairEncoder> Build(
      const absl::flat_hash_map<std::string, int32_t>& token_ids,
      std::span<const std::string> merges);

  // Appends the ids of one pre-tokenized word (raw bytes).
  void EncodeWord(std::string_view word, std::vector<int32_t>* out) const;

  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t Key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  std::array<int32_t, 256> byte_token_{};
  absl::flat_hash_map<uint64_t, Merge> merges_;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_BPE_H_
