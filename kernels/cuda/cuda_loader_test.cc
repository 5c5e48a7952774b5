// The loader must turn every way the CUDA backend can be missing into a Status: no library file,
// a file that is not the backend, a library without a driver or GPU. Runs on every machine.
#include "kernels/cuda/loader.h"

#include <cstdlib>
#include <string>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moed::cuda {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

TEST(CudaLoaderTest, MissingLibraryIsUnavailable) {
  LoadOptions options;
  options.library_path = "/nonexistent/moed/libmoed_cuda.so";
  const auto lib = CudaLibrary::Load(options);
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lib.status().message()), HasSubstr("CUDA backend absent"));
  EXPECT_THAT(std::string(lib.status().message()), HasSubstr("/nonexistent/moed/libmoed_cuda.so"));
}

TEST(CudaLoaderTest, LibraryWithoutEntryPointIsUnavailable) {
  LoadOptions options;
  options.library_path = "libc.so.6";  // loadable, but not the backend
  const auto lib = CudaLibrary::Load(options);
  ASSERT_FALSE(lib.ok());
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lib.status().message()), HasSubstr("has no moed_cuda_api_v1"));
}

TEST(CudaLoaderTest, CandidatesFollowOptionsThenEnvironment) {
  LoadOptions options;
  options.library_path = "/a/b.so";
  EXPECT_THAT(LibraryCandidates(options), ::testing::ElementsAre("/a/b.so"));
  setenv(std::string(kLibraryEnv).c_str(), "/from/env.so", 1);
  const auto candidates = LibraryCandidates(LoadOptions{});
  unsetenv(std::string(kLibraryEnv).c_str());
  ASSERT_GE(candidates.size(), 2u);
  EXPECT_EQ(candidates.front(), "/from/env.so");
  EXPECT_EQ(candidates.back(), "libmoed_cuda.so");
}

// Whatever this machine has (no library; the library but no driver or GPU; a GPU), the default
// load returns and says which.
TEST(CudaLoaderTest, DefaultLoadAnswersWithoutCrashing) {
  const auto lib = CudaLibrary::Load(LoadOptions{});
  if (lib.ok()) {
    EXPECT_GE((*lib)->device_count(), 1);
    EXPECT_EQ((*lib)->api().version, static_cast<uint32_t>(MOED_CUDA_API_VERSION));
    EXPECT_TRUE((*lib)->HasAbi11());  // the library built from this tree
    EXPECT_EQ((*lib)->api().struct_size, sizeof(MoedCudaApiV1));
    return;
  }
  EXPECT_EQ(lib.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lib.status().message()),
              AnyOf(HasSubstr("CUDA backend absent"), HasSubstr("no CUDA driver or device")));
}

// With require_device = false the library loads on a machine without a GPU, and the runtime's
// failure to find a driver is an error code with a message, not a crash.
TEST(CudaLoaderTest, NoDeviceRequiredStillReportsTheDriver) {
  LoadOptions options;
  options.require_device = false;
  const auto lib = CudaLibrary::Load(options);
  if (!lib.ok()) {
    EXPECT_THAT(std::string(lib.status().message()), HasSubstr("CUDA backend absent"));
    GTEST_SKIP() << lib.status();
  }
  int count = -1;
  const int rc = (*lib)->api().device_count(&count);
  if (rc != 0) {
    EXPECT_THAT(std::string((*lib)->api().last_error()), HasSubstr("cudaGetDeviceCount"));
  } else {
    EXPECT_GE(count, 0);
  }
  EXPECT_THAT(std::string((*lib)->api().build_info), HasSubstr("CUDA"));
}

