// Minimal leveled logging to stderr (Debian 12's Abseil predates absl/log). One line per message,
// prefixed with a UTC timestamp, the level and the source location:
//   MOED_LOG(WARNING) << "type 42 read as IQ3_A770";
// The threshold comes from SetLogLevel() or the MOED_LOG_LEVEL environment variable
// (debug|info|warning|error). Thread-safe: each message is written with one write(2).
#ifndef MOED_KERNELS_BASE_LOG_H_
#define MOED_KERNELS_BASE_LOG_H_

#include <sstream>

namespace moed {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

class LogMessage {
 public:
  LogMessage(LogLevel level, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;
  std::ostream& stream() { return stream_; }

 private:
  std::ostringstream stream_;
};

}  // namespace moed

#define MOED_LOG_LEVEL_DEBUG ::moed::LogLevel::kDebug
#define MOED_LOG_LEVEL_INFO ::moed::LogLevel::kInfo
#define MOED_LOG_LEVEL_WARNING ::moed::LogLevel::kWarning
#define MOED_LOG_LEVEL_ERROR ::moed::LogLevel::kError

// A for statement (not if/else) so that `if (x) MOED_LOG(INFO) << ...; else ...` parses as written.
#define MOED_LOG(level)                                                                 \
  for (bool moed_log_once_ = ::moed::LogEnabled(MOED_LOG_LEVEL_##level); moed_log_once_; \
       moed_log_once_ = false)                                                          \
  ::moed::LogMessage(MOED_LOG_LEVEL_##level, __FILE__, __LINE__).stream()

#endif  // MOED_KERNELS_BASE_LOG_H_
