#include "workers/engine/cuda_stage_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "kernels/base/half.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/base/strings.h"
#include "kernels/quants/ggml_type.h"

namespace moed::engine {
namespace {

uint32_t TypeId(GgmlType type) { return static_cast<uint32_t>(type); }

// K/V pool elements are binary16 (MOED_CUDA_KV_F16): the 2 bytes an element that the planner
// sizes GPU stages with (daemon/planner/planner.cc, TryGpus).
constexpr uint64_t kKvElementBytes = sizeof(uint16_t);

}  // namespace

struct CudaStageEngine::Profile {
  absl::Time last = absl::Now();
  std::map<std::string, std::pair<double, int64_t>, std::less<>> ops;  // seconds, calls
};

absl::Status CudaStageEngine::Check(int rc, std::string_view what) const {
  absl::Status s = lib_->Check(rc, what);
  if (profile_ == nullptr || !s.ok()) return s;
  (void)api_.stream_synchronize(stream_);
  const absl::Time now = absl::Now();
  auto it = profile_->ops.try_emplace(std::string(what), 0.0, 0).first;
  it->second.first += absl::ToDoubleSeconds(now - profile_->last);
  ++it->second.second;
  profile_->last = now;
  return s;
}

absl::StatusOr<std::unique_ptr<StageEngine>> CudaStageEngine::Create(const LoadedModel& model, StageWeights weights,
                                                                     const EngineOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaLibrary> lib, cuda::CudaLibrary::Load({}));
  if (!lib->HasAbi12() || !lib->HasF16Kv()) {
    return absl::FailedPreconditionError(
        absl::StrCat(lib->path(), " is older than ABI 1.3 (F16 K/V), which the CUDA stage engine needs"));
  }
  if (options.device < 0 || options.device >= lib->device_count()) {
    return absl::UnavailableError(
        absl::StrCat("CUDA device ", options.device, " does not exist (", lib->device_count(), " found)"));
  }
  std::unique_ptr<CudaStageEngine> engine(new CudaStageEngine(model, std::move(weights), options, std::move(lib)));
  RETURN_IF_ERROR(engine->Init());
  return std::unique_ptr<StageEngine>(std::move(engine));
}

CudaStageEngine::CudaStageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options,
                                 std::unique_ptr<cuda::CudaLibrary> lib)
    : StageEngine(model, std::move(weights), options.cache, /*host_state=*/false),
      lib_(std::move(lib)),
      api_(lib_->api()),
      device_(options.device),
      gemm_mode_(options.cuda_gemm) {
  conv_floats_ = (hp_.ssm_d_conv - 1) * hp_.ssm_conv_dim();
  delta_floats_ = hp_.ssm_dt_rank * hp_.ssm_head_v_dim() * hp_.ssm_d_state;
  kv_row_floats_k_ = hp_.n_head_kv * hp_.head_dim_k;
  kv_row_floats_v_ = hp_.n_head_kv * hp_.head_dim_v;
}

CudaStageEngine::~CudaStageEngine() {
  if (profile_ != nullptr) {
    double total = 0;
    for (const auto& [op, v] : profile_->ops) total += v.first;
    for (const auto& [op, v] : profile_->ops) {
      MOED_LOG(INFO) << absl::StrFormat("profile %-16s %9.3f ms %6.1f%% %8d calls %8.2f us/call", op, v.first * 1e3,
                                        100 * v.first / total, v.second, v.first * 1e6 / v.second);
    }
  }
  if (api_.set_device(device_) != 0) return;
  if (stream_ != nullptr) {
    (void)api_.stream_synchronize(stream_);
    (void)api_.stream_destroy(stream_);
  }
  DropGraphs();
  if (scratch_block_ != nullptr) (void)api_.free_device(scratch_block_);
  for (void* p : allocations_) (void)api_.free_device(p);
}

absl::StatusOr<void*> CudaStageEngine::Allocate(uint64_t bytes) {
  void* p = nullptr;
  RETURN_IF_ERROR(Check(api_.malloc_device(&p, std::max<uint64_t>(bytes, 1)), "cudaMalloc"));
  allocations_.push_back(p);
  return p;
}

absl::StatusOr<const void*> CudaStageEngine::Upload(const void* src, uint64_t bytes) {
  ASSIGN_OR_RETURN(void* p, Allocate(bytes));
  RETURN_IF_ERROR(Check(api_.copy_to_device(p, src, bytes), "weight upload"));
  weight_bytes_ += bytes;
  return p;
}

absl::StatusOr<CudaStageEngine::Matrix> CudaStageEngine::UploadMatrix(const cpu::WeightMatrix& w) {
  if (w.data == nullptr) return Matrix{};
  if (api_.gemv_supports_type(TypeId(w.type)) == 0) {
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend has no kernel for ",
                                                   Sv(GgmlTypeName(w.type)), " matrices"));
  }
  Matrix m{TypeId(w.type), nullptr, w.row_bytes, w.n_in, w.n_out};
  ASSIGN_OR_RETURN(m.data, Upload(w.data, w.row_bytes * static_cast<uint64_t>(w.n_out)));
  return m;
}

absl::StatusOr<const float*> CudaStageEngine::UploadVector(const std::vector<float>& v) {
  if (v.empty()) return nullptr;
  ASSIGN_OR_RETURN(const void* p, Upload(v.data(), v.size() * sizeof(float)));
  return static_cast<const float*>(p);
}

