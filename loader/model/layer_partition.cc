// Min-max contiguous partition with per-stage capacities, by dynamic programming over (stages,
// layers): O(stages x layers^2), a few thousand steps for the largest models.
#include "loader/model/layer_partition.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace moed {

absl::StatusOr<std::vector<std::pair<int, int>>> PartitionLayers(std::span<const uint64_t> cost,
                                                                 std::span<const uint64_t> capacity) {
  const int n = static_cast<int>(cost.size());
  const int k_max = static_cast<int>(capacity.size());
  if (k_max < 1 || k_max > n) {
    return absl::InvalidArgumentError(absl::StrCat("cannot cut ", n, " layers into ", k_max, " stages"));
  }
  // Prefix sums saturate instead of wrapping, so absurd costs stay "too large", never small.
  std::vector<uint64_t> prefix(n + 1, 0);
  for (int l = 0; l < n; ++l) {
    prefix[l + 1] = cost[l] > kUnboundedCapacity - prefix[l] ? kUnboundedCapacity : prefix[l] + cost[l];
  }
  auto segment = [&](int j, int i) -> uint64_t {
    return prefix[i] == kUnboundedCapacity ? kUnboundedCapacity : prefix[i] - prefix[j];
  };
  // best[k][i]: the smallest possible largest stage when the first i layers form k stages, each
  // within its capacity; cut[k][i] the first layer of the k-th stage, -1 when impossible.
  std::vector<std::vector<uint64_t>> best(k_max + 1, std::vector<uint64_t>(n + 1, 0));
  std::vector<std::vector<int>> cut(k_max + 1, std::vector<int>(n + 1, -1));
  auto reachable = [&](int k, int i) { return k == 0 ? i == 0 : cut[k][i] >= 0; };
  for (int k = 1; k <= k_max; ++k) {
    for (int i = k; i <= n; ++i) {
      // Later cut points first (shorter last stage), keeping the first strictly better one.
      for (int j = i - 1; j >= k - 1; --j) {
        const uint64_t stage = segment(j, i);
        if (stage > capacity[k - 1]) break;  // longer stages only cost more
        if (!reachable(k - 1, j)) continue;
        const uint64_t worst = std::max(best[k - 1][j], stage);
        if (cut[k][i] < 0 || worst < best[k][i]) {
          best[k][i] = worst;
          cut[k][i] = j;
        }
      }
    }
  }
  if (cut[k_max][n] < 0) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no cut of ", n, " layers into ", k_max, " stages fits the stage capacities"));
  }
  std::vector<std::pair<int, int>> ranges(k_max);
  for (int k = k_max, i = n; k >= 1; --k) {
    ranges[k - 1] = {cut[k][i], i};
    i = cut[k][i];
  }
  return ranges;
}

absl::StatusOr<std::vector<std::pair<int, int>>> PartitionLayers(std::span<const uint64_t> cost,
                                                                 int n_stages) {
  if (n_stages < 1) {
    return absl::InvalidArgumentError(absl::StrCat("cannot cut ", cost.size(), " layers into ", n_stages, " stages"));
  }
  const std::vector<uint64_t> capacity(n_stages, kUnboundedCapacity);
  return PartitionLayers(cost, capacity);
}

}  // namespace moed
