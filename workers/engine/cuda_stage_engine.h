// The CUDA backend of StageEngine: the stage's weights uploaded to one GPU in their GGUF block
// formats, the KV cache (paged, one F16 pool per attention layer) and the conv/delta-rule states in
// device memory, and every op of a step run by libmoed_cuda.so (kernels/cuda/api.h, loaded at run
// time). Only the token embedding (first stage; a row lookup) and the step's small index arrays
// are prepared on the host. The StateCache keeps the slot bookkeeping, as on the CPU.
//
// One step is one sequence of launches on the engine's stream, ended by one synchronisation when
// the result is copied back; a decode step replays a CUDA graph of its shape. Scratch buffers are
// sized for the largest step seen so far.
#ifndef MOED_WORKERS_ENGINE_CUDA_STAGE_ENGINE_H_
#define MOED_WORKERS_ENGINE_CUDA_STAGE_ENGINE_H_

#include <functional>
#include <map>
#include <memory>
#include <string_view>
#include <tuple>
#include <vector>

#include "kernels/cuda/loader.h"
#include "workers/engine/stage_engine.h"

namespace moed::engine {

class CudaStageEngine final : public StageEngine {
 public:
  // Errors: Unavailable when libmoed_cuda.so, the driver or options.device is missing;
  // FailedPrecondition for a library older than ABI 1.3 (F16 K/V); InvalidArgument for a weight
  // type the kernels do not take; ResourceExhausted when the weights and state do not fit the device.
  static absl::StatusOr<std::unique_ptr<StageEngine>> Create(const LoadedModel& model, StageWeights weights,
                                                            const EngineOptions& options);
  ~CudaStageEngine() override;

  absl::Status Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                       std::vector<float>* hidden_out, std::vector<float>* logits) override;
  absl::Status ForwardOnDevice(std::span<const SequenceStep> sequences, DeviceRows hidden_in, DeviceRows* hidden_out,
                               std::vector<float>* logits) override;
  absl::Status AcquireSlot(int slot) override;
  absl::StatusOr<SlotSnapshot> Snapshot(int slot) const override;
  absl::Status Restore(int slot, const SlotSnapshot& snapshot) override;

 private:
  struct Matrix {
    uint32_t type = 0;
    const void* data = nullptr;
    uint64_t row_bytes = 0;
    int64_t n_in = 0, n_out = 0;
  };
  struct Experts {
    uint32_t type = 0;
    const void* data = nullptr;
  };
  struct Layer {
    LayerKind kind;
    const float *attn_norm = nullptr, *post_norm = nullptr;
    Matrix wq, wk, wv, wo;
    const float *q_norm = nullptr, *k_norm = nullptr;
    // K/V pools in IEEE binary16 (MOED_CUDA_KV_F16): half the memory of float32, and the planner
    // sizes GPU stages at 2 bytes an element. Snapshots convert to and from float32.
    uint16_t *k_cache = nullptr, *v_cache = nullptr;
    Matrix w_mix, w_z, w_beta, w_alpha, w_out;
    const float *conv = nullptr, *dt_bias = nullptr, *ssm_a = nullptr, *ssm_norm = nullptr;
    float *conv_state = nullptr, *delta_state = nullptr;  // [max_slots][...]
    Matrix router;
    Experts gate, up, down;
    bool has_shared_expert = false;
    Matrix shared_gate, shared_up, shared_down, shared_gate_inp;
  };
  // Device scratch for steps of up to `tokens` tokens (see Reserve).
  struct Scratch {
    int64_t tokens = 0;
    float *x, *a, *m;
    float *qg, *k, *v, *q, *gate, *o;
    float *mix, *z, *beta_in, *alpha, *conv_out, *dq, *dk, *dv, *g, *beta, *delta_out, *y;
    float *router, *weights, *act, *sh_g, *sh_u, *sh_d, *sh_logit;
    void* gemm_scratch;  // F16 weights and activations of one gemm
    int64_t gemm_scratch_bytes;
    void* moe_scratch;  // moe_grouped's grouping and intermediate rows
    int64_t moe_scratch_bytes;
    float* attn_partials;  // split-K scratch of the attention kernel
    int64_t attn_partials_floats;
    int32_t *ids, *positions, *kv_rows, *token_slots, *seq_slots, *gather;
    float *head_in, *logits;
    int32_t* top_ids;  // logits_top's output for a block of head rows: [kHeadRows][kMaxTopLogits]
    float *top_values, *top_lse;
    MoedCudaRowDraw* row_draws;  // logits_draw's parameters for a block of head rows ...
    int32_t* draw_ids;           // ... and its output
    float* draw_values;
  };
  struct Group {  // consecutive sequences with the same token count, for the recurrent kernels
    int first_seq, n_seqs;
    int64_t first_token, n_tokens;
  };

  CudaStageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options,
                  std::unique_ptr<cuda::CudaLibrary> lib);
  // Forward with the input in host or device memory and the output to one of them.
  absl::Status Run(std::span<const SequenceStep> sequences, DeviceRows hidden_in, std::vector<float>* host_out,
                   DeviceRows* device_out, std::vector<float>* logits);
  absl::Status Init();
  absl::StatusOr<void*> Allocate(uint64_t bytes);
  absl::StatusOr<const void*> Upload(const void* src, uint64_t bytes);
  absl::StatusOr<Matrix> UploadMatrix(const cpu::WeightMatrix& w);
  absl::StatusOr<const float*> UploadVector(const std::vector<float>& v);
  absl::Status Reserve(int64_t tokens);
  // lib_->Check, plus (with MOED_CUDA_PROFILE set) the time since the previous call charged to
  // `what`, the stream synchronised at each call: a per-op profile printed when the engine ends.
  absl::Status Check(int rc, std::string_view what) const;

  // y = W x for n_tokens rows: gemm_mma for batches, cuBLAS for long prefills, else the GEMV in chunks.
  absl::Status MatMul(const Matrix& w, const float* x, int64_t n_tokens, float* y, std::string_view what);
  // api_.gemm with the given weights (`g`'s w or w_f16 fields) and the engine's scratch and precision.
  absl::Status Gemm(MoedCudaGemmArgs g, int64_t n_in, int64_t n_out, int64_t n_tokens, const float* x, float* y,
                    std::string_view what);
  absl::Status FullAttention(const Layer& l, int64_t n);
  absl::Status DeltaNet(const Layer& l, const std::vector<Group>& groups, int64_t n);
  absl::Status Moe(const Layer& l, int64_t n);
  // The layers over the step's n tokens, then (last stage) the head of the first head_rows wanted rows.
  absl::Status Compute(int64_t n, const std::vector<Group>& groups, int64_t head_rows);
  // Final norm and head of wanted rows [first, first + count) (count <= kHeadRows) into s_.logits.
  absl::Status Head(int64_t first, int64_t count);
  // The last stage's output of `n_wanted` head rows: full rows into *logits, and the rows of kTop
  // sequences (row_top[i]) summarised on the device into tops_ (top_n best each) and drawn from
  // into draws_ where draws[i] asks.
  absl::Status ReturnLogits(std::span<const SequenceStep> sequences, const std::vector<bool>& row_top,
                            const std::vector<MoedCudaRowDraw>& draws, int top_n, std::vector<float>* logits);
  // Runs `launches` through the graph captured for `key` (captured at its second use).
  using GraphKey = std::tuple<int64_t, int32_t, int64_t>;  // tokens, max position, wanted rows
  absl::Status Replay(const GraphKey& key, const std::function<absl::Status()>& launches);
  void DropGraphs();  // when the scratch buffers the graphs point into move

  std::unique_ptr<cuda::CudaLibrary> lib_;
  const MoedCudaApiV1& api_;
  int device_;
  CudaGemm gemm_mode_;
  void* stream_ = nullptr;
  std::vector<void*> allocations_;
  void* scratch_block_ = nullptr;
  Scratch s_;
  std::vector<Layer> layers_;
  Matrix output_;
  const float* output_norm_ = nullptr;
  int32_t* block_tables_ = nullptr;  // [max_slots][kv_blocks]
  int32_t max_position_ = 0;         // of the current step, rounded up to a multiple of 256, minus 1
  struct Graph {
    void* exec = nullptr;
    int eager_runs = 0;
  };
  std::map<GraphKey, Graph> graphs_;
  static constexpr int64_t kHeadRows = 64;  // logits rows per head block; decode graphs up to this batch
  uint64_t weight_bytes_ = 0, state_bytes_ = 0;
  // Batches of kMmaMinTokens+ rows use the tensor-core products (ABI 1.4) when the engine runs F16
  // products; dense matrices of prefills of kCublasMinTokens+ rows go to cuBLAS, which is faster
  // there (kernels/cuda/NOTES.md, fifth slice).
  static constexpr int64_t kMmaMinTokens = 8;
  static constexpr int64_t kMmaMinRows = 256;
  static constexpr int64_t kMmaNarrowRows = 2048;       // without a split K, matrices of at most
  static constexpr int64_t kMmaNarrowMinTokens = 32;    // this many rows take gemm_mma from this many tokens
  static constexpr int64_t kCublasMinTokens = 128;
  static constexpr int64_t kGemmMinTokens = 16;       // cuBLAS without the tensor-core products
  static constexpr int64_t kMoeGroupTokens = 2048;  // tokens per moe_grouped pass
  bool mma_ok_ = false;
  bool top_ok_ = false;   // the library summarises logits rows (ABI 1.5); else the host does
  bool draw_ok_ = false;  // the library draws from logits rows (ABI 1.6); else the host does
  bool mma_splits_k_ = false;  // Hopper: gemm_mma splits K of narrow products over a cluster

  bool gemm_ok_ = false;
  int32_t gemm_precision_ = MOED_CUDA_GEMM_F16;
  bool use_gemm_ = false;          // the current step is not a captured decode step
  int64_t gemm_w_halves_ = 0;      // the largest matrix that gemm dequantizes
  int64_t gemm_n_in_ = 0;          // the longest row it multiplies
  struct Profile;
  std::unique_ptr<Profile> profile_;  // null unless MOED_CUDA_PROFILE is set
  // Per slot: conv window and delta-rule state floats; per token: the elements of a K and a V row.
  int64_t conv_floats_ = 0, delta_floats_ = 0, kv_row_floats_k_ = 0, kv_row_floats_v_ = 0;
};

}  // namespace moed::engine

#endif  // MOED_WORKERS_ENGINE_CUDA_STAGE_ENGINE_H_