absl::Status CudaStageEngine::Init() {
  if (hp_.head_dim_k != hp_.head_dim_v) {
    return absl::InvalidArgumentError("the CUDA backend needs equal key and value head sizes (the output gate has the query's shape)");
  }
  RETURN_IF_ERROR(Check(api_.set_device(device_), "cudaSetDevice"));
  RETURN_IF_ERROR(Check(api_.stream_create(&stream_), "cudaStreamCreate"));
  if (std::getenv("MOED_CUDA_PROFILE") != nullptr) profile_ = std::make_unique<Profile>();

  // Fail before uploading anything when the stage cannot fit.
  uint64_t need = weights_.output.row_bytes * static_cast<uint64_t>(weights_.output.n_out);
  const StateCacheOptions& cache = cache_->options();
  const uint64_t slots = static_cast<uint64_t>(cache.max_slots);
  for (const LayerWeights& w : weights_.layers) {
    for (const cpu::WeightMatrix* m : {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_mix, &w.w_z, &w.w_beta, &w.w_alpha,
                                       &w.w_out, &w.router, &w.shared_gate, &w.shared_up, &w.shared_down}) {
      need += m->row_bytes * static_cast<uint64_t>(m->n_out);
    }
    for (const ExpertWeights* e : {&w.gate_exps, &w.up_exps, &w.down_exps}) {
      need += static_cast<uint64_t>(RowBytes(e->type, e->n_in)) * e->n_out * hp_.n_expert;
    }
    need += w.kind == LayerKind::kFullAttention
                ? static_cast<uint64_t>(cache.kv_blocks * cache.kv_block_size) * (kv_row_floats_k_ + kv_row_floats_v_) *
                      kKvElementBytes
                : slots * (conv_floats_ + delta_floats_) * 4;
  }
  size_t free_bytes = 0, total_bytes = 0;
  RETURN_IF_ERROR(Check(api_.memory_info(&free_bytes, &total_bytes), "cudaMemGetInfo"));
  if (need > free_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "the stage needs ", need, " bytes of GPU memory for weights and state, but device ", device_, " has ",
        free_bytes, " free of ", total_bytes));
  }

  for (const LayerWeights& w : weights_.layers) {
    Layer l;
    l.kind = w.kind;
    ASSIGN_OR_RETURN(l.attn_norm, UploadVector(w.attn_norm));
    ASSIGN_OR_RETURN(l.post_norm, UploadVector(w.post_attention_norm));
    if (w.kind == LayerKind::kFullAttention) {
      ASSIGN_OR_RETURN(l.wq, UploadMatrix(w.wq));
      ASSIGN_OR_RETURN(l.wk, UploadMatrix(w.wk));
      ASSIGN_OR_RETURN(l.wv, UploadMatrix(w.wv));
      ASSIGN_OR_RETURN(l.wo, UploadMatrix(w.wo));
      ASSIGN_OR_RETURN(l.q_norm, UploadVector(w.q_norm));
      ASSIGN_OR_RETURN(l.k_norm, UploadVector(w.k_norm));
      const uint64_t rows = static_cast<uint64_t>(cache.kv_blocks * cache.kv_block_size);
      ASSIGN_OR_RETURN(void* k, Allocate(rows * kv_row_floats_k_ * kKvElementBytes));
      ASSIGN_OR_RETURN(void* v, Allocate(rows * kv_row_floats_v_ * kKvElementBytes));
      l.k_cache = static_cast<uint16_t*>(k), l.v_cache = static_cast<uint16_t*>(v);
      state_bytes_ += rows * (kv_row_floats_k_ + kv_row_floats_v_) * kKvElementBytes;
    } else {
      ASSIGN_OR_RETURN(l.w_mix, UploadMatrix(w.w_mix));
      ASSIGN_OR_RETURN(l.w_z, UploadMatrix(w.w_z));
      ASSIGN_OR_RETURN(l.w_beta, UploadMatrix(w.w_beta));
      ASSIGN_OR_RETURN(l.w_alpha, UploadMatrix(w.w_alpha));
      ASSIGN_OR_RETURN(l.w_out, UploadMatrix(w.w_out));
      ASSIGN_OR_RETURN(l.conv, UploadVector(w.conv));
      ASSIGN_OR_RETURN(l.dt_bias, UploadVector(w.dt_bias));
      ASSIGN_OR_RETURN(l.ssm_a, UploadVector(w.ssm_a));
      ASSIGN_OR_RETURN(l.ssm_norm, UploadVector(w.ssm_norm));
      ASSIGN_OR_RETURN(void* c, Allocate(slots * conv_floats_ * sizeof(float)));
      ASSIGN_OR_RETURN(void* d, Allocate(slots * delta_floats_ * sizeof(float)));
      l.conv_state = static_cast<float*>(c), l.delta_state = static_cast<float*>(d);
      state_bytes_ += slots * (conv_floats_ + delta_floats_) * sizeof(float);
    }
    ASSIGN_OR_RETURN(l.router, UploadMatrix(w.router));
    for (auto [src, dst] : {std::pair{&w.gate_exps, &l.gate}, std::pair{&w.up_exps, &l.up},
                            std::pair{&w.down_exps, &l.down}}) {
      if (api_.moe_supports_type(TypeId(src->type)) == 0) {
        return absl::InvalidArgumentError(absl::StrCat("the CUDA backend has no MoE kernel for ",
                                                       Sv(GgmlTypeName(src->type)), " experts"));
      }
      dst->type = TypeId(src->type);
      const uint64_t bytes = static_cast<uint64_t>(RowBytes(src->type, src->n_in)) * src->n_out * hp_.n_expert;
      ASSIGN_OR_RETURN(dst->data, Upload(src->data, bytes));
    }
    l.has_shared_expert = w.has_shared_expert;
    if (w.has_shared_expert) {
      ASSIGN_OR_RETURN(l.shared_gate, UploadMatrix(w.shared_gate));
      ASSIGN_OR_RETURN(l.shared_up, UploadMatrix(w.shared_up));
      ASSIGN_OR_RETURN(l.shared_down, UploadMatrix(w.shared_down));
      // The shared expert's gate vector is a one-row F32 matrix (one gemv gives every token's logit).
      cpu::WeightMatrix inp{GgmlType::kF32, reinterpret_cast<const uint8_t*>(w.shared_gate_inp.data()),
                            hp_.n_embd, 1, static_cast<uint64_t>(hp_.n_embd) * sizeof(float)};
      ASSIGN_OR_RETURN(l.shared_gate_inp, UploadMatrix(inp));
    }
    layers_.push_back(l);
  }
  if (is_last()) {
    ASSIGN_OR_RETURN(output_, UploadMatrix(weights_.output));
    ASSIGN_OR_RETURN(output_norm_, UploadVector(weights_.output_norm));
  }
  // Prefill GEMMs (cuBLAS): the largest matrix a gemm dequantizes and its longest row.
  gemm_ok_ = api_.gemm_available() == 1 && gemm_mode_ != CudaGemm::kOff;
  gemm_precision_ = gemm_mode_ == CudaGemm::kF32 ? MOED_CUDA_GEMM_F32 : MOED_CUDA_GEMM_F16;
  for (const Layer& l : layers_) {
    for (const Matrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_mix, &l.w_z, &l.w_beta, &l.w_alpha, &l.w_out,
                            &l.shared_gate, &l.shared_up, &l.shared_down}) {
      gemm_w_halves_ = std::max(gemm_w_halves_, m->n_in * m->n_out);
      gemm_n_in_ = std::max(gemm_n_in_, m->n_in);
    }
  }
  top_ok_ = lib_->HasLogitsTop();
  draw_ok_ = lib_->HasLogitsDraw();
  // The tensor-core products round to F16 like the F16 gemm: only where the engine runs F16.
  mma_ok_ = lib_->HasMma() && gemm_mode_ == CudaGemm::kF16 && hp_.n_expert <= 1024;
  MoedCudaDeviceInfo info{};
  RETURN_IF_ERROR(Check(api_.device_info(device_, &info), "device_info"));
  mma_splits_k_ = info.compute_major >= 9;
  MOED_LOG(INFO) << "batch matrix products: "
                 << (mma_ok_ ? "tensor cores on the quantized blocks (F16), experts grouped on the device" : "GEMV")
                 << "; long prefills: "
                 << (!gemm_ok_ ? "GEMV (cuBLAS absent or off)"
                               : gemm_precision_ == MOED_CUDA_GEMM_F16 ? "cuBLAS GEMM, F16" : "cuBLAS GEMM, float32");
  ASSIGN_OR_RETURN(void* tables, Allocate(slots * cache.kv_blocks * sizeof(int32_t)));
  block_tables_ = static_cast<int32_t*>(tables);
  RETURN_IF_ERROR(Reserve(64));
  MOED_LOG(INFO) << "CUDA stage on device " << device_ << ": layers [" << weights_.first_layer << ", "
                 << weights_.last_layer << "), " << weight_bytes_ / (1 << 20) << " MiB of weights, "
                 << state_bytes_ / (1 << 20) << " MiB of state";
  return absl::OkStatus();
}

