// Times the CUDA GEMV (libmoed_cuda.so, loaded like the engine will) on the Qwen3.5-35B-A3B
// decode shapes, per weight type, and prints a markdown table of achieved weight bandwidth
// against the HBM floor. A plain program (not Google Benchmark) because the times are CUDA event
// times of back-to-back launches on the GPU, not host loop times.
//
//   cuda_gemv_bench [--types Q4_K,Q8_0,...] [--hbm-tbs 4.8]
//
// Shapes (hidden 2048, expert FFN 512, 256 experts, vocab 248320; docs qwen35moe.md):
//   expert gate/up  2048 -> 512, one launch per matrix, cycling through 256 experts (a whole
//                   ffn_up_exps tensor, larger than L2, so every launch reads from HBM);
//   8 experts       the same, the 8 selected experts of a token in one strided launch;
//   expert down     512 -> 2048, one launch per matrix;
//   LM head         2048 -> 248320.
// Each at 1 and 8 tokens. Weight bytes are filled with 0x3c (a finite value in every format).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/ggml_type.h"

namespace {

struct Case {
  const char* name;
  int64_t n_in;
  int64_t n_out;
  int64_t n_stored;  // matrices in the tensor cycled through
  int n_matrices;    // matrices per launch
};

constexpr Case kCases[] = {
    {"expert gate/up 2048x512", 2048, 512, 256, 1},
    {"8 experts 2048x512, 1 launch", 2048, 512, 256, 8},
    {"expert down 512x2048", 512, 2048, 256, 1},
    {"LM head 2048x248320", 2048, 248320, 1, 1},
};

#define CHECK_OK(expr)                                                       \
  do {                                                                       \
    const absl::Status st_ = (expr);                                         \
    if (!st_.ok()) {                                                         \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, st_.ToString().c_str()); \
      std::exit(1);                                                          \
    }                                                                        \
  } while (0)

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> type_names = {"Q4_K", "Q8_0", "Q5_K", "Q6_K", "Q3_K", "IQ4_XS",
                                         "IQ3_XXS", "IQ3_A770", "MXFP4", "NVFP4", "BF16", "F16"};
  double hbm_tbs = 4.8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--types") {
      type_names = absl::StrSplit(argv[i + 1], ',');
    } else if (flag == "--hbm-tbs") {
      hbm_tbs = std::atof(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--types Q4_K,Q8_0,...] [--hbm-tbs 4.8]\n", argv[0]);
      return 2;
    }
  }
  auto lib_or = moed::cuda::CudaLibrary::Load({});
  if (!lib_or.ok()) {
    std::fprintf(stderr, "%s\n", lib_or.status().ToString().c_str());
    return 1;
  }
  const moed::cuda::CudaLibrary& lib = **lib_or;
  const MoedCudaApiV1& api = lib.api();
  MoedCudaDeviceInfo info{};
  CHECK_OK(lib.Check(api.device_info(0, &info), "device_info"));
  std::printf("device: %s (sm_%d%d, %d SMs, L2 %.0f MiB), %s; floor at %.2f TB/s\n\n", info.name,
              info.compute_major, info.compute_minor, info.multiprocessor_count,
              static_cast<double>(info.l2_cache_bytes) / (1 << 20), api.build_info, hbm_tbs);
  std::printf("| shape | type | tokens | weight MB/launch | floor us | measured us | GB/s | %% of floor |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");

  void* start = nullptr;
  void* stop = nullptr;
  CHECK_OK(lib.Check(api.event_create(&start), "event"));
  CHECK_OK(lib.Check(api.event_create(&stop), "event"));
  void* dx = nullptr;
  void* dy = nullptr;
  const size_t x_bytes = 8 * 2048 * 8 * sizeof(float);
  const size_t y_bytes = static_cast<size_t>(8) * 248320 * 8 * sizeof(float);
  CHECK_OK(lib.Check(api.malloc_device(&dx, x_bytes), "malloc x"));
  CHECK_OK(lib.Check(api.malloc_device(&dy, y_bytes), "malloc y"));
  CHECK_OK(lib.Check(api.memset_device(dx, 0, x_bytes), "memset x"));

  for (const std::string& name : type_names) {
    auto type = moed::GgmlTypeFromName(name);
    if (!type.ok() || !api.gemv_supports_type(static_cast<uint32_t>(*type))) {
      std::fprintf(stderr, "skipping %s: not supported\n", name.c_str());
      continue;
    }
    for (const Case& c : kCases) {
      const uint64_t row_bytes = static_cast<uint64_t>(moed::RowBytes(*type, c.n_in));
      const uint64_t matrix_bytes = row_bytes * static_cast<uint64_t>(c.n_out);
      const uint64_t tensor_bytes = matrix_bytes * static_cast<uint64_t>(c.n_stored);
      void* dw = nullptr;
      CHECK_OK(lib.Check(api.malloc_device(&dw, tensor_bytes), "malloc w"));
      CHECK_OK(lib.Check(api.memset_device(dw, 0x3c, tensor_bytes), "memset w"));
      for (int tokens : {1, 8}) {
        MoedCudaGemvArgs args{};
        args.ggml_type = static_cast<uint32_t>(*type);
        args.row_bytes = row_bytes;
        args.n_in = c.n_in;
        args.n_out = c.n_out;
        args.x = static_cast<const float*>(dx);
        args.y = static_cast<float*>(dy);
        args.n_tokens = tokens;
        args.n_matrices = c.n_matrices;
        args.w_matrix_stride_bytes = matrix_bytes;
        args.x_matrix_stride = 0;
        args.y_matrix_stride = c.n_out * tokens;
        const int launches = c.n_stored > 1 ? 512 : 50;
        const int groups = static_cast<int>(c.n_stored / c.n_matrices);
        auto run = [&](int n) {
          for (int i = 0; i < n; ++i) {
            args.w = static_cast<const uint8_t*>(dw) + (i % groups) * c.n_matrices * matrix_bytes;
            CHECK_OK(lib.Check(api.gemv(&args, nullptr), "gemv"));
          }
        };
        run(std::min(launches, 32));  // warm-up
        CHECK_OK(lib.Check(api.event_record(start, nullptr), "record"));
        run(launches);
        CHECK_OK(lib.Check(api.event_record(stop, nullptr), "record"));
        CHECK_OK(lib.Check(api.synchronize(), "synchronize"));
        float ms = 0;
        CHECK_OK(lib.Check(api.event_elapsed_ms(start, stop, &ms), "elapsed"));
        const double us = 1e3 * ms / launches;
        const double bytes = static_cast<double>(matrix_bytes) * c.n_matrices;
        const double floor_us = bytes / (hbm_tbs * 1e12) * 1e6;
        std::printf("| %s | %s | %d | %.2f | %.2f | %.2f | %.0f | %.0f%% |\n", c.name, name.c_str(),
                    tokens, bytes / 1e6, floor_us, us, bytes / (us * 1e-6) / 1e9,
                    100.0 * floor_us / us);
      }
      CHECK_OK(lib.Check(api.free_device(dw), "free w"));
    }
  }
  std::fflush(stdout);
  return 0;
}
