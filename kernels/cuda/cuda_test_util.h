// Shared by the CUDA kernel tests (cuda_gemv_test.cc, cuda_ops_test.cc, cuda_mma_test.cc): the
// library loaded once per process, a skip macro for machines without a GPU, device buffers, random
// weights and the abs-sum error scale.
#ifndef MOED_KERNELS_CUDA_CUDA_TEST_UTIL_H_
#define MOED_KERNELS_CUDA_CUDA_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "kernels/base/half.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/ggml_type.h"
#include "kernels/quants/quantize.h"

namespace moed::cuda {

// The library, loaded once per process; nullptr (and the reason) without a usable GPU.
struct Backend {
  std::unique_ptr<CudaLibrary> lib;
  absl::Status status;
};
inline Backend& GetBackend() {
  static Backend* backend = [] {
    auto* b = new Backend;
    auto lib = CudaLibrary::Load(LoadOptions{});
    if (lib.ok()) {
      b->lib = std::move(*lib);
    } else {
      b->status = lib.status();
    }
    return b;
  }();
  return *backend;
}

#define MOED_REQUIRE_GPU()                                      \
  do {                                                          \
    if (GetBackend().lib == nullptr) GTEST_SKIP() << GetBackend().status; \
  } while (0)

// A device allocation freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    const CudaLibrary& lib = *GetBackend().lib;
    EXPECT_TRUE(lib.Check(lib.api().malloc_device(&ptr_, bytes == 0 ? 1 : bytes), "malloc").ok());
  }
  ~DeviceBuffer() {
    if (ptr_ != nullptr) GetBackend().lib->api().free_device(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void Upload(const void* src) {
    const CudaLibrary& lib = *GetBackend().lib;
    EXPECT_TRUE(lib.Check(lib.api().copy_to_device(ptr_, src, bytes_), "upload").ok());
  }
  void Download(void* dst) const {
    const CudaLibrary& lib = *GetBackend().lib;
    EXPECT_TRUE(lib.Check(lib.api().copy_to_host(dst, ptr_, bytes_), "download").ok());
  }
  template <class T>
  T* get() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

// n Gaussian values of standard deviation sigma.
inline std::vector<float> Normal(size_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> normal(0.0f, sigma);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

// Random weights of `type` whose decoded values are finite: the repo's quantizers on Gaussian
// values where one exists, otherwise random block bytes (a row redrawn if it decodes to
// inf/NaN/huge), which covers every code and scale bit pattern.
inline std::vector<uint8_t> RandomWeights(GgmlType type, int64_t n_in, int64_t n_out, std::mt19937& rng) {
  const auto row_bytes = static_cast<size_t>(RowBytes(type, n_in));
  std::vector<uint8_t> data(row_bytes * static_cast<size_t>(n_out));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(static_cast<size_t>(n_in));
  for (int64_t o = 0; o < n_out; ++o) {
    uint8_t* row = data.data() + static_cast<size_t>(o) * row_bytes;
    for (float& v : values) v = normal(rng);
    if (type == GgmlType::kF32) {
      std::memcpy(row, values.data(), values.size() * sizeof(float));
    } else if (type == GgmlType::kF16 || type == GgmlType::kBf16) {
      for (int64_t i = 0; i < n_in; ++i) {
        const uint16_t h = type == GgmlType::kF16 ? Fp32ToFp16(values[i]) : Fp32ToBf16(values[i]);
        std::memcpy(row + 2 * i, &h, 2);
      }
    } else if (HasQuantizer(type)) {
      EXPECT_TRUE(QuantizeRow(type, values.data(), row, n_in).ok());
    } else {
      for (int attempt = 0; attempt < 10000; ++attempt) {
        for (size_t b = 0; b < row_bytes; ++b) row[b] = static_cast<uint8_t>(rng());
        EXPECT_TRUE(DequantizeRow(type, row, values.data(), n_in).ok());
        bool ok = true;
        for (float v : values) ok = ok && std::isfinite(v) && std::fabs(v) < 1e12f;
        if (ok) break;
      }
    }
  }
  return data;
}

// abs_sum[t][o] = sum_i |W[o][i] x[t][i]| of a weight matrix (dequantized) and n_tokens inputs:
// the scale a float32 (or F16) dot product's rounding error is measured against.
inline std::vector<double> AbsSums(const cpu::WeightMatrix& m, const float* x, int n_tokens) {
  std::vector<float> row(static_cast<size_t>(m.n_in));
  std::vector<double> out(static_cast<size_t>(n_tokens * m.n_out));
  for (int64_t o = 0; o < m.n_out; ++o) {
    EXPECT_TRUE(DequantizeRow(m.type, m.data + o * m.row_bytes, row.data(), m.n_in).ok());
    for (int t = 0; t < n_tokens; ++t) {
      double s = 0;
      for (int64_t i = 0; i < m.n_in; ++i) s += std::fabs(static_cast<double>(row[i]) * x[t * m.n_in + i]);
      out[static_cast<size_t>(t * m.n_out + o)] = s;
    }
  }
  return out;
}

}  // namespace moed::cuda

#endif  // MOED_KERNELS_CUDA_CUDA_TEST_UTIL_H_