absl::Status CudaStageEngine::Reserve(int64_t tokens) {
  if (tokens <= s_.tokens) return absl::OkStatus();
  tokens = std::max<int64_t>(tokens, 2 * s_.tokens);
  const int64_t N = tokens, H = hp_.n_embd, K = hp_.n_expert_used;
  const int64_t head_rows = std::min(N, kHeadRows);
  // Carve every buffer out of one allocation; 64-float (256-byte) alignment keeps vector loads legal.
  uint64_t offset = 0;
  std::vector<std::pair<void**, int64_t>> plan;
  auto add = [&](auto** p, int64_t elems) { plan.push_back({reinterpret_cast<void**>(p), elems}); };
  add(&s_.x, N * H), add(&s_.a, N * H), add(&s_.m, N * H);
  add(&s_.qg, N * 2 * hp_.n_head * hp_.head_dim_k), add(&s_.k, N * kv_row_floats_k_), add(&s_.v, N * kv_row_floats_v_);
  add(&s_.q, N * hp_.n_head * hp_.head_dim_k), add(&s_.gate, N * hp_.n_head * hp_.head_dim_k);
  add(&s_.o, N * hp_.n_head * hp_.head_dim_v);
  const int64_t conv_dim = hp_.ssm_conv_dim(), inner = hp_.ssm_d_inner, hv = hp_.ssm_dt_rank;
  add(&s_.mix, N * conv_dim), add(&s_.z, N * inner), add(&s_.beta_in, N * hv), add(&s_.alpha, N * hv);
  add(&s_.conv_out, N * conv_dim), add(&s_.dq, N * hp_.ssm_key_dim()), add(&s_.dk, N * hp_.ssm_key_dim());
  add(&s_.dv, N * inner), add(&s_.g, N * hv), add(&s_.beta, N * hv), add(&s_.delta_out, N * inner), add(&s_.y, N * inner);
  add(&s_.router, N * hp_.n_expert), add(&s_.weights, N * K);
  add(&s_.act, std::min<int64_t>(N, MOED_CUDA_MAX_MOE_TOKENS) * K * hp_.n_ff_exp);
  add(&s_.sh_g, N * hp_.n_ff_shexp), add(&s_.sh_u, N * hp_.n_ff_shexp), add(&s_.sh_d, N * H), add(&s_.sh_logit, N);
  uint64_t moe_bytes = 0;
  if (mma_ok_ && N >= kMmaMinTokens && !layers_.empty()) {
    RETURN_IF_ERROR(Check(api_.moe_grouped_scratch_bytes(std::min(N, kMoeGroupTokens), static_cast<int32_t>(K), H,
                                                         hp_.n_ff_exp, hp_.n_expert, &moe_bytes),
                          "moe_grouped scratch"));
  }
  s_.moe_scratch_bytes = static_cast<int64_t>(moe_bytes);
  add(&s_.moe_scratch, s_.moe_scratch_bytes / 4 + 1);
  // gemm scratch in floats: F16 weights of the largest matrix and F16 rows of the longest input.
  s_.gemm_scratch_bytes =
      gemm_ok_ && N >= kGemmMinTokens
          ? std::max(2 * (gemm_w_halves_ + N * std::max({gemm_n_in_, H, hp_.n_ff_exp})), 4 * gemm_w_halves_) + 512
          : 0;
  add(&s_.gemm_scratch, s_.gemm_scratch_bytes / 4 + 1);
  // Split-K partials for decode-sized steps (the kernel does not split larger ones).
  s_.attn_partials_floats = std::min<int64_t>(N, 64) * hp_.n_head * 32 * (hp_.head_dim_v + 2);
  add(&s_.attn_partials, s_.attn_partials_floats);
  add(&s_.ids, N * K), add(&s_.positions, N), add(&s_.kv_rows, N), add(&s_.token_slots, N);
  add(&s_.seq_slots, N), add(&s_.gather, N);
  add(&s_.head_in, head_rows * H), add(&s_.logits, is_last() ? head_rows * n_vocab_ : 0);
  add(&s_.top_ids, head_rows * cpu::kMaxTopLogits), add(&s_.top_values, head_rows * cpu::kMaxTopLogits);
  add(&s_.top_lse, head_rows);
  add(&s_.row_draws, head_rows * static_cast<int64_t>(sizeof(MoedCudaRowDraw) / 4));
  add(&s_.draw_ids, head_rows), add(&s_.draw_values, head_rows);
  for (auto& [p, elems] : plan) offset += (static_cast<uint64_t>(std::max<int64_t>(elems, 1)) * 4 + 255) / 256 * 256;
  if (scratch_block_ != nullptr) {
    RETURN_IF_ERROR(Check(api_.stream_synchronize(stream_), "stream sync"));
    DropGraphs();
    RETURN_IF_ERROR(Check(api_.free_device(scratch_block_), "cudaFree"));
    scratch_block_ = nullptr;
  }
  RETURN_IF_ERROR(Check(api_.malloc_device(&scratch_block_, offset), "cudaMalloc (step scratch)"));
  auto* base = static_cast<uint8_t*>(scratch_block_);
  offset = 0;
  for (auto& [p, elems] : plan) {
    *p = base + offset;
    offset += (static_cast<uint64_t>(std::max<int64_t>(elems, 1)) * 4 + 255) / 256 * 256;
  }
  s_.tokens = N;
  return absl::OkStatus();
}