// ABI 1.3's F16 K/V entry points are in the table of the library built from this tree, and their
// argument checks (which run before any CUDA call, so without a GPU too) reject an unknown kv_type.
TEST(CudaLoaderTest, F16KvEntryPointsCheckTheirArguments) {
  LoadOptions options;
  options.require_device = false;
  const auto lib = CudaLibrary::Load(options);
  if (!lib.ok()) GTEST_SKIP() << lib.status();
  ASSERT_TRUE((*lib)->HasAbi12());
  ASSERT_TRUE((*lib)->HasF16Kv());
  const MoedCudaApiV1& api = (*lib)->api();
  EXPECT_EQ(api.attention_prep_kv(nullptr, MOED_CUDA_KV_F16, nullptr), MOED_CUDA_EINVAL);
  EXPECT_EQ(api.attention_kv(nullptr, MOED_CUDA_KV_F16, nullptr), MOED_CUDA_EINVAL);
  MoedCudaAttentionPrepArgs prep{};
  EXPECT_EQ(api.attention_prep_kv(&prep, 7, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("unknown kv_type 7"));
  MoedCudaAttentionArgs attn{};
  EXPECT_EQ(api.attention_kv(&attn, -1, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("unknown kv_type -1"));
  // Known types still check the shapes: all-zero arguments are rejected, nothing is launched.
  EXPECT_EQ(api.attention_kv(&attn, MOED_CUDA_KV_F16, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("bad sizes"));
}

TEST(CudaLoaderTest, MmaEntryPointsCheckTheirArguments) {
  LoadOptions options;
  options.require_device = false;
  const auto lib = CudaLibrary::Load(options);
  if (!lib.ok()) GTEST_SKIP() << lib.status();
  ASSERT_TRUE((*lib)->HasMma());
  const MoedCudaApiV1& api = (*lib)->api();
  EXPECT_EQ(api.moe_grouped(nullptr, nullptr), MOED_CUDA_EINVAL);
  EXPECT_EQ(api.gemm_mma(nullptr, nullptr), MOED_CUDA_EINVAL);
  uint64_t bytes = 0;
  ASSERT_EQ(api.moe_grouped_scratch_bytes(2048, 8, 2048, 512, 256, &bytes), 0) << api.last_error();
  // At least the F16 activations and the float32 down rows of 16,384 (token, slot) pairs.
  EXPECT_GE(bytes, uint64_t{16384} * (2 * 512 + 4 * 2048));
  EXPECT_EQ(api.moe_grouped_scratch_bytes(16, 8, 2048, 512, 4096, &bytes), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("n_expert 1..1024"));
  // Shapes are checked before anything is launched: a too-small scratch is named.
  MoedCudaMoeGroupedArgs m{};
  m.gate_up_type = m.down_type = 12;  // Q4_K
  m.n_embd = 256, m.n_ff = 256, m.n_expert = 4, m.n_tokens = 1, m.top_k = 2;
  int32_t ids[2] = {0, 1};
  float w[2] = {0.5f, 0.5f}, x[256] = {}, y[256] = {};
  alignas(256) static uint8_t scratch[256];
  m.ids = ids, m.weights = w, m.x = x, m.y = y, m.gate_w = m.up_w = m.down_w = scratch;
  m.scratch = scratch, m.scratch_bytes = sizeof(scratch);
  EXPECT_EQ(api.moe_grouped(&m, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("needed"));
  // More pairs than a launch's 65535 tiles hold: refused by size, before anything runs (the scratch
  // is never touched, so its size can be claimed).
  m.n_tokens = 65535, m.top_k = 32;
  m.scratch_bytes = int64_t{1} << 40;
  EXPECT_EQ(api.moe_grouped(&m, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("more than 65535 tiles"));
  MoedCudaGemvArgs g{};
  g.ggml_type = 12, g.w = scratch, g.row_bytes = 144, g.n_in = 100, g.n_out = 4, g.x = x, g.y = y;
  g.n_tokens = 16, g.n_matrices = 1;
  EXPECT_EQ(api.gemm_mma(&g, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("whole 32-weight units"));
}

TEST(CudaLoaderTest, LogitsTopChecksItsArguments) {
  LoadOptions options;
  options.require_device = false;
  const auto lib = CudaLibrary::Load(options);
  if (!lib.ok()) GTEST_SKIP() << lib.status();
  ASSERT_TRUE((*lib)->HasLogitsTop());
  const MoedCudaApiV1& api = (*lib)->api();
  float logits[8] = {}, values[8], lse[1];
  int32_t ids[8];
  EXPECT_EQ(api.logits_top(nullptr, 1, 8, 1, ids, values, lse, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("null pointers"));
  for (int32_t top_n : {0, 9, 21}) {  // in [1, min(20, n_vocab)]
    EXPECT_EQ(api.logits_top(logits, 1, 8, top_n, ids, values, lse, nullptr), MOED_CUDA_EINVAL) << top_n;
    EXPECT_THAT(std::string(api.last_error()), HasSubstr("top_n"));
  }
  EXPECT_EQ(api.logits_top(logits, 0, 8, 1, ids, values, lse, nullptr), 0);  // nothing to do, nothing launched
}

TEST(CudaLoaderTest, LogitsDrawChecksItsArguments) {
  LoadOptions options;
  options.require_device = false;
  const auto lib = CudaLibrary::Load(options);
  if (!lib.ok()) GTEST_SKIP() << lib.status();
  ASSERT_TRUE((*lib)->HasLogitsDraw());
  const MoedCudaApiV1& api = (*lib)->api();
  float logits[8] = {}, values[1];
  int32_t ids[1];
  MoedCudaRowDraw draw{};
  EXPECT_EQ(api.logits_draw(logits, 1, 8, nullptr, ids, values, nullptr), MOED_CUDA_EINVAL);
  EXPECT_THAT(std::string(api.last_error()), HasSubstr("null pointers"));
  for (int64_t n_vocab : {int64_t{0}, (int64_t{1} << 23) + 1}) {
    EXPECT_EQ(api.logits_draw(logits, 1, n_vocab, &draw, ids, values, nullptr), MOED_CUDA_EINVAL) << n_vocab;
    EXPECT_THAT(std::string(api.last_error()), HasSubstr("n_vocab"));
  }
  EXPECT_EQ(api.logits_draw(logits, 0, 8, &draw, ids, values, nullptr), 0);  // nothing to do, nothing launched
}

}  // namespace
}  // namespace moed::cuda
