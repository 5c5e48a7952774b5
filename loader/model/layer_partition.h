// The one algorithm that cuts a model's trunk into pipeline stages: contiguous, non-empty layer
// ranges that minimise the largest stage cost, each stage within its own capacity. Depends on
// nothing of moed: the engine's SplitLayers (workers/engine/pipeline.h) and the router's planner
// (daemon/planner/) both call it.
#ifndef MOED_LOADER_MODEL_LAYER_PARTITION_H_
#define MOED_LOADER_MODEL_LAYER_PARTITION_H_

#include <cstdint>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace moed {

inline constexpr uint64_t kUnboundedCapacity = std::numeric_limits<uint64_t>::max();

// Cuts layers [0, cost.size()) into capacity.size() contiguous ranges [first, last) in order,
// minimising the largest stage cost (the sum of its layers' costs; the caller folds what only the
// first or last stage holds into cost.front() / cost.back()), subject to stage s costing at most
// capacity[s]. Among equally good cuts, the later cut point wins (stable across callers).
// Errors: InvalidArgument when there are no stages or more stages than layers; ResourceExhausted
// when no cut respects the capacities.
absl::StatusOr<std::vector<std::pair<int, int>>> PartitionLayers(std::span<const uint64_t> cost,
                                                                 std::span<const uint64_t> capacity);

// Same with every capacity unbounded: the pure min-max cut into n_stages.
absl::StatusOr<std::vector<std::pair<int, int>>> PartitionLayers(std::span<const uint64_t> cost,
                                                                 int n_stages);

}  // namespace moed

#endif  // MOED_LOADER_MODEL_LAYER_PARTITION_H_
