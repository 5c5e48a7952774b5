/* The C ABI of libmoed_cuda.so, moed's CUDA kernel library. The host side (kernels/cuda/loader.h)
 * dlopens the library and calls moed_cuda_api_v1(), so no host translation unit ever includes a
 * CUDA header and nothing links libcuda at build time: the library links the CUDA runtime
 * statically, and the runtime dlopens the driver (libcuda.so.1) on first use.
 *
 * Versioning: a struct of function pointers per ABI version. Fields are only ever appended to
 * MoedCudaApiV1 (struct_size tells a caller which exist: MOED_CUDA_API_HAS); an incompatible
 * change adds moed_cuda_api_v2() beside it. 1.0: devices, memory, events, gemv, rms_norm;
 * 1.1 appends moe_decode, delta_rule_step and conv1d_step; 1.2 the rest of a qwen35moe layer
 * (attention, routing, DeltaNet input split, gated norm, pointwise ops, async copies), so that a
 * whole stage runs on the device; 1.3 attention over F16 K/V pools (attention_prep_kv,
 * attention_kv) and NCCL links; 1.4 tensor-core products on the quantized blocks (moe_grouped,
 * gemm_mma); 1.5 logits_top, the row summaries greedy sampling needs; 1.6 logits_draw, a seeded
 * draw over whole rows.
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
#define MOED_CUDA_API_MINOR_VERSION 6 /* the fields this header declares: 1.6 */
#define MOED_CUDA_EINVAL (-1)
#define MOED_CUDA_ENCCL (-2) /* an NCCL failure, or NCCL absent */
#define MOED_CUDA_MAX_GEMV_TOKENS 8
#define MOED_CUDA_NCCL_ID_BYTES 128 /* sizeof(ncclUniqueId) */

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
 * array; NULL: slot = b), updated in place; slots must be distinct. dk in {8, 16, 32, 64, 128, 256}. */
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

/* ---- ABI 1.2: attention, routing, DeltaNet prep (attention.cu, pointwise.cu, norm.cu) ------- */

/* Attention inputs of n_tokens text tokens (qwen35moe.md §3.3 steps 2-4; CPU twins cpu::RmsNorm and
 * cpu::RopeMultiNeox with all position streams equal, which is what text tokens have):
 *   qg [n][n_heads][2 * head_dim] (each head's query then its gate)
 *     -> q [n][n_heads][head_dim] = rope(rmsnorm(query) * q_norm), gate [n][n_heads][head_dim];
 *   k [n][n_kv_heads][head_dim] -> rope(rmsnorm(k) * k_norm) into k_cache row kv_rows[t];
 *   v [n][n_kv_heads][head_dim_v] -> v_cache row kv_rows[t].
 * A cache row holds one token's n_kv_heads heads. RoPE rotates dims [0, n_rot) in NeoX pairs with
 * theta_i = positions[t] * theta_scale^i (theta_scale = freq_base^(-2/n_rot), passed so that both
 * backends use the same float). head_dim <= 512. */
typedef struct MoedCudaAttentionPrepArgs {
  int64_t n_heads;
  int64_t n_kv_heads;
  int64_t head_dim;
  int64_t head_dim_v;
  int64_t n_rot;
  float theta_scale;
  float eps;
  int32_t n_tokens;
  const float* qg;
  const float* k;
  const float* v;
  const float* q_norm;
  const float* k_norm;
  const int32_t* positions; /* [n] */
  const int32_t* kv_rows;   /* [n] */
  float* q;
  float* gate;
  float* k_cache; /* float32 rows (attention_prep_kv: rows of kv_type elements) */
  float* v_cache;
} MoedCudaAttentionPrepArgs;

/* Causal attention over the paged cache (CPU twin cpu::AttentionPaged, then o *= sigmoid(gate)):
 * token t (query heads q [n][n_heads][head_dim], pre-scaled by `scale` inside) attends to positions
 * [0, positions[t]] of slot token_slots[t], whose position p lives in cache row
 * block_tables[slot * block_table_stride + p / block_size] * block_size + p % block_size. Query head
 * h reads kv head h / (n_heads / n_kv_heads). out [n][n_heads][head_dim_v]; gate (same shape, NULL:
 * none). head dims <= 256. */