absl::Status CudaStageEngine::AcquireSlot(int slot) {
  RETURN_IF_ERROR(cache_->AcquireSlot(slot));
  RETURN_IF_ERROR(Check(api_.set_device(device_), "cudaSetDevice"));
  // A new sequence starts from zero recurrent state; KV rows are written before they are read.
  for (const Layer& l : layers_) {
    if (l.kind != LayerKind::kLinearAttention) continue;
    RETURN_IF_ERROR(Check(api_.memset_device(l.conv_state + slot * conv_floats_, 0, conv_floats_ * 4), "memset"));
    RETURN_IF_ERROR(Check(api_.memset_device(l.delta_state + slot * delta_floats_, 0, delta_floats_ * 4), "memset"));
  }
  // The memsets run on the legacy default stream, which the engine's non-blocking stream does not
  // wait for: finish them before the slot's first step.
  return Check(api_.synchronize(), "memset");
}

absl::StatusOr<SlotSnapshot> CudaStageEngine::Snapshot(int slot) const {
  RETURN_IF_ERROR(cache_->CheckSlot(slot));
  RETURN_IF_ERROR(Check(api_.set_device(device_), "cudaSetDevice"));
  RETURN_IF_ERROR(Check(api_.stream_synchronize(stream_), "stream sync"));
  SlotSnapshot snap;
  snap.n_past = cache_->n_past(slot);
  snap.recurrent.resize(layers_.size());
  snap.keys.resize(layers_.size());
  snap.values.resize(layers_.size());
  const int64_t bs = cache_->options().kv_block_size;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    if (l.kind == LayerKind::kLinearAttention) {
      std::vector<float>& r = snap.recurrent[i];
      r.resize(conv_floats_ + delta_floats_);
      RETURN_IF_ERROR(Check(api_.copy_to_host(r.data(), l.conv_state + slot * conv_floats_, conv_floats_ * 4), "copy"));
      RETURN_IF_ERROR(Check(api_.copy_to_host(r.data() + conv_floats_, l.delta_state + slot * delta_floats_,
                                              delta_floats_ * 4), "copy"));
      continue;
    }
    // The slot's F16 rows, gathered block by block, widened to the snapshot's float32 (the layout
    // every backend restores; exact).
    const std::vector<int32_t>& blocks = cache_->blocks(slot);
    for (auto [pool, row_elems, out] : {std::tuple{l.k_cache, kv_row_floats_k_, &snap.keys[i]},
                                        std::tuple{l.v_cache, kv_row_floats_v_, &snap.values[i]}}) {
      std::vector<uint16_t> halves(snap.n_past * row_elems);
      for (int64_t p0 = 0; p0 < snap.n_past; p0 += bs) {
        const int64_t rows = std::min(bs, snap.n_past - p0), row0 = int64_t{blocks[p0 / bs]} * bs;
        RETURN_IF_ERROR(Check(api_.copy_to_host(halves.data() + p0 * row_elems, pool + row0 * row_elems,
                                                rows * row_elems * kKvElementBytes), "copy"));
      }
      out->resize(halves.size());
      std::transform(halves.begin(), halves.end(), out->begin(), Fp16ToFp32);
    }
  }
  return snap;
}

