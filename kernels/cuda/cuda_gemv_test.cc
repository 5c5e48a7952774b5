// The CUDA GEMV and RMSNorm against their CPU twins (MatMulReference, RmsNorm), through the
// dlopen'ed library exactly as the engine will use it. Every supported type, several shapes
// (n_in 256..4096, n_out 1..3000 including non-multiples of the 8-row CTA tile, 1/2/5/8 tokens).
// Without a GPU (or without the driver) every case skips with the loader's message.
//
// Tolerance. The GPU decodes each weight to exactly the CPU dequantizer's float (quants.cuh), so
// the only difference is the float32 accumulation: each lane sums n_in/32 unit dot products of 32
// fused multiply-adds, then 5 shuffle additions. The standard bound on such a sum is
// |error| <= (n_in + 5) * 2^-24 * sum_i |w_i x_i| (each term passes through at most n_in + 5
// roundings), i.e. <= 2.5e-4 of the row's abs-sum at n_in = 4096, and the observed errors are
// orders of magnitude below that (random rounding errors grow like sqrt(n)). The test asserts
// |gpu - ref| <= 2.5e-4 * sum_i |w_i x_i| + 1e-30 and prints the largest observed ratio per type.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/norm.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/cuda_test_util.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"
#include "kernels/quants/quantize.h"

