// UTF-8 helpers shared by the tokenizer, the streaming detokenizer and the template engine:
// validation, codepoint decoding and the length of the complete-character prefix of a byte run.
#ifndef MOED_DAEMON_TEXT_UTF8_H_
#define MOED_DAEMON_TEXT_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moed::text {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Decodes one codepoint at s[pos]. On success returns its length (1..4) and sets *cp; on an
// invalid or truncated sequence returns 0. Overlong forms and surrogates are invalid.
size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);

// Bytes of the sequence that starts with lead byte `c`: 1..4, or 0 if `c` cannot start one.
size_t Utf8SequenceLength(uint8_t c);

bool IsValidUtf8(std::string_view s);
// Byte offset of the first invalid sequence, or s.size() if s is valid.
size_t FirstInvalidUtf8(std::string_view s);

void AppendUtf8(char32_t cp, std::string* out);

// Codepoints of valid UTF-8 `s` (invalid bytes decode as U+FFFD, one per byte).
std::vector<char32_t> DecodeUtf8String(std::string_view s);
std::string EncodeUtf8String(const std::vector<char32_t>& cps);
// Number of codepoints (invalid bytes count one each).
size_t Utf8Length(std::string_view s);

// Splits a byte run into the part that can be emitted now and the tail that may still become a
// character: returns the length of the longest prefix that does not end inside an incomplete
// (but so far valid) sequence. Invalid bytes are part of the prefix (callers replace them).
size_t CompleteUtf8Prefix(std::string_view s);

// Copies `s` replacing every invalid byte with U+FFFD, so the result is valid UTF-8.
std::string SanitizeUtf8(std::string_view s);

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_UTF8_H_