typedef struct MoedCudaAttentionArgs {
  int64_t n_heads;
  int64_t n_kv_heads;
  int64_t head_dim;
  int64_t head_dim_v;
  int32_t n_tokens;
  float scale;
  const float* q;
  const float* gate;
  const float* k_cache; /* float32 rows (attention_kv: rows of kv_type elements) */
  const float* v_cache;
  int64_t block_size;
  const int32_t* block_tables;
  int32_t block_table_stride;
  const int32_t* token_slots; /* [n] */
  const int32_t* positions;   /* [n] */
  int32_t max_position;       /* >= every positions[t]: sizes the split over keys */
  /* Scratch for split-K over long contexts (NULL or too small: no split):
   * n_tokens * n_heads * splits * (head_dim_v + 2) floats, splits <= 32 (max_position / 256 + 1). */
  float* partials;
  int64_t partials_floats;
  float* out;
} MoedCudaAttentionArgs;

/* Gated DeltaNet inputs (qwen35moe.md §3.4 steps 3-6) of n_tokens tokens from the conv output
 * conv_out [n][2 * n_k_heads * dk + n_v_heads * dv] (q | k | v): q, k [n][n_k_heads][dk] L2-normalised
 * per head (x / max(|x|, eps); q then times q_scale), v [n][n_v_heads][dv] copied,
 * g = ssm_a * softplus(alpha + dt_bias) and beta = sigmoid(beta_logit), [n][n_v_heads]. */
typedef struct MoedCudaDeltaNetPrepArgs {
  int64_t n_k_heads;
  int64_t n_v_heads;
  int64_t dk;
  int64_t dv;
  int32_t n_tokens;
  float eps;
  float q_scale;
  const float* conv_out;
  const float* alpha;
  const float* beta_logit;
  const float* ssm_a;
  const float* dt_bias;
  float* q;
  float* k;
  float* v;
  float* g;
  float* beta;
} MoedCudaDeltaNetPrepArgs;

/* y[t][o] = sum_i W[o][i] x[t][i] for many tokens (prefill) through cuBLAS (gemm.cu), float32
 * accumulation and output. precision MOED_CUDA_GEMM_F16: on tensor cores, W dequantized to F16
 * rows into scratch (skipped when w_f16 gives them already, e.g. from dequantize_f16) and x
 * rounded to F16 into scratch; scratch of at least 2 * (n_out * n_in [without w_f16] +
 * n_tokens * n_in) + 256 bytes. MOED_CUDA_GEMM_F32: W dequantized to float32 (4 * n_out * n_in
 * + 256 bytes of scratch), x as it is, no rounding beyond float32's (w_f16 not allowed). */
#define MOED_CUDA_GEMM_F16 0
#define MOED_CUDA_GEMM_F32 1
typedef struct MoedCudaGemmArgs {
  uint32_t ggml_type;
  const void* w;
  uint64_t row_bytes;
  const void* w_f16;
  int64_t n_in;
  int64_t n_out;
  int64_t n_tokens;
  const float* x;
  float* y;
  void* scratch;
  int64_t scratch_bytes;
  int32_t precision; /* MOED_CUDA_GEMM_F16 or MOED_CUDA_GEMM_F32 */
} MoedCudaGemmArgs;

/* ---- ABI 1.3: K/V cache element types (attention_prep_kv, attention_kv) ---------------------- */

/* The element type of the k_cache / v_cache pools: float32, or IEEE binary16 (half the memory and
 * half the bytes attention reads per key). F16 rows are rounded to nearest even when
 * attention_prep_kv writes them and widened to float32 when attention_kv reads them; all arithmetic
 * stays float32. With MOED_CUDA_KV_F16 the args' k_cache / v_cache point at binary16 elements
 * (cast to float*), indexed as with float32: a row is n_kv_heads * head_dim elements. */
#define MOED_CUDA_KV_F32 0
#define MOED_CUDA_KV_F16 1

/* ---- ABI 1.4: tensor-core products on the quantized blocks (gemm_mma.cu) ---------------------- */

/* The routed-expert FFN of many tokens (prefill, large decode batches): the result of moe_decode
 * (same fields and meaning) without its n_tokens limit, computed on tensor cores with the weights
 * decoded from their blocks and x and the SiLU(gate)*up activations rounded to F16 (float32
 * accumulation, as the F16 gemm). Rows are grouped by expert on the device: no host
 * synchronisation, so it can be captured in a CUDA graph. scratch (256-byte aligned) holds the
 * grouping and the intermediate rows: moe_grouped_scratch_bytes gives its size. Deterministic. */