namespace moed::cuda {
namespace {

using ::testing::HasSubstr;

constexpr double kRelTolerance = 2.5e-4;

struct Shape {
  int64_t n_in;
  int64_t n_out;
  int n_tokens;
};

// Runs one GEMV on the GPU and checks it against MatMulReference; returns the largest
// |gpu - ref| / abs-sum seen.
double CheckGemv(GgmlType type, const Shape& s, std::mt19937& rng) {
  const CudaLibrary& lib = *GetBackend().lib;
  const std::vector<uint8_t> w = RandomWeights(type, s.n_in, s.n_out, rng);
  std::vector<float> x(static_cast<size_t>(s.n_in * s.n_tokens));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (float& v : x) v = normal(rng);

  cpu::WeightMatrix m{type, w.data(), s.n_in, s.n_out, static_cast<uint64_t>(RowBytes(type, s.n_in))};
  std::vector<float> ref(static_cast<size_t>(s.n_out * s.n_tokens));
  EXPECT_TRUE(cpu::MatMulReference(m, x.data(), s.n_tokens, ref.data()).ok());

  DeviceBuffer dw(w.size()), dx(x.size() * 4), dy(ref.size() * 4);
  dw.Upload(w.data());
  dx.Upload(x.data());
  MoedCudaGemvArgs args{};
  args.ggml_type = static_cast<uint32_t>(type);
  args.w = dw.get<void>();
  args.row_bytes = m.row_bytes;
  args.n_in = s.n_in;
  args.n_out = s.n_out;
  args.x = dx.get<float>();
  args.y = dy.get<float>();
  args.n_tokens = s.n_tokens;
  args.n_matrices = 1;
  EXPECT_TRUE(lib.Check(lib.api().gemv(&args, nullptr), "gemv").ok());
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
  std::vector<float> y(ref.size());
  dy.Download(y.data());

  // abs-sum scale of each (token, row) from the dequantized weights.
  std::vector<float> row(static_cast<size_t>(s.n_in));
  double worst = 0.0;
  int failures = 0;
  for (int64_t o = 0; o < s.n_out; ++o) {
    EXPECT_TRUE(DequantizeRow(type, w.data() + o * m.row_bytes, row.data(), s.n_in).ok());
    for (int t = 0; t < s.n_tokens; ++t) {
      double abs_sum = 0.0;
      for (int64_t i = 0; i < s.n_in; ++i) {
        abs_sum += std::fabs(static_cast<double>(row[i]) * x[t * s.n_in + i]);
      }
      const size_t k = static_cast<size_t>(t * s.n_out + o);
      const double err = std::fabs(static_cast<double>(y[k]) - ref[k]);
      const double ratio = abs_sum > 0 ? err / abs_sum : err;
      worst = std::max(worst, ratio);
      if (!(err <= kRelTolerance * abs_sum + 1e-30) && ++failures <= 5) {
        ADD_FAILURE() << GgmlTypeName(type) << " n_in=" << s.n_in << " n_out=" << s.n_out
                      << " tokens=" << s.n_tokens << ": y[" << t << "][" << o << "] = " << y[k]
                      << ", reference " << ref[k] << ", abs-sum " << abs_sum;
      }
    }
  }
  return worst;
}

class CudaGemvTypeTest : public ::testing::TestWithParam<GgmlType> {};

TEST_P(CudaGemvTypeTest, MatchesCpuReference) {
  MOED_REQUIRE_GPU();
  const GgmlType type = GetParam();
  const CudaLibrary& lib = *GetBackend().lib;
  ASSERT_EQ(lib.api().gemv_supports_type(static_cast<uint32_t>(type)), 1) << GgmlTypeName(type);
  const int64_t block = FindGgmlType(type)->block_size;
  std::vector<Shape> shapes = {
      {256, 1, 1},   {256, 7, 2},     {512, 333, 5},  {2048, 512, 1}, {2048, 512, 8},
      {1024, 3000, 8}, {4096, 65, 5}, {4096, 1001, 1}, {768, 17, 3},  {1536, 9, 4},
  };
  if (block < 256) shapes.push_back({7 * std::max<int64_t>(block, 32) + 256, 19, 6});
  if (block == 1) {  // plain floats: rows that are not a multiple of 32 take the generic kernel
    shapes.push_back({24, 13, 3});
    shapes.push_back({40, 96, 8});
    shapes.push_back({104, 7, 1});
  }
  std::mt19937 rng(1234 + static_cast<uint32_t>(type));
  double worst = 0.0;
  for (const Shape& s : shapes) worst = std::max(worst, CheckGemv(type, s, rng));
  std::printf("[ %-8s ] max |gpu - ref| / abs-sum = %.3g\n", std::string(GgmlTypeName(type)).c_str(),
              worst);
  RecordProperty("max_rel_error", std::to_string(worst));
}

INSTANTIATE_TEST_SUITE_P(AllTypes, CudaGemvTypeTest,
                         ::testing::Values(GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kQ5_K,
                                           GgmlType::kQ6_K, GgmlType::kQ3_K, GgmlType::kIq4Xs,
                                           GgmlType::kF32, GgmlType::kBf16, GgmlType::kF16, GgmlType::kIq3Xxs,
                                           GgmlType::kMxfp4, GgmlType::kNvfp4, GgmlType::kIq3A770),
                         [](const auto& info) { return std::string(GgmlTypeName(info.param)); });

// A strided batch of matrices (the selected experts of a token) in one launch, with per-matrix x
// and with one x broadcast to all.
TEST(CudaGemvTest, StridedBatchOfMatrices) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  for (GgmlType type : {GgmlType::kQ4_K, GgmlType::kQ8_0}) {
    for (bool broadcast : {false, true}) {
      const int64_t n_in = 512, n_out = 77, n_mat = 3;
      const int n_tokens = 2;
      std::mt19937 rng(7);
      const std::vector<uint8_t> w = RandomWeights(type, n_in, n_out * n_mat, rng);
      const uint64_t row_bytes = static_cast<uint64_t>(RowBytes(type, n_in));
      const int64_t x_stride = broadcast ? 0 : n_in * n_tokens;
      std::vector<float> x(static_cast<size_t>(n_in * n_tokens * (broadcast ? 1 : n_mat)));
      std::normal_distribution<float> normal(0.0f, 1.0f);
      for (float& v : x) v = normal(rng);
      DeviceBuffer dw(w.size()), dx(x.size() * 4), dy(static_cast<size_t>(n_out * n_tokens * n_mat) * 4);
      dw.Upload(w.data());
      dx.Upload(x.data());
      MoedCudaGemvArgs args{};
      args.ggml_type = static_cast<uint32_t>(type);
      args.w = dw.get<void>();
      args.row_bytes = row_bytes;
      args.n_in = n_in;
      args.n_out = n_out;
      args.x = dx.get<float>();
      args.y = dy.get<float>();
      args.n_tokens = n_tokens;
      args.n_matrices = static_cast<int32_t>(n_mat);
      args.w_matrix_stride_bytes = row_bytes * n_out;
      args.x_matrix_stride = x_stride;
      args.y_matrix_stride = n_out * n_tokens;
      ASSERT_TRUE(lib.Check(lib.api().gemv(&args, nullptr), "gemv").ok());
      std::vector<float> y(static_cast<size_t>(n_out * n_tokens * n_mat));
      dy.Download(y.data());
      for (int64_t e = 0; e < n_mat; ++e) {
        const cpu::WeightMatrix m = cpu::ExpertSlice(type, w.data(), n_in, n_out, e);
        std::vector<float> ref(static_cast<size_t>(n_out * n_tokens));
        ASSERT_TRUE(cpu::MatMulReference(m, x.data() + e * x_stride, n_tokens, ref.data()).ok());
        for (size_t k = 0; k < ref.size(); ++k) {
          EXPECT_NEAR(y[e * n_out * n_tokens + k], ref[k], 1e-3 * (1 + std::fabs(ref[k])))
              << GgmlTypeName(type) << " matrix " << e << " k " << k << " broadcast " << broadcast;
        }
      }
    }
  }
}

TEST(CudaGemvTest, RejectsBadArguments) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  DeviceBuffer dw(144 * 4 + 16), dx(4096), dy(4096);
  MoedCudaGemvArgs args{};
  args.ggml_type = static_cast<uint32_t>(GgmlType::kQ4_K);
  args.w = dw.get<void>();
  args.row_bytes = 144;
  args.n_in = 256;
  args.n_out = 4;
  args.x = dx.get<float>();
  args.y = dy.get<float>();
  args.n_tokens = 1;
  args.n_matrices = 1;
  EXPECT_TRUE(lib.Check(lib.api().gemv(&args, nullptr), "gemv").ok());

