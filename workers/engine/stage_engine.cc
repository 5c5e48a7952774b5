#include "workers/engine/stage_engine.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/status_macros.h"
#include "workers/engine/cpu_stage_engine.h"
#include "workers/engine/cuda_stage_engine.h"

namespace moed::engine {

std::string_view BackendName(Backend backend) { return backend == Backend::kCuda ? "cuda" : "cpu"; }

absl::StatusOr<std::unique_ptr<StageEngine>> StageEngine::Create(const LoadedModel& model, int first_layer,
                                                                 int last_layer, const EngineOptions& options) {
  if (options.cache.max_slots < 1 || options.cache.kv_block_size < 1 || options.cache.kv_blocks < 1) {
    return absl::InvalidArgumentError("state cache needs at least one slot, one block and one token per block");
  }
  ASSIGN_OR_RETURN(StageWeights weights, BindStageWeights(model, first_layer, last_layer));
  if (options.backend == Backend::kCuda) return CudaStageEngine::Create(model, std::move(weights), options);
  return CpuStageEngine::Create(model, std::move(weights), options);
}

StageEngine::StageEngine(const LoadedModel& model, StageWeights weights, const StateCacheOptions& cache,
                         bool host_state)
    : hp_(model.hparams()), n_vocab_(model.description.n_vocab), weights_(std::move(weights)) {
  std::vector<LayerKind> kinds;
  for (const LayerWeights& l : weights_.layers) kinds.push_back(l.kind);
  StateCacheOptions options = cache;
  options.host_storage = host_state;
  cache_ = std::make_unique<StateCache>(hp_, std::move(kinds), options);
}

StageEngine::~StageEngine() = default;

absl::StatusOr<int> StageEngine::AllocateSlot() {
  ASSIGN_OR_RETURN(int slot, cache_->FindFreeSlot());
  RETURN_IF_ERROR(AcquireSlot(slot));
  return slot;
}

absl::Status StageEngine::AcquireSlot(int slot) { return cache_->AcquireSlot(slot); }

absl::Status StageEngine::ForwardOnDevice(std::span<const SequenceStep>, DeviceRows, DeviceRows*,
                                          std::vector<float>*) {
  return absl::UnimplementedError("this backend keeps activations in host memory: it has no device link");
}

absl::Status StageEngine::BeginStep(std::span<const SequenceStep> sequences, int64_t hidden_in_floats,
                                    std::vector<Rows>* rows) {
  if (sequences.empty()) return absl::InvalidArgumentError("a step needs at least one sequence");
  int64_t total = 0;
  absl::flat_hash_set<int> seen;
  for (const SequenceStep& s : sequences) {
    RETURN_IF_ERROR(cache_->CheckSlot(s.slot));
    if (!seen.insert(s.slot).second) {
      return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, " appears twice in one step"));
    }
    if (s.tokens.empty()) return absl::InvalidArgumentError(absl::StrCat("slot ", s.slot, ": no tokens"));
    if (s.logits == LogitsWanted::kTop && (s.top_n < 1 || s.top_n > cpu::kMaxTopLogits)) {
      return absl::InvalidArgumentError(
          absl::StrCat("slot ", s.slot, ": top_n ", s.top_n, " is outside [1, ", cpu::kMaxTopLogits, "]"));
    }
    if (s.draw.has_value()) {
      const cpu::RowDraw& d = *s.draw;
      if (s.logits != LogitsWanted::kTop || n_vocab_ > cpu::kMaxDrawVocab || !(d.u >= 0.0 && d.u < 1.0) ||
          !(d.inv_temperature > 0.0f) || std::isnan(d.log_min_p) || d.log_min_p > 0.0f) {
        return absl::InvalidArgumentError(absl::StrCat(
            "slot ", s.slot, ": a draw needs kTop logits, a vocabulary of at most ", cpu::kMaxDrawVocab,
            ", u in [0, 1), 1 / temperature > 0 and log(min_p) <= 0; got u ", d.u, ", 1 / temperature ",
            d.inv_temperature, ", log(min_p) ", d.log_min_p));
      }
    }
    for (int32_t id : s.tokens) {
      if (id < 0 || id >= n_vocab_) {
        return absl::InvalidArgumentError(absl::StrCat("token id ", id, " is outside the vocabulary [0, ", n_vocab_, ")"));
      }
    }
    total += static_cast<int64_t>(s.tokens.size());
  }
  if (!is_first() && hidden_in_floats != total * hp_.n_embd) {
    return absl::InvalidArgumentError(absl::StrCat("hidden_in has ", hidden_in_floats, " floats, expected ",
                                                   total * hp_.n_embd));
  }
  for (const SequenceStep& s : sequences) RETURN_IF_ERROR(cache_->Reserve(s.slot, static_cast<int64_t>(s.tokens.size())));
  rows->clear();
  tops_.clear();
  draws_.clear();
  int64_t n = 0;
  for (const SequenceStep& s : sequences) {
    const int64_t count = static_cast<int64_t>(s.tokens.size());
    rows->push_back({s.slot, n, count, cache_->n_past(s.slot)});
    n += count;
  }
  return absl::OkStatus();
}

void StageEngine::SummariseTops(std::span<const SequenceStep> sequences, std::vector<float>* logits) {
  const auto V = static_cast<size_t>(n_vocab_);
  size_t in = 0, out = 0;  // rows read, rows kept
  for (const SequenceStep& s : sequences) {
    const size_t count = s.logits == LogitsWanted::kNone ? 0 : s.logits == LogitsWanted::kAll ? s.tokens.size() : 1;
    for (size_t r = 0; r < count; ++r, ++in) {
      const std::span<const float> row(logits->data() + in * V, V);
      if (s.logits == LogitsWanted::kTop) {
        tops_.push_back(cpu::TopOfLogits(row, s.top_n));
        draws_.push_back(s.draw.has_value() ? cpu::DrawFromRow(row, *s.draw) : cpu::Drawn{});
      } else {
        if (out != in) std::copy(row.begin(), row.end(), logits->begin() + static_cast<std::ptrdiff_t>(out * V));
        ++out;
      }
    }
  }
  logits->resize(out * V);
}

}  // namespace moed::engine
