// UTF-8 helpers (see utf8.h).
#include "daemon/text/utf8.h"

namespace moed::text {

size_t Utf8SequenceLength(uint8_t c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp) {
  if (pos >= s.size()) return 0;
  const uint8_t c = static_cast<uint8_t>(s[pos]);
  const size_t n = Utf8SequenceLength(c);
  if (n == 0 || pos + n > s.size()) return 0;
  if (n == 1) {
    *cp = c;
    return 1;
  }
  char32_t v = c & (0xFF >> (n + 1));
  for (size_t i = 1; i < n; ++i) {
    const uint8_t b = static_cast<uint8_t>(s[pos + i]);
    if ((b & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b & 0x3F);
  }
  // Overlong (3- and 4-byte forms; 2-byte overlongs are excluded by the lead range), surrogates,
  // and values past U+10FFFF.
  if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
      (v >= 0xD800 && v <= 0xDFFF)) {
    return 0;
  }
  *cp = v;
  return n;
}

size_t FirstInvalidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    char32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) return i;
    i += n;
  }
  return s.size();
}

bool IsValidUtf8(std::string_view s) { return FirstInvalidUtf8(s) == s.size(); }

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = kReplacementChar;
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::vector<char32_t> DecodeUtf8String(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      out.push_back(kReplacementChar);
      ++i;
    } else {
      out.push_back(cp);
      i += n;
    }
  }
  return out;
}

std::string EncodeUtf8String(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) AppendUtf8(cp, &out);
  return out;
}

size_t Utf8Length(std::string_view s) {
  size_t count = 0;
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    i += n == 0 ? 1 : n;
    ++count;
  }
  return count;
}

size_t CompleteUtf8Prefix(std::string_view s) {
  // Only the last 3 bytes can be an incomplete sequence.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = start; i < s.size(); ++i) {
    const uint8_t c = static_cast<uint8_t>(s[i]);
    const size_t n = Utf8SequenceLength(c);
    if (n < 2 || i + n <= s.size()) continue;
    // A lead byte whose sequence runs past the end: is what we have so far valid?
    bool valid_so_far = true;
    for (size_t j = i + 1; j < s.size(); ++j) {
      if ((static_cast<uint8_t>(s[j]) & 0xC0) != 0x80) valid_so_far = false;
    }
    if (valid_so_far && i + 1 < s.size()) {
      const uint8_t c1 = static_cast<uint8_t>(s[i + 1]);
      // Second-byte restrictions that make a sequence overlong or a surrogate early.
      if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) ||
          (c == 0xF4 && c1 > 0x8F)) {
        valid_so_far = false;
      }
    }
    if (valid_so_far) return i;
  }
  return s.size();
}

std::string SanitizeUtf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {
      AppendUtf8(kReplacementChar, &out);
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

}  // namespace moed::text