absl::Status CudaStageEngine::Restore(int slot, const SlotSnapshot& snap) {
  RETURN_IF_ERROR(cache_->CheckSlot(slot));
  if (snap.recurrent.size() != layers_.size() || snap.keys.size() != layers_.size() ||
      snap.values.size() != layers_.size()) {
    return absl::InvalidArgumentError("snapshot was taken from a stage with other layers");
  }
  for (size_t i = 0; i < layers_.size(); ++i) {
    const bool ok = layers_[i].kind == LayerKind::kLinearAttention
                        ? static_cast<int64_t>(snap.recurrent[i].size()) == conv_floats_ + delta_floats_
                        : static_cast<int64_t>(snap.keys[i].size()) == snap.n_past * kv_row_floats_k_ &&
                              static_cast<int64_t>(snap.values[i].size()) == snap.n_past * kv_row_floats_v_;
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("snapshot layer ", i, " has the wrong size"));
  }
  RETURN_IF_ERROR(cache_->ResetTo(slot, snap.n_past));
  RETURN_IF_ERROR(Check(api_.set_device(device_), "cudaSetDevice"));
  RETURN_IF_ERROR(Check(api_.stream_synchronize(stream_), "stream sync"));
  const int64_t bs = cache_->options().kv_block_size;
  for (size_t i = 0; i < layers_.size(); ++i) {
    const Layer& l = layers_[i];
    if (l.kind == LayerKind::kLinearAttention) {
      const float* r = snap.recurrent[i].data();
      RETURN_IF_ERROR(Check(api_.copy_to_device(l.conv_state + slot * conv_floats_, r, conv_floats_ * 4), "copy"));
      RETURN_IF_ERROR(Check(api_.copy_to_device(l.delta_state + slot * delta_floats_, r + conv_floats_,
                                                delta_floats_ * 4), "copy"));
      continue;
    }
    // float32 rows (from any backend) rounded to the pools' F16, to nearest even as the kernels do.
    const std::vector<int32_t>& blocks = cache_->blocks(slot);
    for (auto [pool, row_elems, in] : {std::tuple{l.k_cache, kv_row_floats_k_, &snap.keys[i]},
                                       std::tuple{l.v_cache, kv_row_floats_v_, &snap.values[i]}}) {
      std::vector<uint16_t> halves(in->size());
      std::transform(in->begin(), in->end(), halves.begin(), Fp32ToFp16);
      for (int64_t p0 = 0; p0 < snap.n_past; p0 += bs) {
        const int64_t rows = std::min(bs, snap.n_past - p0), row0 = int64_t{blocks[p0 / bs]} * bs;
        RETURN_IF_ERROR(Check(api_.copy_to_device(pool + row0 * row_elems, halves.data() + p0 * row_elems,
                                                  rows * row_elems * kKvElementBytes), "copy"));
      }
    }
  }
  // As in AcquireSlot: the copies must land before the engine's stream reads the state.
  return Check(api_.synchronize(), "copy");
}

absl::Status CudaStageEngine::Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                                      std::vector<float>* hidden_out, std::vector<float>* logits) {
  return Run(sequences, {hidden_in.data(), static_cast<int64_t>(hidden_in.size())}, hidden_out, nullptr, logits);
}

absl::Status CudaStageEngine::ForwardOnDevice(std::span<const SequenceStep> sequences, DeviceRows hidden_in,
                                              DeviceRows* hidden_out, std::vector<float>* logits) {
  return Run(sequences, hidden_in, nullptr, hidden_out, logits);
}

