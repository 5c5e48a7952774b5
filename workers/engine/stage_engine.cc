#include "workers/engine/stage_engine.h"

#include <cstdlib>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/log.h"
#include "kernels/base/status_macros.h"
#include "kernels/cpu/norm.h"

namespace moed::engine {

absl::StatusOr<std::unique_ptr<StageEngine>> StageEngine::Create(const LoadedModel& model, int first_layer,
                                                                 int last_layer, const EngineOptions& options) {
  if (options.threads < 1 || options.threads > 512) {
    return absl::InvalidArgumentError(absl::StrCat("threads must be in 1..512, got ", options.threads));
  }
  if (options.cache.max_slots < 1 || options.cache.kv_block_size < 1 || options.cache.kv_blocks < 1) {
    return absl::InvalidArgumentError("state cache needs at least one slot, one block and one token per block");
  }
  ASSIGN_OR_RETURN(StageWeights weights, BindStageWeights(model, first_layer, last_layer));
  return std::unique_ptr<StageEngine>(new StageEngine(model, std::move(weights), options));
}

StageEngine::StageEngine(const LoadedModel& model, StageWeights weights, const EngineOptions& options)
    : hp_(model.hparams()), n_vocab_(model.description.n_vocab), weights_(std::move(weights)) {
  pool_ = std::make_unique<cpu::ThreadPool>(options.threads);
  std::vector<LayerKind> kinds;
  for (const LayerWeights& l : weights_.layers) kinds.push_back(l.kind);
  cache_ = std::make_unique<StateCache>(hp_, std::move(kinds), options.cache);
}

StageEngine::~StageEngine() = default;

void StageEngine::MatMul(const cpu::WeightMatrix& w, const float* x, int64_t n_tokens, float* y) {
  // Types and shapes were checked when the stage was bound; a failure here is a bug.
  absl::Status s = cpu::MatMul(w, x, n_tokens, y, pool_.get());
  if (!s.ok()) {
    MOED_LOG(ERROR) << "matmul failed after validation: " << s;
    std::abort();
  }
}

absl::Status StageEngine::Validate(std::span<const SequenceStep> sequences, std::span<const float> hidden_in) const {
  if (sequences.empty()) return absl::InvalidArgumentError("a step needs at least one sequence");
  int64_t total = 0;
  absl::flat_hash_set<int> seen;
  for (const SequenceStep& s : sequences) {
    RETURN_IF_ERROR(cache_->CheckSlot(s.slot));
    if (!seen.insert(s.slot).second) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, " appears twice in one step"));
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": no tokens"));
    for (int32_t id : s.tokens) {
      if (id < 0 || id >= n_vocab_) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", n_vocab_, ")"));
      }
    }
    total += static_cast<int64_t>(s.tokens.size());
  }
  if (!is_first() && static_cast<int64_t>(hidden_in.size()) != total * hp_.n_embd) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_in has ", hidden_in.size(), " floats, expected ",
                                                   total * hp_.n_embd));
  }
  return absl::OkStatus();
}

absl::Status StageEngine::Forward(std::span<const SequenceStep> sequences, std::span<const float> hidden_in,
                                  std::vector<float>* hidden_out, std::vector<float>* logits) {
  RETURN_IF_ERROR(Validate(sequences, hidden_in));
  for (const SequenceStep& s : sequences) RETURN_IF_ERROR(cache_->Reserve(s.slot, static_cast<int64_t>(s.tokens.size())));

  const int64_t H = hp_.n_embd;
  std::vector<Rows> rows;
  int64_t n = 0;
  for (const SequenceStep& s : sequences) {
    const int64_t count = static_cast<int64_t>(s.tokens.size());
    rows.push_back({s.slot, n, count, cache_->n_past(s.slot)});
    n += count;
  }

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
    if (sequences[i].logits == LogitsWanted::kLast) begin += count - 1, count = 1;
    for (int64_t t = begin; t < begin + count; ++t) {
      normed.resize(normed.size() + H);
      cpu::RmsNorm(x.data() + t * H, weights_.output_norm.data(), H, hp_.rms_eps, normed.data() + normed.size() - H);
    }
  }
  const int64_t n_rows = static_cast<int64_t>(normed.size()) / H;
  logits->assign(n_rows * n_vocab_, 0.0f);
  if (n_rows > 0) MatMul(weights_.output, normed.data(), n_rows, logits->data());
  return absl::OkStatus();
}

}  // namespace moed::engine
