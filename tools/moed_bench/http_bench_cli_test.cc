// moed-bench http run as a program: against the real moed (the tiny synthesized model on two CPU
// worker stages, on loopback), against a port nobody listens on, and with a URL it cannot use.
// Only the table's shape and counts are checked, never a latency, so a slow machine passes.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/deploy/tiny_moed.h"
#include "tests/integration/moed_process.h"
#include "tools/moed_model/testing/run_model_tool.h"

namespace moed::testing {
namespace {

using ::testing::HasSubstr;

struct BenchRun {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string out;     // stdout: the table
  std::string err;     // stderr: progress and errors
};

BenchRun RunBench(const std::string& args, const std::string& dir) {
  const std::string err_path = dir + "/bench.err";
  const moed::testing::ToolResult r =
      moed::testing::RunCommand(absl::StrCat(MOED_BINARY_DIR, "/tools/moed-bench ", args, " 2>'", err_path, "'"));
  BenchRun run;
  run.exit_code = r.exit_code;
  run.out = r.output;
  std::stringstream err;
  err << std::ifstream(err_path).rdbuf();
  run.err = err.str();
  return run;
}

// The table's lines, each split into its trimmed cells.
std::vector<std::vector<std::string>> TableRows(const std::string& out) {
  std::vector<std::vector<std::string>> rows;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    if (!absl::ConsumePrefix(&line, "|") || !absl::ConsumeSuffix(&line, "|")) continue;
    std::vector<std::string> cells;
    for (absl::string_view cell : absl::StrSplit(line, '|')) {
      cells.emplace_back(absl::StripAsciiWhitespace(cell));
    }
    rows.push_back(std::move(cells));
  }
  return rows;
}

TEST(HttpBenchCliTest, SweepsConcurrencyLevelsAgainstRealMoed) {
  const std::string dir = MakeTestDir("http_bench");
  auto config = PrepareTinyMoed(dir);
  ASSERT_TRUE(config.ok()) << config.status();
  auto moed = MoedProcess::Start(*config, dir + "/moed.log");
  ASSERT_TRUE(moed.ok()) << moed.status();

  const BenchRun run =
      RunBench(absl::StrCat("http http://127.0.0.1:", moed->port(),
                            " --concurrency 1,4 --requests 4 --max-tokens 8 --prompt-tokens 16"),
               dir);
  ASSERT_EQ(run.exit_code, 0) << run.out << run.err << moed->Log();
  const auto rows = TableRows(run.out);
  ASSERT_EQ(rows.size(), 4u) << run.out;  // header, separator, one row per level
  EXPECT_THAT(rows[0], ::testing::ElementsAre("concurrency", "requests", "errors", "prompt tokens",
                                              "output tokens/s", "TTFT p50 ms", "TTFT p95 ms",
                                              "ITL p50 ms", "ITL p95 ms", "req/s"));
  const char* levels[] = {"1", "4"};
  for (int i = 0; i < 2; ++i) {
    const std::vector<std::string>& row = rows[2 + i];
    ASSERT_EQ(row.size(), 10u) << run.out;
    EXPECT_EQ(row[0], levels[i]) << run.out;
    EXPECT_EQ(row[1], "4") << run.out;  // --requests 4 is at least the concurrency at both levels
    EXPECT_EQ(row[2], "0") << run.out << run.err;
    int64_t prompt_tokens = 0;
    EXPECT_TRUE(absl::SimpleAtoi(row[3], &prompt_tokens) && prompt_tokens > 0) << run.out;
    double tokens_per_s = 0;
    EXPECT_TRUE(absl::SimpleAtod(row[4], &tokens_per_s) && tokens_per_s > 0) << run.out;
    double ttft_ms = -1;
    EXPECT_TRUE(absl::SimpleAtod(row[5], &ttft_ms) && ttft_ms > 0) << run.out;
  }
  EXPECT_THAT(run.err, HasSubstr("model 'demo'"));  // the model came from GET /v1/models
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

TEST(HttpBenchCliTest, ClosedPortFailsNamingTheAddress) {
  const std::string dir = MakeTestDir("http_bench_closed");
  // A port bound but not listening refuses connections, and no other process can take it meanwhile.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string where = absl::StrCat("127.0.0.1:", ntohs(address.sin_port));

  const BenchRun run =
      RunBench(absl::StrCat("http http://", where, " --concurrency 1 --requests 1"), dir);
  close(fd);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr(where));
  EXPECT_THAT(run.err, HasSubstr("cannot connect"));
  EXPECT_EQ(run.out, "");  // no table when nothing could be measured
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

TEST(HttpBenchCliTest, RejectsUnusableUrlsAndFlags) {
  const std::string dir = MakeTestDir("http_bench_usage");
  BenchRun run = RunBench("http https://127.0.0.1:8080", dir);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("only http:// is supported"));
  run = RunBench("http http://127.0.0.1:8080 --concurrncy 4", dir);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("concurrncy"));
  run = RunBench("http http://127.0.0.1:8080 --concurrency 1,0", dir);
  EXPECT_NE(run.exit_code, 0);
  EXPECT_THAT(run.err, HasSubstr("--concurrency"));
  std::system(absl::StrCat("rm -rf '", dir, "'").c_str());
}

}  // namespace
}  // namespace moed::testing