absl::Status CudaStageEngine::Run(std::span<const SequenceStep> sequences, DeviceRows hidden_in,
                                  std::vector<float>* host_out, DeviceRows* device_out, std::vector<float>* logits) {
  std::vector<Rows> rows;
  RETURN_IF_ERROR(BeginStep(sequences, hidden_in.floats, &rows));
  RETURN_IF_ERROR(Check(api_.set_device(device_), "cudaSetDevice"));
  const int64_t n = rows.back().begin + rows.back().count, H = hp_.n_embd;
  RETURN_IF_ERROR(Reserve(n));

  // The step's index arrays: each token's position, slot and KV cache row; each sequence's slot.
  const int64_t bs = cache_->options().kv_block_size, table_stride = cache_->options().kv_blocks;
  std::vector<int32_t> positions(n), kv_rows(n), token_slots(n), seq_slots;
  max_position_ = 0;
  std::vector<Group> groups;
  for (size_t i = 0; i < rows.size(); ++i) {
    const Rows& r = rows[i];
    const std::vector<int32_t>& blocks = cache_->blocks(r.slot);
    for (int64_t j = 0; j < r.count; ++j) {
      const int64_t pos = r.first_pos + j;
      positions[r.begin + j] = static_cast<int32_t>(pos);
      max_position_ = std::max(max_position_, static_cast<int32_t>(pos));
      kv_rows[r.begin + j] = cache_->has_kv() ? static_cast<int32_t>(blocks[pos / bs] * bs + pos % bs) : 0;
      token_slots[r.begin + j] = r.slot;
    }
    seq_slots.push_back(r.slot);
    if (!groups.empty() && groups.back().n_tokens == r.count) {
      ++groups.back().n_seqs;
    } else {
      groups.push_back({static_cast<int>(i), 1, r.begin, r.count});
    }
    if (cache_->has_kv()) {
      RETURN_IF_ERROR(Check(api_.copy_to_device_async(block_tables_ + r.slot * table_stride, blocks.data(),
                                                      blocks.size() * sizeof(int32_t), stream_), "copy"));
    }
  }
  // Rounded up so that decode steps share a graph for 256 positions (the attention kernel's key
  // split depends on it; over-estimating it is harmless).
  max_position_ = (max_position_ / 256 + 1) * 256 - 1;
  auto upload = [&](void* dst, const void* src, size_t bytes) {
    return Check(api_.copy_to_device_async(dst, src, bytes, stream_), "step upload");
  };
  RETURN_IF_ERROR(upload(s_.positions, positions.data(), n * 4));
  RETURN_IF_ERROR(upload(s_.kv_rows, kv_rows.data(), n * 4));
  RETURN_IF_ERROR(upload(s_.token_slots, token_slots.data(), n * 4));
  RETURN_IF_ERROR(upload(s_.seq_slots, seq_slots.data(), seq_slots.size() * 4));
  if (is_first()) {
    std::vector<float> x(n * H);
    int64_t r = 0;
    for (const SequenceStep& s : sequences) {
      for (int32_t id : s.tokens) RETURN_IF_ERROR(cpu::GetRow(weights_.token_embd, id, x.data() + (r++) * H));
    }
    RETURN_IF_ERROR(upload(s_.x, x.data(), x.size() * sizeof(float)));
  } else {
    // Host or device memory alike: the copy's direction follows from the pointer.
    RETURN_IF_ERROR(upload(s_.x, hidden_in.data, hidden_in.floats * sizeof(float)));
  }

  // The rows whose logits are wanted (the last stage only), in the order they are returned, which
  // of them are summarised (kTop), and their draws (skip: none).
  std::vector<int32_t> wanted;
  std::vector<bool> row_top;
  std::vector<MoedCudaRowDraw> row_draws;
  int top_n = 1;
  for (size_t i = 0; i < rows.size() && is_last(); ++i) {
    const SequenceStep& s = sequences[i];
    int64_t begin = rows[i].begin, count = rows[i].count;
    if (s.logits == LogitsWanted::kNone) continue;
    if (s.logits != LogitsWanted::kAll) begin += count - 1, count = 1;
    if (s.logits == LogitsWanted::kTop) top_n = std::max(top_n, s.top_n);
    MoedCudaRowDraw draw{};
    draw.skip = 1;
    if (s.draw.has_value()) draw = {s.draw->inv_temperature, s.draw->log_min_p, s.draw->u, 0, 0};
    for (int64_t t = begin; t < begin + count; ++t) {
      wanted.push_back(static_cast<int32_t>(t));
      row_top.push_back(s.logits == LogitsWanted::kTop);
      row_draws.push_back(draw);
    }
  }
  if (!wanted.empty()) RETURN_IF_ERROR(upload(s_.gather, wanted.data(), wanted.size() * 4));
  const int64_t n_wanted = static_cast<int64_t>(wanted.size());

  // A decode step (one token per sequence) replays a CUDA graph captured for its shape: the
  // layers and the head are hundreds of small launches whose CPU cost would otherwise dominate.
  const bool decode = groups.size() == 1 && groups[0].n_tokens == 1;
  use_gemm_ = gemm_ok_ && !decode;
  if (decode && n <= kHeadRows && profile_ == nullptr) {
    RETURN_IF_ERROR(Replay(GraphKey{n, max_position_, n_wanted}, [&] { return Compute(n, groups, n_wanted); }));
  } else {
    RETURN_IF_ERROR(Compute(n, groups, std::min(n_wanted, kHeadRows)));
  }
  for (const Rows& r : rows) cache_->Advance(r.slot, r.count);

  if (!is_last()) {
    if (device_out != nullptr) {
      *device_out = {s_.x, n * H};
    } else {
      host_out->resize(n * H);
      RETURN_IF_ERROR(Check(api_.copy_to_host_async(host_out->data(), s_.x, n * H * sizeof(float), stream_), "hidden copy"));
    }
    return Check(api_.stream_synchronize(stream_), "step");
  }
  return ReturnLogits(sequences, row_top, row_draws, top_n, logits);
}

