// Tests of MatMul against its double-precision twin MatMulReference on every type that has a CPU
// dequantizer, over many shapes and thread counts; plus ExpertSlice, GetRow, the in-place and
// strided F32 paths, and argument errors. Also exercises the ThreadPool the products run on.
#include "kernels/cpu/matmul.h"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/cpu/thread_pool.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"
#include "kernels/quants/quantize.h"

namespace moed::cpu {
namespace {

using ::testing::HasSubstr;

// Random weights of `type`, n_out rows of n_in, whose decoded values are all finite. Types with a
// quantizer (and the float types) encode Gaussian values; the others get random block bytes, with
// a row redrawn when a random scale decodes to inf/NaN or something absurdly large.
std::vector<uint8_t> RandomWeights(GgmlType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  const auto row_bytes = static_cast<size_t>(RowBytes(type, n_in));
  std::vector<uint8_t> data(row_bytes * static_cast<size_t>(n_out));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(n_in));
  for (int64_t o = 0; o < n_out; ++o) {
    uint8_t* row = data.data() + static_cast<size_t>(o) * row_bytes;
    for (float& v : values) v = normal(rng);
    if (type == GgmlType::kF32) {
      std::memcpy(row, values.data(), row_bytes);
    } else if (type == GgmlType::kF16 || type == GgmlType::kBf16) {
      for (int64_t i = 0; i < n_in; ++i) {
        const uint16_t h = type == GgmlType::kF16 ? Fp32ToFp16(values[i]) : Fp32ToBf16(values[i]);
        std::memcpy(row + 2 * i, &h, 2);
      }
    } else if (HasQuantizer(type)) {
      EXPECT_TRUE(QuantizeRow(type, values.data(), row, n_in).ok());
    } else {
      for (int attempt = 0;; ++attempt) {
        EXPECT_LT(attempt, 10000) << "no finite random row for " << GgmlTypeName(type);
        for (size_t b = 0; b < row_bytes; ++b) row[b] = static_cast<uint8_t>(rng());
        EXPECT_TRUE(DequantizeRow(type, row, values.data(), n_in).ok());
        bool ok = true;
        for (float v : values) ok = ok && std::isfinite(v) && std::fabs(v) < 1e12f;
        if (ok || attempt >= 10000) break;
      }
    }
  }
  return data;
}

std::vector<float> RandomActivations(int64_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = uniform(rng);
  return x;
}

double Norm(const float* v, int64_t n) {
  double s = 0.0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(v[i]) * v[i];
  return std::sqrt(s);
}

// Asserts y matches the reference within 1e-5 of |w_o| * |x_t| for every output, where w_o is the
// decoded row: the scale of a float32 dot product's rounding error.
void ExpectClose(const WeightMatrix& w, const std::vector<float>& x, int64_t n_tokens, const std::vector<float>& y,
                 const std::vector<float>& ref, const std::string& label) {
  std::vector<float> row(static_cast<size_t>(w.n_in));
  for (int64_t o = 0; o < w.n_out; ++o) {
    ASSERT_TRUE(GetRow(w, o, row.data()).ok());
    const double row_norm = Norm(row.data(), w.n_in);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const double bound = 1e-5 * row_norm * Norm(x.data() + t * w.n_in, w.n_in) + 1e-30;
      const size_t k = static_cast<size_t>(t * w.n_out + o);
      ASSERT_NEAR(y[k], ref[k], bound) << label << " row " << o << " token " << t;
    }
  }
}

