/* The C ABI of libmoed_cuda.so, moed's CUDA kernel library. The host side (kernels/cuda/loader.h)
 * dlopens the library and calls moed_cuda_api_v1(), so no host translation unit ever includes a
 * CUDA header and nothing links libcuda at build time: the library links the CUDA runtime
 * statically, and the runtime dlopens the driver (libcuda.so.1) on first use.
 *
 * Versioning: a struct of function pointers per ABI version. Fields are only ever appended to
 * MoedCudaApiV1 (struct_size tells a caller which exist: MOED_CUDA_API_HAS); an incompatible
 * change adds moed_cuda_api_v2() beside it. 1.0: devices, memory, events, gemv, rms_norm;
 * 1.1 appends moe_decode, delta_rule_step and conv1d_step.
 *
 * Errors: every function returns 0 on success, otherwise a nonzero code (a cudaError_t value, or
 * MOED_CUDA_EINVAL for a rejected argument) and records a message that last_error() returns for
 * the calling thread. Kernels run asynchronously on `stream` (NULL: the legacy default stream);
 * launch errors are reported at once, execution errors at the next synchronize().
 *
 * Thread-safety: every function may be called from any thread; the current device is per thread
 * (as in the CUDA runtime). Plain C so that the header is also the documentation of the boundary. */
#ifndef MOED_KERNELS_CUDA_API_H_
#define MOED_KERNELS_CUDA_API_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MOED_CUDA_API_VERSION 1
#define MOED_CUDA_API_MINOR_VERSION 1 /* the fields this header declares: 1.1 */
#define MOED_CUDA_EINVAL (-1)
#define MOED_CUDA_MAX_GEMV_TOKENS 8

typedef struct MoedCudaDeviceInfo {
  char name[256];
  int compute_major;
  int compute_minor;
  int multiprocessor_count;
  uint64_t total_memory_bytes;
  uint64_t l2_cache_bytes;
  int memory_bus_width_bits;
} MoedCudaDeviceInfo;

/* y[m][t][o] = sum_i W_m[o][i] * x[m][t][i] for t < n_tokens, o < n_out, m < n_matrices.
 * W_m is n_out rows of row_bytes bytes (GGUF block format of `ggml_type`, rows of n_in weights)
 * at w + m * w_matrix_stride_bytes; x_m and y_m are float32, token-major, at x + m * x_matrix_stride
 * and y + m * y_matrix_stride (in floats; 0 broadcasts one x to every matrix). All pointers are
 * device memory; w must be aligned to the type's field alignment (row starts of any GGUF tensor
 * are, given a 256-byte aligned base). */
typedef struct MoedCudaGemvArgs {
  uint32_t ggml_type; /* the moed::GgmlType value (IQ3_A770: its internal id 0x1000 + 42) */
  const void* w;
  uint64_t row_bytes;
  int64_t n_in;
  int64_t n_out;
  const float* x;
  float* y;
  int32_t n_tokens; /* 1..MOED_CUDA_MAX_GEMV_TOKENS */
  int32_t n_matrices; /* >= 1: a strided batch (e.g. one expert slice per matrix) in one launch */
  uint64_t w_matrix_stride_bytes;
  int64_t x_matrix_stride;
  int64_t y_matrix_stride;
} MoedCudaGemvArgs;

/* ---- ABI 1.1: MoE decode, gated delta rule step, conv1d state update (moe.cu, ssm.cu) ------- */

#define MOED_CUDA_MAX_MOE_TOKENS 64
#define MOED_CUDA_MAX_MOE_TOPK 32

/* Routed-expert FFN of a few tokens (qwen35moe.md §3.6 step 3), in two launches on `stream`:
 *   act[t][s][f] = silu(gate_e . x[t])[f] * (up_e . x[t])[f]   e = ids[t][s]  (gate+up fused)
 *   y[t][o] = (accumulate ? y[t][o] : 0) + sum_s weights[t][s] * (down_e . act[t][s])[o]
 * gate_w / up_w are [n_embd, n_ff, n_expert] tensors (n_expert matrices of n_ff rows of n_embd
 * weights, GGUF block format gate_up_type, as cpu::ExpertSlice), down_w is [n_ff, n_embd, n_expert]
 * in down_type. ids and weights are device arrays [n_tokens][top_k]; an id outside [0, n_expert)
 * (e.g. -1 padding) is skipped (its act row is zero, it adds nothing). x, act and y are device
 * float32: x [n_tokens][n_embd], act (scratch, also an output) [n_tokens][top_k][n_ff],
 * y [n_tokens][n_embd]. No atomics: each y element is summed by one warp over the k experts in
 * slot order, so results are deterministic. */
typedef struct MoedCudaMoeArgs {
  uint32_t gate_up_type;
  uint32_t down_type;
  const void* gate_w;
  const void* up_w;
  const void* down_w;
  int64_t n_embd;
  int64_t n_ff;
  int64_t n_expert;
  int32_t n_tokens; /* 1..MOED_CUDA_MAX_MOE_TOKENS */
  int32_t top_k;    /* 1..MOED_CUDA_MAX_MOE_TOPK */
  const int32_t* ids;
  const float* weights;
  const float* x;
  float* act;
  float* y;
  int32_t accumulate; /* nonzero: add to y (e.g. on top of the shared expert) */
} MoedCudaMoeArgs;

