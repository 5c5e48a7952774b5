// Times CUDA kernels of libmoed_cuda.so (loaded like the engine does) on the Qwen3.5-35B-A3B
// shapes and prints markdown rows against the HBM floor (kernels/cuda/NOTES.md):
//   MoE           hidden 2048, expert FFN 512, top-8 of 256 experts (gate/up/down in --type,
//                 default Q4_K), moe_decode for 1..64 tokens and moe_grouped (ABI 1.4) for 1..2048;
//                 each iteration uses another precomputed set of random ids, and the three
//                 256-expert tensors (453 MB in Q4_K) exceed the 60 MiB L2, so the weights come
//                 from HBM;
//   dense         the Q8_0 DeltaNet input (2048 -> 8192) and output (4096 -> 2048) projections
//                 for 1..2048 tokens: gemv in 8-token launches, gemm_mma (ABI 1.4) and cuBLAS F16;
//   delta rule    Hk 16, Hv 32, dk = dv 128 (2 MiB of state per sequence), 1 token for 1/8/64
//                 sequences, the states cycled through a 256-slot pool (512 MiB);
//   conv1d        8192 channels, kernel 4, 1 token for 1/8/64 sequences.
// Times are CUDA event times of back-to-back calls divided by the count.
//
//   cuda_moe_bench [--type Q4_K] [--hbm-tbs 4.8]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/api.h"
#include "kernels/cuda/loader.h"
#include "kernels/quants/ggml_type.h"