absl::Status CudaStageEngine::ReturnLogits(std::span<const SequenceStep> sequences, const std::vector<bool>& row_top,
                                           const std::vector<MoedCudaRowDraw>& draws, int top_n,
                                           std::vector<float>* logits) {
  const auto n_wanted = static_cast<int64_t>(row_top.size());
  const bool any_draw =
      std::any_of(draws.begin(), draws.end(), [](const MoedCudaRowDraw& d) { return d.skip == 0; });
  // Without logits_top (a library older than 1.5), or a draw without logits_draw (older than
  // 1.6), every row crosses and the host summarises.
  const bool on_device = top_ok_ && (draw_ok_ || !any_draw) && top_n <= n_vocab_ &&
                         std::find(row_top.begin(), row_top.end(), true) != row_top.end();
  const int64_t n_full = on_device ? std::count(row_top.begin(), row_top.end(), false) : n_wanted;
  logits->resize(n_full * n_vocab_);
  std::vector<int32_t> top_ids(on_device ? n_wanted * top_n : 0);
  std::vector<float> top_values(top_ids.size()), top_lse(on_device ? n_wanted : 0);
  std::vector<int32_t> draw_ids(on_device && any_draw ? n_wanted : 0);
  std::vector<float> draw_values(draw_ids.size());
  int64_t out = 0;  // full rows copied so far
  auto to_host = [&](void* dst, const void* src, int64_t bytes) {
    return Check(api_.copy_to_host_async(dst, src, bytes, stream_), "logits copy");
  };
  for (int64_t c = 0; c < n_wanted; c += kHeadRows) {
    const int64_t m = std::min(kHeadRows, n_wanted - c);
    if (c > 0) RETURN_IF_ERROR(Head(c, m));  // rows past the first block (long kAll prefills)
    if (on_device) {
      RETURN_IF_ERROR(Check(api_.logits_top(s_.logits, m, n_vocab_, top_n, s_.top_ids, s_.top_values, s_.top_lse,
                                            stream_), "logits_top"));
      RETURN_IF_ERROR(to_host(top_ids.data() + c * top_n, s_.top_ids, m * top_n * 4));
      RETURN_IF_ERROR(to_host(top_values.data() + c * top_n, s_.top_values, m * top_n * 4));
      RETURN_IF_ERROR(to_host(top_lse.data() + c, s_.top_lse, m * 4));
      if (any_draw) {
        RETURN_IF_ERROR(Check(api_.copy_to_device_async(s_.row_draws, draws.data() + c,
                                                        m * sizeof(MoedCudaRowDraw), stream_), "draw upload"));
        RETURN_IF_ERROR(Check(api_.logits_draw(s_.logits, m, n_vocab_, s_.row_draws, s_.draw_ids, s_.draw_values,
                                               stream_), "logits_draw"));
        RETURN_IF_ERROR(to_host(draw_ids.data() + c, s_.draw_ids, m * 4));
        RETURN_IF_ERROR(to_host(draw_values.data() + c, s_.draw_values, m * 4));
      }
    }
    // The full rows, in runs of consecutive ones.
    for (int64_t j = 0; j < m;) {
      if (on_device && row_top[c + j]) {
        ++j;
        continue;
      }
      int64_t run = 1;
      while (j + run < m && !(on_device && row_top[c + j + run])) ++run;
      RETURN_IF_ERROR(to_host(logits->data() + out * n_vocab_, s_.logits + j * n_vocab_, run * n_vocab_ * sizeof(float)));
      out += run, j += run;
    }
  }
  RETURN_IF_ERROR(Check(api_.stream_synchronize(stream_), "step"));
  if (!on_device) {
    SummariseTops(sequences, logits);
    return absl::OkStatus();
  }
  for (int64_t i = 0; i < n_wanted; ++i) {
    if (!row_top[i]) continue;
    cpu::TopLogits t;
    t.log_sum_exp = top_lse[i];
    for (int j = 0; j < top_n; ++j) t.best.emplace_back(top_ids[i * top_n + j], top_values[i * top_n + j]);
    tops_.push_back(std::move(t));
    draws_.push_back(draws[i].skip == 0 ? cpu::Drawn{draw_ids[i], draw_values[i]} : cpu::Drawn{});
  }
  // Every kTop sequence got the largest top_n of the step: trim to what each asked for.
  size_t k = 0;
  for (const SequenceStep& s : sequences) {
    if (s.logits == LogitsWanted::kTop) tops_[k++].best.resize(static_cast<size_t>(s.top_n));
  }
  return absl::OkStatus();
}

absl::Status CudaStageEngine::Compute(int64_t n, const std::vector<Group>& groups, int64_t head_rows) {
  const int64_t H = hp_.n_embd;
  for (const Layer& l : layers_) {
    RETURN_IF_ERROR(Check(api_.rms_norm(s_.x, l.attn_norm, H, n, hp_.rms_eps, s_.a, stream_), "rms_norm"));
    if (l.kind == LayerKind::kFullAttention) {
      RETURN_IF_ERROR(FullAttention(l, n));
    } else {
      RETURN_IF_ERROR(DeltaNet(l, groups, n));
    }
    RETURN_IF_ERROR(Check(api_.add_rows(s_.x, s_.m, nullptr, H, n, stream_), "add_rows"));
    RETURN_IF_ERROR(Check(api_.rms_norm(s_.x, l.post_norm, H, n, hp_.rms_eps, s_.a, stream_), "rms_norm"));
    RETURN_IF_ERROR(Moe(l, n));
  }
  return head_rows > 0 ? Head(0, head_rows) : absl::OkStatus();
}

absl::Status CudaStageEngine::Head(int64_t first, int64_t count) {
  // Only the wanted rows (s_.gather[first, first + count)) go through the final norm and the head.
  const int64_t H = hp_.n_embd;
  RETURN_IF_ERROR(Check(api_.gather_rows(s_.x, s_.gather + first, count, H, s_.head_in, stream_), "gather_rows"));
  RETURN_IF_ERROR(Check(api_.rms_norm(s_.head_in, output_norm_, H, count, hp_.rms_eps, s_.head_in, stream_), "rms_norm"));
  return MatMul(output_, s_.head_in, count, s_.logits, "gemv head");
}