TEST(MatMulTest, EveryDequantizableTypeMatchesReference) {
  ThreadPool pool1(1);
  ThreadPool pool3(3);
  std::mt19937 rng(42);
  int types_tested = 0;
  for (const GgmlTypeTraits& t : AllGgmlTypes()) {
    if (!t.can_dequantize) continue;
    ++types_tested;
    const int64_t b = t.block_size;
    std::vector<int64_t> n_ins = b == 1 ? std::vector<int64_t>{1, 7, 33, 100} : std::vector<int64_t>{b, 3 * b};
    if (b < 64) n_ins.push_back(8 * b);
    for (const int64_t n_in : n_ins) {
      for (const int64_t n_out : {1, 3, 4, 5, 17, 67}) {
        const std::vector<uint8_t> data = RandomWeights(t.type, n_in, n_out, rng);
        const WeightMatrix w{t.type, data.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(t.type, n_in))};
        for (const int64_t n_tokens : {1, 2, 9}) {
          const std::string label = std::string(t.name) + " n_in=" + std::to_string(n_in) +
                                    " n_out=" + std::to_string(n_out) + " n_tokens=" + std::to_string(n_tokens);
          const std::vector<float> x = RandomActivations(n_in * n_tokens, rng);
          const size_t n_y = static_cast<size_t>(n_out * n_tokens);
          std::vector<float> ref(n_y), y1(n_y, -1.0f), y3(n_y, -2.0f), y0(n_y, -3.0f);
          ASSERT_TRUE(MatMulReference(w, x.data(), n_tokens, ref.data()).ok()) << label;
          ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y1.data(), &pool1).ok()) << label;
          ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y3.data(), &pool3).ok()) << label;
          ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y0.data(), nullptr).ok()) << label;
          ExpectClose(w, x, n_tokens, y1, ref, label);
          // The split over threads never changes the arithmetic: results are bit-identical.
          ASSERT_EQ(0, std::memcmp(y1.data(), y3.data(), n_y * sizeof(float))) << label;
          ASSERT_EQ(0, std::memcmp(y1.data(), y0.data(), n_y * sizeof(float))) << label;
        }
      }
    }
  }
  EXPECT_GE(types_tested, 25);  // F32 .. NVFP4 and IQ3_A770
}

TEST(MatMulTest, LargeShapeSplitsAcrossThreads) {
  ThreadPool pool(3);
  std::mt19937 rng(7);
  // Rows longer than one decode chunk (1024 columns), with a partial last chunk.
  for (const auto& [type, n_in] : std::vector<std::pair<GgmlType, int64_t>>{
           {GgmlType::kQ4_K, 2304}, {GgmlType::kQ8_0, 1056}, {GgmlType::kF32, 1037}, {GgmlType::kF16, 3001}}) {
    const int64_t n_out = 301, n_tokens = 5;
    const std::vector<uint8_t> data = RandomWeights(type, n_in, n_out, rng);
    const WeightMatrix w{type, data.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
    const std::vector<float> x = RandomActivations(n_in * n_tokens, rng);
    std::vector<float> ref(n_out * n_tokens), y(n_out * n_tokens), y1(n_out * n_tokens);
    ASSERT_TRUE(MatMulReference(w, x.data(), n_tokens, ref.data()).ok());
    ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y.data(), &pool).ok());
    ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y1.data(), nullptr).ok());
    ExpectClose(w, x, n_tokens, y, ref, std::string(GgmlTypeName(type)));
    EXPECT_EQ(y, y1);
  }
}

