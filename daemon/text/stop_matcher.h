// Stop strings over a text stream: text is released only once it cannot be the start of a stop
// string, so a stop string split across tokens ("</" + "answer>") is caught and never emitted,
// not even in part.
#ifndef MOED_DAEMON_TEXT_STOP_MATCHER_H_
#define MOED_DAEMON_TEXT_STOP_MATCHER_H_

#include <string>
#include <string_view>
#include <vector>

namespace moed::text {

class StopMatcher {
 public:
  // Empty stop strings are ignored.
  explicit StopMatcher(std::vector<std::string> stops);

  struct Result {
    std::string text;      // safe to emit
    bool stopped = false;  // a stop string matched: `text` ends right before it
    std::string matched;   // which one
  };
  // After a stop, further input is ignored.
  Result Push(std::string_view text);
  // End of stream: whatever was held back.
  std::string Flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace moed::text

#endif  // MOED_DAEMON_TEXT_STOP_MATCHER_H_