  MoedCudaGemvArgs bad = args;
  bad.ggml_type = static_cast<uint32_t>(GgmlType::kQ2_K);
  absl::Status st = lib.Check(lib.api().gemv(&bad, nullptr), "gemv");
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(st.message()), HasSubstr("not supported"));
  EXPECT_EQ(lib.api().gemv_supports_type(static_cast<uint32_t>(GgmlType::kQ2_K)), 0);

  bad = args;
  bad.n_tokens = MOED_CUDA_MAX_GEMV_TOKENS + 1;
  EXPECT_EQ(lib.Check(lib.api().gemv(&bad, nullptr), "gemv").code(),
            absl::StatusCode::kInvalidArgument);
  bad = args;
  bad.w = dw.get<uint8_t>() + 2;  // Q4_K rows are read 16 bytes at a time
  st = lib.Check(lib.api().gemv(&bad, nullptr), "gemv");
  EXPECT_THAT(std::string(st.message()), HasSubstr("aligned"));
  bad = args;
  bad.row_bytes = 140;
  EXPECT_EQ(lib.Check(lib.api().gemv(&bad, nullptr), "gemv").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
}

TEST(CudaRmsNormTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  for (int64_t n : {1, 128, 2048, 4097}) {
    const int64_t rows = 5;
    std::mt19937 rng(static_cast<uint32_t>(n));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    std::vector<float> x(static_cast<size_t>(n * rows)), w(static_cast<size_t>(n));
    for (float& v : x) v = normal(rng);
    for (float& v : w) v = normal(rng);
    DeviceBuffer dx(x.size() * 4), dw(w.size() * 4), dy(x.size() * 4);
    dx.Upload(x.data());
    dw.Upload(w.data());
    for (bool with_weight : {false, true}) {
      const float* wp = with_weight ? dw.get<float>() : nullptr;
      ASSERT_TRUE(lib.Check(lib.api().rms_norm(dx.get<float>(), wp, n, rows, 1e-6f, dy.get<float>(),
                                               nullptr),
                            "rms_norm")
                      .ok());
      std::vector<float> y(x.size()), ref(x.size());
      dy.Download(y.data());
      for (int64_t r = 0; r < rows; ++r) {
        cpu::RmsNorm(x.data() + r * n, with_weight ? w.data() : nullptr, n, 1e-6f, ref.data() + r * n);
      }
      for (size_t k = 0; k < y.size(); ++k) {
        EXPECT_NEAR(y[k], ref[k], 1e-5f * (1.0f + std::fabs(ref[k]))) << "n=" << n << " k=" << k;
      }
    }
    // In place.
    ASSERT_TRUE(lib.Check(lib.api().rms_norm(dx.get<float>(), nullptr, n, rows, 1e-6f, dx.get<float>(),
                                             nullptr),
                          "rms_norm in place")
                    .ok());
    std::vector<float> y(x.size()), ref(x.size());
    dx.Download(y.data());
    for (int64_t r = 0; r < rows; ++r) cpu::RmsNorm(x.data() + r * n, nullptr, n, 1e-6f, ref.data() + r * n);
    for (size_t k = 0; k < y.size(); ++k) EXPECT_NEAR(y[k], ref[k], 1e-5f * (1.0f + std::fabs(ref[k])));
  }
}

TEST(CudaDeviceTest, ReportsDevice) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  MoedCudaDeviceInfo info{};
  ASSERT_TRUE(lib.Check(lib.api().device_info(0, &info), "device_info").ok());
  std::printf("device 0: %s, sm_%d%d, %d SMs, %.1f GiB, %s\n", info.name, info.compute_major,
              info.compute_minor, info.multiprocessor_count,
              static_cast<double>(info.total_memory_bytes) / (1 << 30), lib.api().build_info);
  EXPECT_GT(info.total_memory_bytes, 0u);
}

}  // namespace
}  // namespace moed::cuda