// A token's result is the same bits whether it is multiplied alone or inside a batch (the
// kernels for 1 and 2 tokens share one summation order), so prefill and decode agree exactly.
TEST(MatMulTest, ResultDoesNotDependOnBatchSize) {
  ThreadPool pool(2);
  std::mt19937 rng(9);
  for (const GgmlType type : {GgmlType::kQ6_K, GgmlType::kF32, GgmlType::kIq4Xs}) {
    const int64_t n_in = type == GgmlType::kF32 ? 1043 : 1536, n_out = 23, n_tokens = 7;
    const std::vector<uint8_t> data = RandomWeights(type, n_in, n_out, rng);
    const WeightMatrix w{type, data.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
    const std::vector<float> x = RandomActivations(n_in * n_tokens, rng);
    std::vector<float> batch(n_out * n_tokens);
    ASSERT_TRUE(MatMul(w, x.data(), n_tokens, batch.data(), &pool).ok());
    for (int64_t t = 0; t < n_tokens; ++t) {
      std::vector<float> single(n_out);
      ASSERT_TRUE(MatMul(w, x.data() + t * n_in, 1, single.data(), &pool).ok());
      EXPECT_EQ(0, std::memcmp(single.data(), batch.data() + t * n_out, n_out * sizeof(float)))
          << GgmlTypeName(type) << " token " << t;
    }
  }
}

TEST(MatMulTest, F32MisalignedAndStridedRows) {
  std::mt19937 rng(3);
  const int64_t n_in = 37, n_out = 9, n_tokens = 3;
  const std::vector<uint8_t> dense = RandomWeights(GgmlType::kF32, n_in, n_out, rng);
  const std::vector<float> x = RandomActivations(n_in * n_tokens, rng);
  std::vector<float> ref(n_out * n_tokens), y(n_out * n_tokens);
  const WeightMatrix wd{GgmlType::kF32, dense.data(), n_in, n_out, static_cast<uint64_t>(n_in * 4)};
  ASSERT_TRUE(MatMulReference(wd, x.data(), n_tokens, ref.data()).ok());
  ThreadPool pool(2);

  // Data one byte off float alignment: decoded through a copy instead of read in place.
  std::vector<uint8_t> shifted(dense.size() + 1);
  std::memcpy(shifted.data() + 1, dense.data(), dense.size());
  const WeightMatrix ws{GgmlType::kF32, shifted.data() + 1, n_in, n_out, static_cast<uint64_t>(n_in * 4)};
  ASSERT_TRUE(MatMul(ws, x.data(), n_tokens, y.data(), &pool).ok());
  ExpectClose(wd, x, n_tokens, y, ref, "misaligned");

  // Rows padded to a longer stride (row_bytes > RowBytes), for F32 and a block type.
  const uint64_t stride = static_cast<uint64_t>(n_in * 4 + 12);
  std::vector<uint8_t> padded(stride * n_out, 0xFF);
  for (int64_t o = 0; o < n_out; ++o) std::memcpy(padded.data() + o * stride, dense.data() + o * n_in * 4, n_in * 4);
  const WeightMatrix wp{GgmlType::kF32, padded.data(), n_in, n_out, stride};
  ASSERT_TRUE(MatMul(wp, x.data(), n_tokens, y.data(), &pool).ok());
  ExpectClose(wd, x, n_tokens, y, ref, "padded f32");

  const int64_t q_in = 64;
  const std::vector<uint8_t> q = RandomWeights(GgmlType::kQ8_0, q_in, n_out, rng);
  const uint64_t q_row = static_cast<uint64_t>(RowBytes(GgmlType::kQ8_0, q_in));
  std::vector<uint8_t> qpad((q_row + 5) * n_out, 0xFF);
  for (int64_t o = 0; o < n_out; ++o) std::memcpy(qpad.data() + o * (q_row + 5), q.data() + o * q_row, q_row);
  const WeightMatrix wq{GgmlType::kQ8_0, q.data(), q_in, n_out, q_row};
  const WeightMatrix wqp{GgmlType::kQ8_0, qpad.data(), q_in, n_out, q_row + 5};
  const std::vector<float> xq = RandomActivations(q_in * n_tokens, rng);
  std::vector<float> qref(n_out * n_tokens), qy(n_out * n_tokens);
  ASSERT_TRUE(MatMulReference(wq, xq.data(), n_tokens, qref.data()).ok());
  ASSERT_TRUE(MatMul(wqp, xq.data(), n_tokens, qy.data(), &pool).ok());
  ExpectClose(wq, xq, n_tokens, qy, qref, "padded q8_0");
}

TEST(MatMulTest, ExpertSliceSelectsTheExpertMatrix) {
  std::mt19937 rng(11);
  const GgmlType type = GgmlType::kQ4_K;
  const int64_t n_in = 512, n_out = 6, n_expert = 4, n_tokens = 2;
  const std::vector<uint8_t> all = RandomWeights(type, n_in, n_out * n_expert, rng);
  const auto row_bytes = static_cast<size_t>(RowBytes(type, n_in));
  const std::vector<float> x = RandomActivations(n_in * n_tokens, rng);
  ThreadPool pool(2);
  for (int64_t e = 0; e < n_expert; ++e) {
    const WeightMatrix w = ExpertSlice(type, all.data(), n_in, n_out, e);
    EXPECT_EQ(w.data, all.data() + e * n_out * row_bytes);
    EXPECT_EQ(w.row_bytes, row_bytes);
    EXPECT_EQ(w.n_in, n_in);
    EXPECT_EQ(w.n_out, n_out);
    // The same bytes copied out on their own give the same product.
    std::vector<uint8_t> own(all.begin() + e * n_out * row_bytes, all.begin() + (e + 1) * n_out * row_bytes);
    const WeightMatrix wo{type, own.data(), n_in, n_out, row_bytes};
    std::vector<float> y(n_out * n_tokens), ref(n_out * n_tokens);
    ASSERT_TRUE(MatMul(w, x.data(), n_tokens, y.data(), &pool).ok());
    ASSERT_TRUE(MatMulReference(wo, x.data(), n_tokens, ref.data()).ok());
    ExpectClose(wo, x, n_tokens, y, ref, "expert " + std::to_string(e));
  }
  // An invalid slice description is rejected by MatMul instead of read.
  const WeightMatrix bad = ExpertSlice(type, all.data(), 100, n_out, 0);
  std::vector<float> y(n_out);
  EXPECT_FALSE(MatMul(bad, x.data(), 1, y.data(), &pool).ok());
}

TEST(MatMulTest, GetRowDecodesOneRow) {
  std::mt19937 rng(5);
  const int64_t n_in = 64, n_out = 5;
  const std::vector<uint8_t> data = RandomWeights(GgmlType::kQ8_0, n_in, n_out, rng);
  const uint64_t row_bytes = static_cast<uint64_t>(RowBytes(GgmlType::kQ8_0, n_in));
  const WeightMatrix w{GgmlType::kQ8_0, data.data(), n_in, n_out, row_bytes};
  std::vector<float> row(n_in), expect(n_in);
  ASSERT_TRUE(GetRow(w, 3, row.data()).ok());
  ASSERT_TRUE(DequantizeRow(GgmlType::kQ8_0, data.data() + 3 * row_bytes, expect.data(), n_in).ok());
  EXPECT_EQ(row, expect);
  EXPECT_THAT(GetRow(w, 5, row.data()).message(), HasSubstr("row 5"));
  EXPECT_THAT(GetRow(w, -1, row.data()).message(), HasSubstr("row -1"));
  EXPECT_FALSE(GetRow(w, 0, nullptr).ok());
}

TEST(MatMulTest, RejectsBadArguments) {
  std::vector<uint8_t> data(4096, 0);
  std::vector<float> x(1024, 1.0f), y(1024, 0.0f);
  ThreadPool pool(2);
  auto mm = [&](const WeightMatrix& w, int64_t n_tokens = 1) {
    return MatMul(w, x.data(), n_tokens, y.data(), &pool);
  };
  WeightMatrix w{GgmlType::kQ8_0, data.data(), 64, 4, 68};
  ASSERT_TRUE(mm(w).ok());
  ASSERT_TRUE(MatMulReference(w, x.data(), 1, y.data()).ok());

  WeightMatrix no_kernel = w;
  no_kernel.type = GgmlType::kQ8_K;
  no_kernel.n_in = 256;
  no_kernel.row_bytes = 292;
  EXPECT_THAT(mm(no_kernel).message(), HasSubstr("Q8_K"));
  EXPECT_THAT(MatMulReference(no_kernel, x.data(), 1, y.data()).message(), HasSubstr("Q8_K"));
  WeightMatrix unknown = w;
  unknown.type = static_cast<GgmlType>(5);
  EXPECT_THAT(mm(unknown).message(), HasSubstr("unknown ggml type"));
  WeightMatrix partial = w;
  partial.n_in = 48;
  EXPECT_THAT(mm(partial).message(), HasSubstr("block size"));
  WeightMatrix short_rows = w;
  short_rows.row_bytes = 67;
  EXPECT_THAT(mm(short_rows).message(), HasSubstr("row_bytes"));
  WeightMatrix negative = w;
  negative.n_out = -1;
  EXPECT_THAT(mm(negative).message(), HasSubstr("negative"));
  WeightMatrix null_data = w;
  null_data.data = nullptr;
  EXPECT_THAT(mm(null_data).message(), HasSubstr("null weight"));
  EXPECT_THAT(mm(w, int64_t{1} << 40).message(), HasSubstr("too large"));
  WeightMatrix huge = w;
  huge.n_in = int64_t{1} << 50;
  EXPECT_THAT(mm(huge).message(), HasSubstr("n_in"));
  WeightMatrix overflow = w;
  overflow.n_out = int64_t{1} << 60;
  EXPECT_THAT(mm(overflow).message(), HasSubstr("overflows"));
  EXPECT_THAT(mm(w, -1).message(), HasSubstr("n_tokens"));
  EXPECT_THAT(MatMul(w, nullptr, 1, y.data(), &pool).message(), HasSubstr("null"));
  EXPECT_THAT(MatMul(w, x.data(), 1, nullptr, &pool).message(), HasSubstr("null"));
  EXPECT_THAT(MatMul(w, x.data(), 1, x.data() + 10, &pool).message(), HasSubstr("overlaps"));
  // Empty products are fine and write nothing / zeros.
  WeightMatrix empty_in = w;
  empty_in.n_in = 0;
  empty_in.row_bytes = 0;
  y.assign(y.size(), 5.0f);
  ASSERT_TRUE(mm(empty_in, 2).ok());
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[7], 0.0f);
  EXPECT_EQ(y[8], 5.0f);
  EXPECT_TRUE(mm(w, 0).ok());
}

