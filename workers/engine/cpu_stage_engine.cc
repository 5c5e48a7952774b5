#include "workers/engine/cpu_stage_engine.h"

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/cpu/norm.h"

namespace moed::engine {

absl::StatusOr<std::unique_ptr<StageEngine>> CpuStageEngine::Create(const LoadedModel& model, StageWeights weights,
                                                                    const EngineOptions& options) {
  if (options.threads < 1 || options.threads > 512) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be in 1..512, got ", options.threads));
  }
  return std::unique_ptr<StageEngine>(new CpuStageEngine(model, std::move(weights), options));
}

CpuStageEngine::CpuStageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options)
    : StageEngine(model, std::move(weights), options.cache, /*host_state=*/true),
      pool_(std::make_unique<cpu::ThreadPool>(options.threads)) {}

void CpuStageEngine::MatMul(const cpu::WeightMatrix& w, const float* x, int64_t n_tokens, float* y) {
  // Types and shapes were checked when the stage was bound; a failure here is a bug.
  absl::Status s = cpu::MatMul(w, x, n_tokens, y, pool_.get());
  if (!s.ok()) {
    MOED_LOG(ERROR) << "matmul failed after validation: " << s;
    std::abort();
  }
}

absl::Status CpuStageEngine::Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                                     std::vector<float>* hidden_out, std::vector<float>* logits) {
  std::vector<Rows> rows;
  RETURN_IF_ERROR(BeginStep(sequences, static_cast<int64_t>(hidden_in.size()), &rows));
  const int64_t H = hp_.n_embd;
  const int64_t n = rows.back().begin + rows.back().count;

  std::vector<float> x(n * H);
  if (is_first()) {
    int64_t r = 0;
    for (const SequenceStep& s : sequences) {
      for (int32_t id : s.tokens) RETURN_IF_ERROR(cpu::GetRow(weights_.token_embd, id, x.data() + (r++) * H));
    }
  } else {
    std::memcpy(x.data(), hidden_in.data(), x.size() * sizeof(float));
  }

  std::vector<float> a(n * H), m(n * H);
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    for (int64_t t = 0; t < n; ++t) cpu::RmsNorm(x.data() + t * H, w.attn_norm.data(), H, hp_.rms_eps, a.data() + t * H);
    if (w.kind == LayerKind::kFullAttention) {
      FullAttention(static_cast<int>(l), rows, a.data(), m.data());
    } else {
      DeltaNet(static_cast<int>(l), rows, a.data(), m.data());
    }
    for (int64_t i = 0; i < n * H; ++i) x[i] += m[i];
    for (int64_t t = 0; t < n; ++t) {
      cpu::RmsNorm(x.data() + t * H, w.post_attention_norm.data(), H, hp_.rms_eps, a.data() + t * H);
    }
    Moe(static_cast<int>(l), n, a.data(), m.data());
    for (int64_t i = 0; i < n * H; ++i) x[i] += m[i];
  }
  for (const Rows& r : rows) cache_->Advance(r.slot, r.count);

  if (!is_last()) {
    *hidden_out = std::move(x);
    return absl::OkStatus();
  }
  // Only the rows a sequence asked for go through the final norm and the head.
  std::vector<float> normed;
  for (size_t i = 0; i < rows.size(); ++i) {
    int64_t begin = rows[i].begin, count = rows[i].count;
    if (sequences[i].logits == LogitsWanted::kNone) continue;
    if (sequences[i].logits != LogitsWanted::kAll) begin += count - 1, count = 1;
    for (int64_t t = begin; t < begin + count; ++t) {
      normed.resize(normed.size() + H);
      cpu::RmsNorm(x.data() + t * H, weights_.output_norm.data(), H, hp_.rms_eps, normed.data() + normed.size() - H);
    }
  }
  const int64_t n_rows = static_cast<int64_t>(normed.size()) / H;
  logits->assign(n_rows * n_vocab_, 0.0f);
  if (n_rows > 0) MatMul(weights_.output, normed.data(), n_rows, logits->data());
  SummariseTops(sequences, logits);
  return absl::OkStatus();
}

}  // namespace moed::engine
