// The Prometheus text exposition format 0.0.4 writers; see text_format.h.
#include "daemon/metrics/text_format.h"

#include <charconv>
#include <cmath>
#include <cstdint>

namespace moed::metrics {
namespace {

// Length of the valid UTF-8 sequence at the start of `s`, or 0 if it is not one (overlong forms,
// surrogates and code points above U+10FFFF are invalid, as in RFC 3629).
size_t ValidUtf8Length(std::string_view s) {
  const auto b0 = static_cast<uint8_t>(s[0]);
  if (b0 < 0x80) return 1;
  size_t len;
  uint32_t min_cp;
  uint32_t cp;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, min_cp = 0x80, cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, min_cp = 0x800, cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, min_cp = 0x10000, cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (s.size() < len) return 0;
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<uint8_t>(s[i]);
    if ((b & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min_cp || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
  return len;
}

std::string Escape(std::string_view in, bool quote) {
  std::string out;
  out.reserve(in.size());
  while (!in.empty()) {
    const size_t n = ValidUtf8Length(in);
    if (n == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER
      in.remove_prefix(1);
      continue;
    }
    if (n == 1) {
      const char c = in[0];
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '\n') {
        out += "\\n";
      } else if (c == '"' && quote) {
        out += "\\\"";
      } else {
        out += c;
      }
    } else {
      out.append(in.data(), n);
    }
    in.remove_prefix(n);
  }
  return out;
}

}  // namespace

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kHistogram:
      return "histogram";
    case MetricType::kGauge:
    case MetricType::kInfo:
      break;
  }
  return "gauge";
}

std::string FormatValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), value);
  if (ec != std::errc()) return "NaN";  // unreachable: 64 bytes hold any shortest double
  return std::string(buf, end);
}

std::string EscapeHelp(std::string_view help) { return Escape(help, /*quote=*/false); }
std::string EscapeLabelValue(std::string_view value) { return Escape(value, /*quote=*/true); }

void AppendHeader(std::string_view name, std::string_view help, MetricType type, std::string* out) {
  out->append("# HELP ").append(name).append(" ").append(EscapeHelp(help)).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(TypeName(type)).append("\n");
}

void AppendSample(std::string_view name, std::string_view suffix, const Labels& labels,
                  std::string_view le, double value, std::string* out) {
  out->append(name).append(suffix);
  if (!labels.empty() || !le.empty()) {
    out->push_back('{');
    bool first = true;
    for (const auto& [label, label_value] : labels) {
      if (!first) out->push_back(',');
      first = false;
      out->append(label).append("=\"").append(EscapeLabelValue(label_value)).append("\"");
    }
    if (!le.empty()) {
      if (!first) out->push_back(',');
      out->append("le=\"").append(le).append("\"");
    }
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(FormatValue(value));
  out->push_back('\n');
}

}  // namespace moed::metrics
