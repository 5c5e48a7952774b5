// Internal to libmoed_cuda.so: the op launchers behind the C ABI of api.h, one file per op family
// (gemv.cu, norm.cu, moe.cu, ssm.cu, attention.cu, pointwise.cu, gemm.cu, gemm_mma.cu, sample.cu,
// nccl.cc), and the per-thread error message they report through. Compiled by nvcc only; the host
// side sees nothing but api.h.
#ifndef MOED_KERNELS_CUDA_OPS_H_
#define MOED_KERNELS_CUDA_OPS_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/cuda/api.h"

namespace moed::cuda {

// The moed::GgmlType ids the kernels accept (kernels/quants/ggml_type.h; the host test checks
// that the two agree through GgmlTypeName).
enum TypeId : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ8_0 = 8,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIq3Xxs = 18,
  kIq4Xs = 23,
  kBf16 = 30,
  kMxfp4 = 39,
  kNvfp4 = 40,
  kIq3A770 = 0x1000 + 42,
};

// Records `message` as the calling thread's last error and returns `code` (nonzero).
int Fail(int code, const std::string& message);
// Fail() for a CUDA runtime error: "<what>: <cudaErrorName>: <description>"; 0 if err is success.
int FailCuda(int err, const char* what);

bool GemvSupportsType(uint32_t ggml_type);
int GemvLaunch(const MoedCudaGemvArgs& args, void* stream);
int RmsNormLaunch(const float* x, const float* w, int64_t n, int64_t n_rows, float eps, float* y,
                  void* stream);
bool MoeSupportsType(uint32_t ggml_type);
int MoeDecodeLaunch(const MoedCudaMoeArgs& args, void* stream);
int DeltaRuleStepLaunch(const MoedCudaDeltaRuleArgs& args, void* stream);
int Conv1dStepLaunch(const MoedCudaConv1dArgs& args, void* stream);
// kv_type: MOED_CUDA_KV_F32 or MOED_CUDA_KV_F16, the element type of args.k_cache / v_cache.
int AttentionPrepLaunch(const MoedCudaAttentionPrepArgs& args, int32_t kv_type, void* stream);
int AttentionLaunch(const MoedCudaAttentionArgs& args, int32_t kv_type, void* stream);
int RouteTopKLaunch(const float* logits, int64_t n_tokens, int64_t n_expert, int32_t k, int32_t* ids,
                    float* weights, void* stream);
int DeltaNetPrepLaunch(const MoedCudaDeltaNetPrepArgs& args, void* stream);
int RmsNormGatedLaunch(const float* x, const float* w, const float* z, int64_t n, int64_t n_rows, float eps,
                       float* y, void* stream);
int SiluMulLaunch(const float* gate, const float* up, int64_t n, float* y, void* stream);
int AddRowsLaunch(float* x, const float* d, const float* gate_logits, int64_t n, int64_t n_rows, void* stream);
int GemmAvailable();
int GemmLaunch(const MoedCudaGemmArgs& args, void* stream);
int DequantizeF16Launch(uint32_t type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_rows, void* out,
                        void* stream);
int MoeCombineLaunch(float* x, const float* rows, const int32_t* row_of, const float* weights, int64_t n_tokens,
                     int32_t top_k, int64_t n, void* stream);
int GatherRowsLaunch(const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst, void* stream);
// gemm_mma.cu: ABI 1.4's tensor-core products.
int MoeGroupedScratchBytes(int64_t n_tokens, int32_t top_k, int64_t n_embd, int64_t n_ff, int64_t n_expert,
                           uint64_t* bytes);
int MoeGroupedLaunch(const MoedCudaMoeGroupedArgs& args, void* stream);
int GemmMmaLaunch(const MoedCudaGemvArgs& args, void* stream);
// sample.cu: ABI 1.5's row summaries and 1.6's draws.
int LogitsTopLaunch(const float* logits, int64_t n_rows, int64_t n_vocab, int32_t top_n, int32_t* ids,
                    float* values, float* log_sum_exp, void* stream);
int LogitsDrawLaunch(const float* logits, int64_t n_rows, int64_t n_vocab, const MoedCudaRowDraw* draws,
                     int32_t* ids, float* values, void* stream);
// nccl.cc: ABI 1.3's links (api.h).
int NcclAvailable();
int NcclUniqueId(uint8_t* id);
int NcclCommInit(void** comm, int n_ranks, const uint8_t* id, int rank);
int NcclCommStatus(void* comm, int* pending);
int NcclSend(void* comm, const void* data, size_t bytes, int peer, void* stream);
int NcclRecv(void* comm, void* data, size_t bytes, int peer, void* stream);
int NcclCommAbort(void* comm);

}  // namespace moed::cuda

#endif  // MOED_KERNELS_CUDA_OPS_H_