typedef struct MoedCudaMoeGroupedArgs {
  uint32_t gate_up_type;
  uint32_t down_type;
  const void* gate_w;
  const void* up_w;
  const void* down_w;
  int64_t n_embd;
  int64_t n_ff;
  int64_t n_expert; /* 1..1024 */
  int32_t n_tokens; /* 1..65535 */
  int32_t top_k;    /* 1..MOED_CUDA_MAX_MOE_TOPK */
  const int32_t* ids;
  const float* weights;
  const float* x;
  float* y;
  int32_t accumulate;
  void* scratch;
  int64_t scratch_bytes;
} MoedCudaMoeGroupedArgs;

/* ---- ABI 1.6: one row's draw (logits_draw), as moed::cpu::RowDraw ---------------------------- */
typedef struct MoedCudaRowDraw {
  float inv_temperature; /* 1 / temperature, > 0 */
  float log_min_p;       /* log(min_p); -inf: min-p off */
  double u;              /* uniform in [0, 1) */
  int32_t skip;          /* nonzero: this row draws nothing */
  int32_t reserved;
} MoedCudaRowDraw;

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

  /* ---- ABI 1.2 (appended; present iff MOED_CUDA_API_HAS(api, moe_combine)) ------------------ */
  int (*attention_prep)(const MoedCudaAttentionPrepArgs* args, void* stream);
  int (*attention)(const MoedCudaAttentionArgs* args, void* stream);
  /* Per token: softmax over n_expert logits, the k most probable (ties: lower id) with weights
   * p / max(sum of the k p, 2^-14) (CPU twin cpu::RouteTopK). ids, weights [n_tokens][k]. */
  int (*route_topk)(const float* logits, int64_t n_tokens, int64_t n_expert, int32_t k, int32_t* ids,
                    float* weights, void* stream);
  int (*deltanet_prep)(const MoedCudaDeltaNetPrepArgs* args, void* stream);
  /* rms_norm, then times silu(z) (z has x's shape); y may alias x. */
  int (*rms_norm_gated)(const float* x, const float* w, const float* z, int64_t n, int64_t n_rows,
                        float eps, float* y, void* stream);
  /* y[i] = silu(gate[i]) * up[i] for i < n; y may alias gate or up. */
  int (*silu_mul)(const float* gate, const float* up, int64_t n, float* y, void* stream);
  /* x[r][i] += f_r * d[r][i] for n_rows rows of n, f_r = sigmoid(gate_logits[r]) (NULL: 1). */
  int (*add_rows)(float* x, const float* d, const float* gate_logits, int64_t n, int64_t n_rows,
                  void* stream);
  /* dst[i] = src[rows[i]] for n_rows rows of n floats (rows on the device). */
  int (*gather_rows)(const float* src, const int32_t* rows, int64_t n_rows, int64_t n, float* dst,
                     void* stream);
  /* Copies ordered on `stream` (host memory pageable: synchronous with the host like cudaMemcpy). */
  int (*copy_to_device_async)(void* dst, const void* src, size_t bytes, void* stream);
  int (*copy_to_host_async)(void* dst, const void* src, size_t bytes, void* stream);
  int (*stream_create)(void** stream);
  int (*stream_destroy)(void* stream);
  int (*stream_synchronize)(void* stream);
  /* Free and total bytes of the current device. */
  int (*memory_info)(size_t* free_bytes, size_t* total_bytes);
  /* CUDA graphs: the launches made on `stream` between capture_begin and capture_end (from the
   * calling thread only) become a graph, instantiated into *graph; graph_launch replays it with
   * the same arguments (pointers stay fixed: their contents may change between launches). */
  int (*graph_capture_begin)(void* stream);
  int (*graph_capture_end)(void* stream, void** graph);
  int (*graph_launch)(void* graph, void* stream);
  int (*graph_destroy)(void* graph);
  /* 1 if gemm can run (cuBLAS, libcublas.so.13, was found), else 0: callers then use gemv. */
  int (*gemm_available)(void);
  int (*gemm)(const MoedCudaGemmArgs* args, void* stream);
  /* n_rows rows of n_in weights (ggml_type, row_bytes each) as F16 into out [n_rows][n_in]. */
  int (*dequantize_f16)(uint32_t ggml_type, const void* w, uint64_t row_bytes, int64_t n_in, int64_t n_rows,
                        void* out, void* stream);
  /* MoE prefill combine: x[t][i] += sum_s weights[t][s] * rows[row_of[t][s]][i] in slot order
   * (row_of < 0: skipped), x [n_tokens][n], row_of and weights [n_tokens][top_k]. */
  int (*moe_combine)(float* x, const float* rows, const int32_t* row_of, const float* weights, int64_t n_tokens,
                     int32_t top_k, int64_t n, void* stream);

  /* 1.3: F16 K/V cache (present iff MOED_CUDA_API_HAS(api, attention_kv)) --------------------- */
  /* attention_prep and attention over K/V pools of kv_type elements (MOED_CUDA_KV_*); with
   * MOED_CUDA_KV_F32 they are exactly attention_prep and attention. */
  int (*attention_prep_kv)(const MoedCudaAttentionPrepArgs* args, int32_t kv_type, void* stream);
  int (*attention_kv)(const MoedCudaAttentionArgs* args, int32_t kv_type, void* stream);

  /* 1.3: NCCL ------------------------------------------------------------------------------- */
  /* Point-to-point links between pipeline stages (one GPU per process). libnccl.so.2 is dlopen'ed
   * on first use; nccl_available returns 1 if it was found, else 0 with the reason in last_error()
   * (the other nccl_* then fail).
   * Communicators are non-blocking (ncclConfig_t.blocking = 0), so that no call can hang a
   * caller whose peer died: callers poll nccl_comm_status and stream_query against their own
   * deadline and end a communicator with nccl_comm_abort. */
  int (*nccl_available)(void);
  /* A new communicator id (MOED_CUDA_NCCL_ID_BYTES bytes): rank 0 creates it and hands it to the
   * other ranks out of band. */
  int (*nccl_unique_id)(uint8_t* id);
  /* Starts joining rank `rank` of an n_ranks communicator on the calling thread's device. */
  int (*nccl_comm_init)(void** comm, int n_ranks, const uint8_t* id, int rank);
  /* *pending = 1 while the communicator's last call (init, send, recv) is still being set up;
   * nonzero return: the communicator failed (the message says why). */
  int (*nccl_comm_status)(void* comm, int* pending);
  /* Queue bytes to/from rank `peer` on `stream` (they complete when the peer posts the match). */
  int (*nccl_send)(void* comm, const void* data, size_t bytes, int peer, void* stream);
  int (*nccl_recv)(void* comm, void* data, size_t bytes, int peer, void* stream);
  /* Cancels what is queued and frees the communicator: safe whatever the peer did. */
  int (*nccl_comm_abort)(void* comm);
  /* *done = 1 when everything queued on `stream` has finished, else 0. */
  int (*stream_query)(void* stream, int* done);

  /* 1.4: tensor-core products (present iff MOED_CUDA_API_HAS(api, gemm_mma)) ------------------ */
  int (*moe_grouped_scratch_bytes)(int64_t n_tokens, int32_t top_k, int64_t n_embd, int64_t n_ff, int64_t n_expert,
                                   uint64_t* bytes);
  int (*moe_grouped)(const MoedCudaMoeGroupedArgs* args, void* stream);
  /* gemv's product for any number of tokens (n_matrices 1), on tensor cores with W and x rounded
   * to F16 (float32 accumulation): for batches, where gemv re-reads W for every 8 tokens. */
  int (*gemm_mma)(const MoedCudaGemvArgs* args, void* stream);

  /* 1.5: row summaries for sampling (present iff MOED_CUDA_API_HAS(api, logits_top)) ---------- */
  /* For each of n_rows rows of n_vocab logits: the top_n (1..20, <= n_vocab) best logits, best
   * first with ties to the lower id, into values / ids [n_rows][top_n], and log(sum(exp(logit)))
   * into log_sum_exp[n_rows] (-inf when the largest logit is not finite). NaN counts as -inf. */
  int (*logits_top)(const float* logits, int64_t n_rows, int64_t n_vocab, int32_t top_n, int32_t* ids,
                    float* values, float* log_sum_exp, void* stream);

  /* 1.6: a draw over whole rows (present iff MOED_CUDA_API_HAS(api, logits_draw)) ------------- */
  /* For each of n_rows rows of n_vocab (<= 2^23) logits whose draws[r].skip is 0: the token
   * moed::cpu::DrawFromRow picks for draws[r] (kernels/cpu/sampling.h; bit-identical), and its
   * logit, into ids[r] / values[r]. draws is in device memory. */
  int (*logits_draw)(const float* logits, int64_t n_rows, int64_t n_vocab, const MoedCudaRowDraw* draws,
                     int32_t* ids, float* values, void* stream);
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
