// MoE routing of qwen35moe (docs: qwen35moe.md §3.6): softmax over all experts, top-k,
// renormalise over the selected ones.
#ifndef MOED_KERNELS_CPU_MOE_ROUTING_H_
#define MOED_KERNELS_CPU_MOE_ROUTING_H_

#include <cstdint>

namespace moed::cpu {

// ids[0..k) = the k most probable experts (descending; ties broken by the lower id),
// weights[i] = p[ids[i]] / max(sum of selected p, 6.1035e-5) like llama.cpp.
void RouteTopK(const float* logits, int64_t n_expert, int64_t k, int32_t* ids, float* weights);

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_MOE_ROUTING_H_
