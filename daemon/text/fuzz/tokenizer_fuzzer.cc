// libFuzzer target: the tokenizer on arbitrary bytes. Valid UTF-8 must encode and decode back
// exactly; invalid UTF-8 must be refused with an error; any id sequence must stream-decode to
// valid UTF-8.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "daemon/text/tokenizer.h"
#include "daemon/text/utf8.h"

namespace {

const moed::text::Tokenizer& Vocab() {
  static const moed::text::Tokenizer* t = [] {
    auto r = moed::text::Tokenizer::FromGgufPath(std::string(MOED_TEST_DATA_DIR) +
                                                 "/text/vocab/ggml-vocab-qwen35.gguf");
    if (!r.ok()) std::abort();
    return r->release();
  }();
  return *t;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const moed::text::Tokenizer& t = Vocab();
  if (size == 0) return 0;
  const bool parse_special = data[0] & 1;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto ids = t.Encode(text, {.add_special = false, .parse_special = parse_special});
  if (moed::text::IsValidUtf8(text)) {
    if (!ids.ok()) std::abort();
    auto back = t.Decode(*ids, /*special=*/true);
    if (!back.ok() || *back != text) std::abort();
    moed::text::StreamingDetokenizer d(&t, /*special=*/true);
    std::string streamed;
    for (int32_t id : *ids) {
      auto s = d.Push(id);
      if (!s.ok() || !moed::text::IsValidUtf8(*s)) std::abort();
      streamed += *s;
    }
    streamed += d.Flush();
    if (streamed != text) std::abort();
  } else if (ids.ok()) {
    std::abort();
  }
  // The same bytes read as token ids.
  moed::text::StreamingDetokenizer d(&t);
  for (size_t i = 0; i + 4 <= size; i += 4) {
    int32_t id;
    std::memcpy(&id, data + i, 4);
    auto s = d.Push(id % (t.n_vocab() + 2));
    if (s.ok() && !moed::text::IsValidUtf8(*s)) std::abort();
  }
  if (!moed::text::IsValidUtf8(d.Flush())) std::abort();
  return 0;
}