namespace {

#define CHECK_OK(expr)                                                                  \
  do {                                                                                  \
    const absl::Status st_ = (expr);                                                    \
    if (!st_.ok()) {                                                                    \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, st_.ToString().c_str()); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

const moed::cuda::CudaLibrary* g_lib = nullptr;

void* Alloc(size_t bytes, int fill = -1) {
  void* p = nullptr;
  CHECK_OK(g_lib->Check(g_lib->api().malloc_device(&p, bytes), "malloc"));
  if (fill >= 0) CHECK_OK(g_lib->Check(g_lib->api().memset_device(p, fill, bytes), "memset"));
  return p;
}
template <class T>
T* Upload(const std::vector<T>& v) {
  void* p = Alloc(v.size() * sizeof(T));
  CHECK_OK(g_lib->Check(g_lib->api().copy_to_device(p, v.data(), v.size() * sizeof(T)), "upload"));
  return static_cast<T*>(p);
}

// Mean microseconds per call of fn(i) over n calls after a warm-up.
template <class F>
double TimeUs(int n, F&& fn) {
  const MoedCudaApiV1& api = g_lib->api();
  void *start = nullptr, *stop = nullptr;
  CHECK_OK(g_lib->Check(api.event_create(&start), "event"));
  CHECK_OK(g_lib->Check(api.event_create(&stop), "event"));
  for (int i = 0; i < std::min(n, 20); ++i) fn(i);
  CHECK_OK(g_lib->Check(api.event_record(start, nullptr), "record"));
  for (int i = 0; i < n; ++i) fn(i);
  CHECK_OK(g_lib->Check(api.event_record(stop, nullptr), "record"));
  CHECK_OK(g_lib->Check(api.synchronize(), "synchronize"));
  float ms = 0;
  CHECK_OK(g_lib->Check(api.event_elapsed_ms(start, stop, &ms), "elapsed"));
  api.event_destroy(start);
  api.event_destroy(stop);
  return 1e3 * ms / n;
}

void Row(const std::string& what, double mb, double us, double hbm_tbs) {
  const double floor_us = mb * 1e6 / (hbm_tbs * 1e12) * 1e6;
  std::printf("| %s | %.2f | %.2f | %.2f | %.0f | %.0f%% |\n", what.c_str(), mb, floor_us, us,
              mb * 1e6 / (us * 1e-6) / 1e9, 100.0 * floor_us / us);
}

}  // namespace

int main(int argc, char** argv) {
  std::string type_name = "Q4_K";
  double hbm_tbs = 4.8;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--type") {
      type_name = argv[i + 1];
    } else if (flag == "--hbm-tbs") {
      hbm_tbs = std::atof(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--type Q4_K] [--hbm-tbs 4.8]\n", argv[0]);
      return 2;
    }
  }
  auto lib_or = moed::cuda::CudaLibrary::Load({});
  if (!lib_or.ok()) {
    std::fprintf(stderr, "%s\n", lib_or.status().ToString().c_str());
    return 1;
  }
  g_lib = lib_or->get();
  if (!g_lib->HasAbi11()) {
    std::fprintf(stderr, "%s has ABI 1.0 (no MoE / delta rule)\n", g_lib->path().c_str());
    return 1;
  }
  const auto type = moed::GgmlTypeFromName(type_name);
  if (!type.ok() || !g_lib->api().moe_supports_type(static_cast<uint32_t>(*type))) {
    std::fprintf(stderr, "type %s not supported\n", type_name.c_str());
    return 2;
  }
  MoedCudaDeviceInfo info{};
  CHECK_OK(g_lib->Check(g_lib->api().device_info(0, &info), "device_info"));
  std::printf("device: %s (sm_%d%d, %d SMs), %s; floor at %.2f TB/s\n\n", info.name, info.compute_major,
              info.compute_minor, info.multiprocessor_count, g_lib->api().build_info, hbm_tbs);
  std::printf("| case | MB/call | floor us | measured us | GB/s | %% of floor |\n|---|---|---|---|---|---|\n");
  std::mt19937 rng(1);

  // ---- MoE decode ----
  {
    const int64_t n_embd = 2048, n_ff = 512, n_expert = 256;
    const int top_k = 8, n_sets = 64;
    const uint64_t gu_matrix = static_cast<uint64_t>(moed::RowBytes(*type, n_embd)) * n_ff;
    const uint64_t d_matrix = static_cast<uint64_t>(moed::RowBytes(*type, n_ff)) * n_embd;
    void* gate = Alloc(gu_matrix * n_expert, 0x3c);
    void* up = Alloc(gu_matrix * n_expert, 0x3c);
    void* down = Alloc(d_matrix * n_expert, 0x3c);
    float* x = static_cast<float*>(Alloc(2048 * n_embd * 4, 0));
    float* y = static_cast<float*>(Alloc(2048 * n_embd * 4, 0));
    float* act = static_cast<float*>(Alloc(64 * top_k * n_ff * 4, 0));
    uint64_t scratch_bytes = 0;
    const bool mma = g_lib->HasMma();
    if (mma) {
      CHECK_OK(g_lib->Check(g_lib->api().moe_grouped_scratch_bytes(2048, top_k, n_embd, n_ff, n_expert, &scratch_bytes),
                            "scratch"));
    }
    void* scratch = mma ? Alloc(scratch_bytes) : nullptr;
    for (int tokens : {1, 8, 16, 64, 2048}) {
      // n_sets sets of ids (distinct per token, random across tokens) and their distinct counts.
      const int sets = tokens > 64 ? 4 : n_sets;
      std::vector<int32_t> ids(static_cast<size_t>(sets * tokens * top_k));
      std::vector<int32_t> perm(n_expert);
      double distinct = 0;
      for (int s = 0; s < sets; ++s) {
        std::set<int32_t> seen;
        for (int t = 0; t < tokens; ++t) {
          std::iota(perm.begin(), perm.end(), 0);
          std::shuffle(perm.begin(), perm.end(), rng);
          for (int k = 0; k < top_k; ++k) {
            ids[(s * tokens + t) * top_k + k] = perm[k];
            seen.insert(perm[k]);
          }
        }
        distinct += static_cast<double>(seen.size()) / sets;
      }
      const std::vector<float> wts(ids.size(), 0.125f);
      int32_t* d_ids = Upload(ids);
      float* d_wts = Upload(wts);
      const double mb = distinct * static_cast<double>(2 * gu_matrix + d_matrix) / 1e6;
      char what[160];
      if (tokens <= MOED_CUDA_MAX_MOE_TOKENS) {
        MoedCudaMoeArgs a{};
        a.gate_up_type = a.down_type = static_cast<uint32_t>(*type);
        a.gate_w = gate, a.up_w = up, a.down_w = down;
        a.n_embd = n_embd, a.n_ff = n_ff, a.n_expert = n_expert, a.n_tokens = tokens, a.top_k = top_k;
        a.x = x, a.act = act, a.y = y;
        const double us = TimeUs(tokens > 8 ? 64 : 512, [&](int i) {
          a.ids = d_ids + (i % sets) * tokens * top_k;
          a.weights = d_wts + (i % sets) * tokens * top_k;
          CHECK_OK(g_lib->MoeDecode(a, nullptr));
        });
        std::snprintf(what, sizeof(what), "MoE decode %s, %d token(s), top-8 of 256 (%.1f distinct experts)",
                      type_name.c_str(), tokens, distinct);
        Row(what, mb, us, hbm_tbs);
      }
      if (mma) {
        MoedCudaMoeGroupedArgs a{};
        a.gate_up_type = a.down_type = static_cast<uint32_t>(*type);
        a.gate_w = gate, a.up_w = up, a.down_w = down;
        a.n_embd = n_embd, a.n_ff = n_ff, a.n_expert = n_expert, a.n_tokens = tokens, a.top_k = top_k;
        a.x = x, a.y = y, a.scratch = scratch, a.scratch_bytes = static_cast<int64_t>(scratch_bytes);
        const double us = TimeUs(tokens > 64 ? 20 : 256, [&](int i) {
          a.ids = d_ids + (i % sets) * tokens * top_k;
          a.weights = d_wts + (i % sets) * tokens * top_k;
          CHECK_OK(g_lib->Check(g_lib->api().moe_grouped(&a, nullptr), "moe_grouped"));
        });
        std::snprintf(what, sizeof(what), "MoE grouped (tensor cores) %s, %d token(s) (%.1f distinct experts)",
                      type_name.c_str(), tokens, distinct);
        Row(what, mb, us, hbm_tbs);
      }
      g_lib->api().free_device(d_ids);
      g_lib->api().free_device(d_wts);
    }
    if (scratch != nullptr) g_lib->api().free_device(scratch);
    for (void* p : {gate, up, down, static_cast<void*>(x), static_cast<void*>(y), static_cast<void*>(act)}) {
      g_lib->api().free_device(p);
    }
  }

  // ---- Dense products of a batch: gemv (8 tokens a launch), gemm_mma, cuBLAS F16 ----
  // The DeltaNet input projection (2048 -> 8192) and output projection (4096 -> 2048), Q8_0 in the
  // benchmark file, cycled through copies (> 60 MB) so that the weights come from HBM.
  if (g_lib->HasMma()) {
    const auto q8 = moed::GgmlType::kQ8_0;
    for (const auto& [n_in, n_out, copies] : {std::tuple<int64_t, int64_t, int>{2048, 8192, 8}, {4096, 2048, 16}}) {
      const int64_t max_tokens = 2048;
      const uint64_t row_bytes = static_cast<uint64_t>(moed::RowBytes(q8, n_in)), matrix = row_bytes * n_out;
      void* w = Alloc(matrix * copies, 0x3c);
      float* x = static_cast<float*>(Alloc(max_tokens * n_in * 4, 0));
      float* y = static_cast<float*>(Alloc(max_tokens * n_out * 4, 0));
      const size_t scratch_bytes = 2 * (n_in * n_out + max_tokens * n_in) + 512;
      void* scratch = Alloc(scratch_bytes);
      const bool cublas = g_lib->api().gemm_available() == 1;
      const std::string shape = "Q8_0 " + std::to_string(n_in) + "x" + std::to_string(n_out) + ", ";
      for (int tokens : {1, 8, 16, 32, 64, 256, 2048}) {
        MoedCudaGemvArgs a{};
        a.ggml_type = static_cast<uint32_t>(q8), a.row_bytes = row_bytes, a.n_in = n_in, a.n_out = n_out;
        a.n_matrices = 1;
        const double mb = matrix / 1e6;
        const int reps = tokens > 256 ? 20 : 128;
        if (tokens <= 256) {
          const double us = TimeUs(reps, [&](int i) {
            for (int t = 0; t < tokens; t += MOED_CUDA_MAX_GEMV_TOKENS) {
              a.w = static_cast<uint8_t*>(w) + (i % copies) * matrix;
              a.x = x + t * n_in, a.y = y + t * n_out, a.n_tokens = std::min(MOED_CUDA_MAX_GEMV_TOKENS, tokens - t);
              CHECK_OK(g_lib->Check(g_lib->api().gemv(&a, nullptr), "gemv"));
            }
          });
          Row(shape + "gemv, " + std::to_string(tokens) + " tokens", mb, us, hbm_tbs);
        }
        const double us = TimeUs(reps, [&](int i) {
          a.w = static_cast<uint8_t*>(w) + (i % copies) * matrix;
          a.x = x, a.y = y, a.n_tokens = tokens;
          CHECK_OK(g_lib->Check(g_lib->api().gemm_mma(&a, nullptr), "gemm_mma"));
        });
        Row(shape + "gemm_mma, " + std::to_string(tokens) + " tokens", mb, us, hbm_tbs);
        if (cublas && tokens >= 8) {
          MoedCudaGemmArgs g{};
          g.ggml_type = a.ggml_type, g.row_bytes = row_bytes, g.n_in = n_in, g.n_out = n_out, g.n_tokens = tokens;
          g.x = x, g.y = y, g.scratch = scratch, g.scratch_bytes = static_cast<int64_t>(scratch_bytes);
          g.precision = MOED_CUDA_GEMM_F16;
          const double cus = TimeUs(reps, [&](int i) {
            g.w = static_cast<uint8_t*>(w) + (i % copies) * matrix;
            CHECK_OK(g_lib->Check(g_lib->api().gemm(&g, nullptr), "gemm"));
          });
          Row(shape + "cuBLAS F16 (dequantize + GEMM), " + std::to_string(tokens) + " tokens", mb, cus, hbm_tbs);
        }
      }
      for (void* p : {w, static_cast<void*>(x), static_cast<void*>(y), scratch}) g_lib->api().free_device(p);
    }
  }

  // ---- Gated delta rule step and conv1d ----
  {
    const int64_t hk = 16, hv = 32, dk = 128, dv = 128, pool = 256, conv_ch = 8192, d_conv = 4;
    const int64_t state_floats = hv * dv * dk;
    float* state = static_cast<float*>(Alloc(pool * state_floats * 4, 0));
    float* conv_state = static_cast<float*>(Alloc(pool * (d_conv - 1) * conv_ch * 4, 0));
    float* conv_w = static_cast<float*>(Alloc(conv_ch * d_conv * 4, 0));
    const int max_b = 64;
    float* q = static_cast<float*>(Alloc(max_b * hk * dk * 4, 0));
    float* k = static_cast<float*>(Alloc(max_b * hk * dk * 4, 0));
    float* v = static_cast<float*>(Alloc(max_b * hv * dv * 4, 0));
    float* g = static_cast<float*>(Alloc(max_b * hv * 4, 0));
    float* beta = static_cast<float*>(Alloc(max_b * hv * 4, 0));
    float* out = static_cast<float*>(Alloc(max_b * hv * dv * 4, 0));
    float* cx = static_cast<float*>(Alloc(max_b * conv_ch * 4, 0));
    float* cy = static_cast<float*>(Alloc(max_b * conv_ch * 4, 0));
    for (int b : {1, 8, 64}) {
      // pool / b disjoint slot groups, cycled so that consecutive calls touch other states.
      const int groups = static_cast<int>(pool / b);
      std::vector<int32_t> slots(static_cast<size_t>(groups * b));
      std::iota(slots.begin(), slots.end(), 0);
      std::shuffle(slots.begin(), slots.end(), rng);
      int32_t* d_slots = Upload(slots);
      MoedCudaDeltaRuleArgs a{};
      a.n_k_heads = hk, a.n_v_heads = hv, a.dk = dk, a.dv = dv, a.n_seqs = b, a.n_tokens = 1;
      a.q = q, a.k = k, a.v = v, a.g = g, a.beta = beta, a.state = state, a.out = out;
      const double us = TimeUs(512, [&](int i) {
        a.state_slots = d_slots + (i % groups) * b;
        CHECK_OK(g_lib->DeltaRuleStep(a, nullptr));
      });
      const double mb = 2.0 * b * state_floats * 4 / 1e6;  // state read + write
      Row("delta rule step, 35B-A3B (32 heads 128x128), " + std::to_string(b) + " seq", mb, us, hbm_tbs);

      MoedCudaConv1dArgs c{};
      c.n_channels = conv_ch, c.d_conv = d_conv, c.n_seqs = b, c.n_tokens = 1;
      c.x = cx, c.w = conv_w, c.state = conv_state, c.y = cy;
      const double cus = TimeUs(512, [&](int i) {
        c.state_slots = d_slots + (i % groups) * b;
        CHECK_OK(g_lib->Conv1dStep(c, nullptr));
      });
      const double cmb = b * (2.0 * (d_conv - 1) * conv_ch * 4 + 2.0 * conv_ch * 4) / 1e6 + conv_ch * d_conv * 4 / 1e6;
      Row("conv1d step, 8192 ch, kernel 4, " + std::to_string(b) + " seq", cmb, cus, hbm_tbs);
      g_lib->api().free_device(d_slots);
    }
  }
  std::fflush(stdout);
  return 0;
}