TEST(ThreadPoolTest, CoversEveryIndexOnceWithChunksOfAtLeastGrain) {
  for (const int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (const int64_t n : {0, 1, 5, 64, 1000, 12345}) {
      for (const int64_t grain : {1, 7, 100}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        std::atomic<int64_t> short_chunks{0};
        pool.ParallelFor(n, grain, [&](int64_t begin, int64_t end) {
          if (end - begin < grain && end != n) short_chunks.fetch_add(1);
          for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << n << " " << i;
        EXPECT_EQ(short_chunks.load(), 0);
      }
    }
  }
}

TEST(ThreadPoolTest, ManyBackToBackCallsAndNesting) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  for (int call = 0; call < 2000; ++call) {
    pool.ParallelFor(16, 1, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
  }
  EXPECT_EQ(total.load(), 2000 * 16);
  // A chunk that calls ParallelFor again runs the inner loop inline rather than deadlocking.
  std::atomic<int64_t> inner{0};
  pool.ParallelFor(8, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pool.ParallelFor(10, 1, [&](int64_t b, int64_t e) { inner.fetch_add(e - b); });
    }
  });
  EXPECT_EQ(inner.load(), 80);
}

TEST(ThreadPoolTest, UsesMoreThanOneThread) {
  ThreadPool pool(2);
  // Each chunk waits until two distinct threads have arrived, which only a working pool allows;
  // the bounded wait keeps a broken pool from hanging the test.
  std::atomic<int> arrived{0};
  std::atomic<bool> met{false};
  pool.ParallelFor(2, 1, [&](int64_t, int64_t) {
    arrived.fetch_add(1);
    for (int i = 0; i < 2000000 && arrived.load() < 2; ++i) std::this_thread::yield();
    if (arrived.load() >= 2) met.store(true);
  });
  EXPECT_TRUE(met.load());
}

}  // namespace
}  // namespace moed::cpu