absl::Status CudaStageEngine::Replay(const GraphKey& key, const std::function<absl::Status()>& launches) {
  Graph& g = graphs_[key];
  if (g.exec == nullptr && g.eager_runs++ == 0) {
    return launches();  // the first time eagerly: one-time set-up (e.g. lookup tables) stays out of the graph
  }
  if (g.exec == nullptr) {
    RETURN_IF_ERROR(Check(api_.graph_capture_begin(stream_), "graph capture"));
    const absl::Status s = launches();
    const int rc = api_.graph_capture_end(stream_, &g.exec);  // ends the capture even after a failure
    RETURN_IF_ERROR(s);
    RETURN_IF_ERROR(Check(rc, "graph capture"));
  }
  return Check(api_.graph_launch(g.exec, stream_), "graph launch");
}

void CudaStageEngine::DropGraphs() {
  for (auto& [key, g] : graphs_) {
    if (g.exec != nullptr) (void)api_.graph_destroy(g.exec);
  }
  graphs_.clear();
}

absl::Status CudaStageEngine::Gemm(MoedCudaGemmArgs g, int64_t n_in, int64_t n_out, int64_t n_tokens, const float* x,
                                   float* y, std::string_view what) {
  g.n_in = n_in, g.n_out = n_out, g.n_tokens = n_tokens;
  g.x = x, g.y = y;
  g.scratch = s_.gemm_scratch, g.scratch_bytes = s_.gemm_scratch_bytes;
  g.precision = gemm_precision_;
  return Check(api_.gemm(&g, stream_), what);
}

absl::Status CudaStageEngine::MatMul(const Matrix& w, const float* x, int64_t n_tokens, float* y,
                                     std::string_view what) {
  // F32 matrices (the router, whose choices F16 rounding could flip) are never rounded to F16:
  // float32 cuBLAS in prefills, else the exact GEMV.
  const bool f32 = w.type == TypeId(GgmlType::kF32);
  const bool cublas = use_gemm_ && n_tokens >= kGemmMinTokens && w.n_in % 32 == 0 && w.n_in * w.n_out <= gemm_w_halves_;
  // Tensor cores for batches, on matrices with rows enough to spread over the GPU: a narrow one (the
  // DeltaNet's 32-row beta and alpha projections) would be a single CTA walking all of K. gemm_mma
  // runs ceil(n_out / 64) x ceil(n_tokens / 32) CTAs; before Hopper, where it cannot split K over
  // a cluster, up to 2,048 rows that leaves most SMs idle below 32 tokens, and the GEMV measured
  // faster there (kernels/cuda/NOTES.md, sixth and seventh slices).
  const bool wide_enough =
      w.n_out >= kMmaMinRows && (mma_splits_k_ || w.n_out > kMmaNarrowRows || n_tokens >= kMmaNarrowMinTokens);
  if (mma_ok_ && !f32 && n_tokens >= kMmaMinTokens && w.n_in % 32 == 0 && wide_enough &&
      !(cublas && n_tokens >= kCublasMinTokens)) {
    MoedCudaGemvArgs a{};
    a.ggml_type = w.type;
    a.w = w.data;
    a.row_bytes = w.row_bytes;
    a.n_in = w.n_in, a.n_out = w.n_out, a.n_matrices = 1;
    a.x = x, a.y = y, a.n_tokens = static_cast<int32_t>(n_tokens);
    return Check(api_.gemm_mma(&a, stream_), what);
  }
  if (cublas) {
    MoedCudaGemmArgs g{};
    g.ggml_type = w.type;
    g.w = w.data;
    g.row_bytes = w.row_bytes;
    if (f32) {
      g.n_in = w.n_in, g.n_out = w.n_out, g.n_tokens = n_tokens, g.x = x, g.y = y;
      g.scratch = s_.gemm_scratch, g.scratch_bytes = s_.gemm_scratch_bytes;
      g.precision = MOED_CUDA_GEMM_F32;
      return Check(api_.gemm(&g, stream_), what);
    }
    return Gemm(g, w.n_in, w.n_out, n_tokens, x, y, what);
  }
  // The GEMV takes 8 tokens a launch: whole groups of 8 go in one launch as a strided batch over
  // the same matrix (stride 0), the rest in a second.
  constexpr int64_t kChunk = MOED_CUDA_MAX_GEMV_TOKENS;
  for (int64_t t = 0; t < n_tokens;) {
    const int64_t groups = n_tokens - t >= kChunk ? std::min<int64_t>((n_tokens - t) / kChunk, 65535) : 1;
    MoedCudaGemvArgs a{};
    a.ggml_type = w.type;
    a.w = w.data;
    a.row_bytes = w.row_bytes;
    a.n_in = w.n_in;
    a.n_out = w.n_out;
    a.x = x + t * w.n_in;
    a.y = y + t * w.n_out;
    a.n_tokens = static_cast<int32_t>(std::min(kChunk, n_tokens - t));
    a.n_matrices = static_cast<int32_t>(groups);
    a.x_matrix_stride = kChunk * w.n_in;
    a.y_matrix_stride = kChunk * w.n_out;
    RETURN_IF_ERROR(Check(api_.gemv(&a, stream_), what));
    t += groups * a.n_tokens;
  }
  return absl::OkStatus();
}

}  // namespace moed::engine
