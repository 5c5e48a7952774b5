// Debian 12's Abseil is built with its own absl::string_view class (not an alias of
// std::string_view), so a std::string_view does not convert implicitly into absl::StrCat,
// StrJoin, StrSplit or a Status message. Sv() is the one place that bridges the two.
#ifndef MOED_KERNELS_BASE_STRINGS_H_
#define MOED_KERNELS_BASE_STRINGS_H_

#include <string_view>

#include "absl/strings/string_view.h"

namespace moed {

inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }
inline std::string_view StdSv(absl::string_view s) { return std::string_view(s.data(), s.size()); }

}  // namespace moed

#endif  // MOED_KERNELS_BASE_STRINGS_H_