/* Gated delta rule, recurrent form (qwen35moe.md §3.4 step 7; CPU twin cpu::DeltaRuleRecurrent),
 * for n_seqs sequences of n_tokens tokens each (decode: n_tokens = 1), token-major:
 *   q, k [n_seqs * n_tokens][n_k_heads][dk] (q normalised and scaled, k normalised),
 *   v, out [n_seqs * n_tokens][n_v_heads][dv], g (log-decay), beta [n_seqs * n_tokens][n_v_heads];
 * value head j pairs with q/k head j % n_k_heads. Sequence b's state ([n_v_heads][dv][dk] float32,
 * as the CPU's) is at state + slot * n_v_heads * dv * dk with slot = state_slots[b] (a device
 * array; NULL: slot = b), updated in place; slots must be distinct. dk in {32, 64, 128, 256}. */
typedef struct MoedCudaDeltaRuleArgs {
  int64_t n_k_heads;
  int64_t n_v_heads;
  int64_t dk;
  int64_t dv;
  int32_t n_seqs;
  int32_t n_tokens;
  const float* q;
  const float* k;
  const float* v;
  const float* g;
  const float* beta;
  float* state;
  const int32_t* state_slots;
  float* out;
} MoedCudaDeltaRuleArgs;

/* Causal depthwise conv1d + SiLU with a rolling state (qwen35moe.md §3.4 step 2; CPU twin
 * cpu::CausalConv1dSilu) for n_seqs sequences of n_tokens tokens each: x, y
 * [n_seqs * n_tokens][n_channels]; w [n_channels][d_conv], d_conv 1..8; sequence b's state
 * ((d_conv - 1) rows of n_channels, oldest first) at state + slot * (d_conv - 1) * n_channels,
 * slot = state_slots[b] (NULL: b), updated in place. y must not alias x. */
typedef struct MoedCudaConv1dArgs {
  int64_t n_channels;
  int64_t d_conv;
  int32_t n_seqs;
  int32_t n_tokens;
  const float* x;
  const float* w;
  float* state;
  const int32_t* state_slots;
  float* y;
} MoedCudaConv1dArgs;

typedef struct MoedCudaApiV1 {
  uint32_t version;     /* MOED_CUDA_API_VERSION */
  uint32_t struct_size; /* sizeof(MoedCudaApiV1) of the library */
  const char* build_info; /* e.g. "CUDA 13.0, sm_90a + compute_80 PTX" */

  /* Devices. device_count fails (nonzero) when there is no driver; 0 devices is success. */
  int (*device_count)(int* count);
  int (*device_info)(int device, MoedCudaDeviceInfo* info);
  int (*set_device)(int device);

  /* Memory (device allocations; copies are synchronous with respect to the host). */
  int (*malloc_device)(void** ptr, size_t bytes);
  int (*free_device)(void* ptr);
  int (*copy_to_device)(void* dst, const void* src, size_t bytes);
  int (*copy_to_host)(void* dst, const void* src, size_t bytes);
  int (*memset_device)(void* ptr, int value, size_t bytes);

  /* Streams and events (for timing). */
  int (*synchronize)(void);
  int (*event_create)(void** event);
  int (*event_destroy)(void* event);
  int (*event_record)(void* event, void* stream);
  int (*event_elapsed_ms)(void* start, void* end, float* ms);

  /* Kernels. gemv_supports_type returns 1 if gemv accepts the type, else 0. */
  int (*gemv_supports_type)(uint32_t ggml_type);
  int (*gemv)(const MoedCudaGemvArgs* args, void* stream);
  /* y[r] = x[r] / sqrt(mean(x[r]^2) + eps) * w for n_rows rows of n floats (w NULL: no weight);
   * y may alias x. */
  int (*rms_norm)(const float* x, const float* w, int64_t n, int64_t n_rows, float eps, float* y,
                  void* stream);

  /* The message of the calling thread's last failure ("" if none). Valid until its next call. */
  const char* (*last_error)(void);

  /* ---- ABI 1.1 (appended; present iff MOED_CUDA_API_HAS(api, conv1d_step)) ----------------- */
  /* moe_supports_type returns 1 if moe_decode accepts the type (for gate/up and for down). */
  int (*moe_supports_type)(uint32_t ggml_type);
  int (*moe_decode)(const MoedCudaMoeArgs* args, void* stream);
  int (*delta_rule_step)(const MoedCudaDeltaRuleArgs* args, void* stream);
  int (*conv1d_step)(const MoedCudaConv1dArgs* args, void* stream);
} MoedCudaApiV1;

/* Whether a library's table has `field` (fields are only appended, struct_size says how far it
 * goes): e.g. MOED_CUDA_API_HAS(api, moe_decode) is false for a 1.0 library. */
#define MOED_CUDA_API_HAS(api, field) \
  ((api)->struct_size >= offsetof(MoedCudaApiV1, field) + sizeof((api)->field))
/* The size of the ABI 1.0 table (the oldest a loader accepts). */
#define MOED_CUDA_API_V1_0_SIZE offsetof(MoedCudaApiV1, moe_supports_type)

/* The only exported symbol of libmoed_cuda.so. Never NULL; calling it does not touch the GPU. */
const MoedCudaApiV1* moed_cuda_api_v1(void);

#ifdef __cplusplus
}
#endif

#endif /* MOED_KERNELS_CUDA_API_H_ */
