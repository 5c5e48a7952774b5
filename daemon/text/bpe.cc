// Byte-level BPE (see bpe.h).
#include "daemon/text/bpe.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "daemon/text/utf8.h"
#include "kernels/base/strings.h"

namespace moed::text {
namespace {

struct ByteMaps {
  std::array<char32_t, 256> to_unicode{};
  absl::flat_hash_map<char32_t, uint8_t> to_byte;
  ByteMaps() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
      to_unicode[b] = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      to_byte[to_unicode[b]] = static_cast<uint8_t>(b);
    }
  }
};

const ByteMaps& Maps() {
  static const ByteMaps* maps = new ByteMaps();
  return *maps;
}

}  // namespace

char32_t ByteToUnicode(uint8_t b) { return Maps().to_unicode[b]; }

int UnicodeToByte(char32_t cp) {
  const auto& m = Maps().to_byte;
  auto it = m.find(cp);
  return it == m.end() ? -1 : it->second;
}

std::string ByteLevelEncode(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &out);
  return out;
}

std::string ByteLevelDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(text, i, &cp);
    if (n == 0) {  // not UTF-8: keep the byte
      out.push_back(text[i]);
      ++i;
      continue;
    }
    const int b = UnicodeToByte(cp);
    if (b >= 0) {
      out.push_back(static_cast<char>(b));
    } else {
      out.append(text.substr(i, n));
    }
    i += n;
  }
  return out;
}

absl::StatusOr<BytePairEncoder> BytePairEncoder::Build(
    const absl::flat_hash_map<std::string, int32_t>& token_ids, std::span<const std::string> merges) {
  BytePairEncoder bpe;
  for (int b = 0; b < 256; ++b) {
    std::string s;
    AppendUtf8(ByteToUnicode(static_cast<uint8_t>(b)), &s);
    auto it = token_ids.find(s);
    if (it == token_ids.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("byte-level BPE vocab has no token for byte 0x", absl::Hex(b)));
    }
    bpe.byte_token_[b] = it->second;
  }
  bpe.merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    // Split at the first space after position 0 (a part is never empty and never holds a space).
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) continue;
    const std::string_view left(m.data(), sp);
    const std::string_view right(m.data() + sp + 1, m.size() - sp - 1);
    auto l = token_ids.find(Sv(left));
    auto r = token_ids.find(Sv(right));
    if (l == token_ids.end() || r == token_ids.end()) continue;
    joined.assign(left);
    joined.append(right);
    auto j = token_ids.find(joined);
    if (j == token_ids.end()) continue;
    // Keep the first (lowest) rank if a pair is listed twice.
    bpe.merges_.try_emplace(Key(l->second, r->second),
                            Merge{static_cast<int32_t>(rank), j->second});
  }
  return bpe;
}

void BytePairEncoder::EncodeWord(std::string_view word, std::vector<int32_t>* out) const {
  const size_t n = word.size();
  if (n == 0) return;
  if (n == 1) {
    out->push_back(byte_token_[static_cast<uint8_t>(word[0])]);
    return;
  }
  // Doubly linked symbols; a merged pair lives on in its left node.
  std::vector<int32_t> id(n);
  std::vector<int32_t> prev(n);
  std::vector<int32_t> next(n);
  for (size_t i = 0; i < n; ++i) {
    id[i] = byte_token_[static_cast<uint8_t>(word[i])];
    prev[i] = static_cast<int32_t>(i) - 1;
    next[i] = i + 1 < n ? static_cast<int32_t>(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank;
    int32_t left;
    int32_t left_id;
    int32_t right_id;
    // Lowest rank first; among equal ranks the leftmost pair (HF and llama.cpp agree on this).
    bool operator<(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto push = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    auto it = merges_.find(Key(id[left], id[next[left]]));
    if (it != merges_.end()) queue.push({it->second.rank, left, id[left], id[next[left]]});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(static_cast<int32_t>(i));
  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    const int32_t right = next[c.left];
    // Stale entries: the left node was absorbed (id -1), or either side changed since.
    if (id[c.left] != c.left_id || right < 0 || id[right] != c.right_id) continue;
    id[c.left] = merges_.find(Key(c.left_id, c.right_id))->second.result;
    id[right] = -1;
    next[c.left] = next[right];
    if (next[right] >= 0) prev[next[right]] = c.left;
    push(prev[c.left]);
    push(c.left);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out->push_back(id[i]);
}

}  // namespace moed::text
