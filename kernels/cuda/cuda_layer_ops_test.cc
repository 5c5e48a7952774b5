// The ABI 1.2 kernels against their CPU twins on random inputs of several shapes: attention input
// preparation (cpu::RmsNorm + cpu::RopeMultiNeox) and paged attention with the output gate
// (cpu::AttentionPaged; float32 and, ABI 1.3, F16 K/V pools), MoE routing (cpu::RouteTopK), the
// DeltaNet input split (cpu::L2Normalize and the CPU engine's loops), the gated RMSNorm and the
// pointwise ops, the prefill GEMM (cpu::MatMulReference) with its MoE combine, and (ABI 1.5) the
// logits row summaries of sampling (cpu::TopOfLogits). Without a GPU every case skips with the
// loader's message.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/matmul.h"
#include "kernels/cpu/moe_routing.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/sampling.h"
#include "kernels/cuda/api.h"
#include "kernels/cuda/cuda_test_util.h"

namespace moed::cuda {
namespace {

template <class T>
std::vector<T> Download(const DeviceBuffer& b, size_t n) {
  std::vector<T> v(n);
  b.Download(v.data());
  return v;
}

void Sync() {
  const CudaLibrary& lib = *GetBackend().lib;
  ASSERT_TRUE(lib.Check(lib.api().synchronize(), "sync").ok());
}

// max |a - b| / (1 + |b|)
double Err(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(double{a[i]} - b[i]) / (1.0 + std::fabs(b[i])));
  return worst;
}

// n cache elements of a K/V pool as float32 (F16 pools widened exactly).
std::vector<float> DownloadKv(const DeviceBuffer& b, size_t n, bool f16) {
  if (!f16) return Download<float>(b, n);
  const std::vector<uint16_t> halves = Download<uint16_t>(b, n);
  std::vector<float> out(n);
  std::transform(halves.begin(), halves.end(), out.begin(), Fp16ToFp32);
  return out;
}

float RoundToHalf(float x) { return Fp16ToFp32(Fp32ToFp16(x)); }

struct AttnShape {
  int64_t n_heads, n_kv_heads, head_dim, n_rot;
  std::vector<int> lengths;  // per sequence: tokens already cached + new tokens in this step
  std::vector<int> new_tokens;
};

// Fills two sequences' caches through attention_prep in one step each and checks q, gate, the
// cache rows and the attention output against the CPU twins. Tolerance: float32 on both sides with
// a different summation order: RMSNorm ~1e-6, RoPE angles from the same float theta through cosf
// and sinf (<= 2 ulp), attention softmax over <= 300 keys: 2e-5 relative is a comfortable bound.
// f16: F16 pools through ABI 1.3's attention_prep_kv / attention_kv (else float32 pools through
// 1.2's attention_prep / attention). The cache rows are then checked against the CPU's rows rounded
// to half (below); the attention twin reads the device's rows, so its bound stays 2e-5.
double CheckAttention(const AttnShape& s, bool f16, std::mt19937& rng) {
  const CudaLibrary& lib = *GetBackend().lib;
  const int64_t nh = s.n_heads, nkv = s.n_kv_heads, hd = s.head_dim, bs = 16;
  const int64_t kv_bytes = f16 ? 2 : 4;
  const int n_seqs = static_cast<int>(s.lengths.size());
  const float theta_scale = std::pow(1e7f, -2.0f / static_cast<float>(s.n_rot));
  const std::array<int32_t, 4> sections = {11, 11, 10, 0};
  // Blocks of every sequence, shuffled over a pool, and the block table.
  int64_t total_blocks = 0;
  for (int len : s.lengths) total_blocks += (len + bs - 1) / bs;
  std::vector<int32_t> pool(static_cast<size_t>(total_blocks + 3));
  std::iota(pool.begin(), pool.end(), 0);
  std::shuffle(pool.begin(), pool.end(), rng);
  const int32_t stride = static_cast<int32_t>(pool.size());
  std::vector<int32_t> tables(static_cast<size_t>(n_seqs * stride), 0);
  std::vector<std::vector<int32_t>> blocks(n_seqs);
  size_t next = 0;
  for (int b = 0; b < n_seqs; ++b) {
    for (int64_t i = 0; i < (s.lengths[b] + bs - 1) / bs; ++i) {
      blocks[b].push_back(pool[next++]);
      tables[b * stride + i] = blocks[b].back();
    }
  }
  const int64_t rows = static_cast<int64_t>(pool.size()) * bs;
  DeviceBuffer dk_cache(rows * nkv * hd * kv_bytes), dv_cache(rows * nkv * hd * kv_bytes), dtables(tables.size() * 4);
  dtables.Upload(tables.data());
  std::vector<float> k_cache(rows * nkv * hd, 0.0f), v_cache(rows * nkv * hd, 0.0f);
  EXPECT_EQ(lib.api().memset_device(dk_cache.get<void>(), 0, rows * nkv * hd * kv_bytes), 0);
  EXPECT_EQ(lib.api().memset_device(dv_cache.get<void>(), 0, rows * nkv * hd * kv_bytes), 0);
  const std::vector<float> q_norm = Normal(hd, rng, 0.3f), k_norm = Normal(hd, rng, 0.3f);
  DeviceBuffer dq_norm(hd * 4), dk_norm(hd * 4);
  dq_norm.Upload(q_norm.data());
  dk_norm.Upload(k_norm.data());

  // Every token of every sequence goes through prep (older tokens in a first step, so the cache
  // is filled by the kernel under test); the last new_tokens of each are the attention step.
  std::vector<int32_t> positions, kv_rows, slots;
  std::vector<int32_t> step_positions, step_slots;
  for (int b = 0; b < n_seqs; ++b) {
    for (int p = 0; p < s.lengths[b]; ++p) {
      positions.push_back(p);
      kv_rows.push_back(static_cast<int32_t>(blocks[b][p / bs] * bs + p % bs));
      slots.push_back(b);
      if (p >= s.lengths[b] - s.new_tokens[b]) step_positions.push_back(p), step_slots.push_back(b);
    }
  }
  const int64_t n = static_cast<int64_t>(positions.size());
  const std::vector<float> qg = Normal(n * nh * 2 * hd, rng), k = Normal(n * nkv * hd, rng), v = Normal(n * nkv * hd, rng);
  DeviceBuffer dqg(qg.size() * 4), dk(k.size() * 4), dv(v.size() * 4), dpos(n * 4), drows(n * 4),
      dq(n * nh * hd * 4), dgate(n * nh * hd * 4);
  dqg.Upload(qg.data()), dk.Upload(k.data()), dv.Upload(v.data());
  dpos.Upload(positions.data()), drows.Upload(kv_rows.data());
  MoedCudaAttentionPrepArgs p{};
  p.n_heads = nh, p.n_kv_heads = nkv, p.head_dim = hd, p.head_dim_v = hd, p.n_rot = s.n_rot;
  p.theta_scale = theta_scale, p.eps = 1e-6f, p.n_tokens = static_cast<int32_t>(n);
  p.qg = dqg.get<float>(), p.k = dk.get<float>(), p.v = dv.get<float>();
  p.q_norm = dq_norm.get<float>(), p.k_norm = dk_norm.get<float>();
  p.positions = dpos.get<int32_t>(), p.kv_rows = drows.get<int32_t>();
  p.q = dq.get<float>(), p.gate = dgate.get<float>(), p.k_cache = dk_cache.get<float>(), p.v_cache = dv_cache.get<float>();
  EXPECT_EQ(f16 ? lib.api().attention_prep_kv(&p, MOED_CUDA_KV_F16, nullptr) : lib.api().attention_prep(&p, nullptr), 0)
      << lib.api().last_error();
  Sync();

  // CPU twin of prep.
  std::vector<float> q_ref(n * nh * hd), gate_ref(n * nh * hd);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t h = 0; h < nh; ++h) {
      const float* src = qg.data() + (t * nh + h) * 2 * hd;
      cpu::RmsNorm(src, q_norm.data(), hd, 1e-6f, q_ref.data() + (t * nh + h) * hd);
      std::copy(src + hd, src + 2 * hd, gate_ref.begin() + (t * nh + h) * hd);
    }
    float* kt = k_cache.data() + int64_t{kv_rows[t]} * nkv * hd;
    for (int64_t h = 0; h < nkv; ++h) cpu::RmsNorm(k.data() + (t * nkv + h) * hd, k_norm.data(), hd, 1e-6f, kt + h * hd);
    const cpu::RopePosition pos = cpu::RopePosition::Text(positions[t]);
    cpu::RopeMultiNeox(q_ref.data() + t * nh * hd, nh, hd, s.n_rot, pos, sections, 1e7f);
    cpu::RopeMultiNeox(kt, nkv, hd, s.n_rot, pos, sections, 1e7f);
    std::copy(v.begin() + t * nkv * hd, v.begin() + (t + 1) * nkv * hd, v_cache.begin() + int64_t{kv_rows[t]} * nkv * hd);
  }
  double worst = 0;
  worst = std::max(worst, Err(Download<float>(dq, q_ref.size()), q_ref));
  worst = std::max(worst, Err(Download<float>(dgate, gate_ref.size()), gate_ref));
  const std::vector<float> k_dev = DownloadKv(dk_cache, k_cache.size(), f16), v_dev = DownloadKv(dv_cache, v_cache.size(), f16);
  if (!f16) {
    worst = std::max(worst, Err(k_dev, k_cache));
    worst = std::max(worst, Err(v_dev, v_cache));
  } else {
    // K: the device rounds its own float32 result, which is within float32 error (2e-5 above) of
    // the CPU's, to nearest even: at most half an F16 ulp, 2^-11 of |k|, from it. Both roundings
    // agree except for values that close to a rounding boundary, which are rare (< 1%); a
    // truncating or misplaced store fails one bound or the other.
    double k_err = 0;
    size_t k_off = 0;
    for (size_t i = 0; i < k_cache.size(); ++i) {
      k_err = std::max(k_err, std::fabs(double{k_dev[i]} - k_cache[i]) / (1.0 + std::fabs(k_cache[i])));
      k_off += k_dev[i] != RoundToHalf(k_cache[i]) ? 1 : 0;
    }
    EXPECT_LE(k_err, 0x1.0p-11 + 2e-5) << "F16 K rows";
    EXPECT_LE(k_off, k_cache.size() / 100) << "F16 K rows rounded differently from the CPU's";
    // V is stored as given: exactly the host's rounding.
    size_t v_off = 0;
    for (size_t i = 0; i < v_cache.size(); ++i) v_off += v_dev[i] != RoundToHalf(v_cache[i]) ? 1 : 0;
    EXPECT_EQ(v_off, 0u) << "F16 V rows";
  }

  // Attention of the step's tokens (q and gate rows of the step taken from the prep output).
  const std::vector<float> q_all = Download<float>(dq, q_ref.size()), gate_all = Download<float>(dgate, gate_ref.size());
  std::vector<float> q_step, gate_step;
  for (int64_t t = 0; t < n; ++t) {
    if (positions[t] >= s.lengths[slots[t]] - s.new_tokens[slots[t]]) {
      q_step.insert(q_step.end(), q_all.begin() + t * nh * hd, q_all.begin() + (t + 1) * nh * hd);
      gate_step.insert(gate_step.end(), gate_all.begin() + t * nh * hd, gate_all.begin() + (t + 1) * nh * hd);
    }
  }
  const int64_t m = static_cast<int64_t>(step_positions.size());
  DeviceBuffer dq_step(q_step.size() * 4), dgate_step(gate_step.size() * 4), dslots(m * 4), dsp(m * 4), dout(m * nh * hd * 4);
  dq_step.Upload(q_step.data()), dgate_step.Upload(gate_step.data());
  dslots.Upload(step_slots.data()), dsp.Upload(step_positions.data());
  MoedCudaAttentionArgs a{};
  a.n_heads = nh, a.n_kv_heads = nkv, a.head_dim = hd, a.head_dim_v = hd, a.n_tokens = static_cast<int32_t>(m);
  a.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  a.q = dq_step.get<float>(), a.gate = dgate_step.get<float>();
  a.k_cache = dk_cache.get<float>(), a.v_cache = dv_cache.get<float>();
  a.block_size = bs, a.block_tables = dtables.get<int32_t>(), a.block_table_stride = stride;
  a.token_slots = dslots.get<int32_t>(), a.positions = dsp.get<int32_t>(), a.out = dout.get<float>();
  a.max_position = *std::max_element(step_positions.begin(), step_positions.end());
  // With and without split-K scratch: both paths must give the same result.
  const int64_t partials_floats = m * nh * 32 * (hd + 2);
  DeviceBuffer dpartials(partials_floats * 4);
  std::vector<std::vector<float>> outs;
  for (bool split : {false, true}) {
    a.partials = split ? dpartials.get<float>() : nullptr;
    a.partials_floats = split ? partials_floats : 0;
    EXPECT_EQ(f16 ? lib.api().attention_kv(&a, MOED_CUDA_KV_F16, nullptr) : lib.api().attention(&a, nullptr), 0)
        << lib.api().last_error();
    Sync();
    outs.push_back(Download<float>(dout, m * nh * hd));
  }
  std::vector<float> out_ref(m * nh * hd);
  int64_t at = 0;
  for (int b = 0; b < n_seqs; ++b) {
    std::vector<const float*> kp, vp;
    for (int32_t blk : blocks[b]) kp.push_back(k_dev.data() + blk * bs * nkv * hd), vp.push_back(v_dev.data() + blk * bs * nkv * hd);
    const cpu::PagedKv kv{kp.data(), vp.data(), bs, nkv, hd, hd};
    cpu::AttentionPaged(q_step.data() + at * nh * hd, s.new_tokens[b], s.lengths[b] - s.new_tokens[b], nh, kv, a.scale,
                        out_ref.data() + at * nh * hd, nullptr);
    at += s.new_tokens[b];
  }
  for (size_t i = 0; i < out_ref.size(); ++i) out_ref[i] *= 1.0f / (1.0f + std::exp(-gate_step[i]));
  for (const std::vector<float>& out : outs) worst = std::max(worst, Err(out, out_ref));
  return worst;
}

const std::vector<AttnShape>& AttnShapes() {
  static const auto* shapes = new std::vector<AttnShape>{
      {16, 2, 256, 64, {1, 40, 300}, {1, 1, 1}},  // 35B-A3B heads, decode of three sequences
      {16, 2, 256, 64, {2100}, {1}},              // decode at a long context: 9 key splits
      {32, 2, 128, 32, {700, 5}, {1, 5}},         // 16 query heads per kv head: two head chunks
      {16, 2, 256, 64, {33, 70}, {33, 5}},         // a prefill and a 5-token extension
      {4, 2, 32, 8, {9, 64}, {9, 1}},              // tiny-a heads
      {6, 3, 16, 4, {17, 150}, {17, 150}},         // tiny-b heads, two prefills
      {4, 1, 13, 4, {37, 3}, {37, 1}},             // odd rows: F16 heads start at odd elements
  };
  return *shapes;
}

TEST(CudaAttentionTest, PrepAndPagedAttentionMatchCpu) {
  MOED_REQUIRE_GPU();
  ASSERT_TRUE(GetBackend().lib->HasAbi12());
  std::mt19937 rng(21);
  double worst = 0;
  for (const AttnShape& s : AttnShapes()) worst = std::max(worst, CheckAttention(s, /*f16=*/false, rng));
  std::printf("[ attention ] max |gpu - cpu| / (1 + |cpu|) = %.3g\n", worst);
  EXPECT_LE(worst, 2e-5);
}

// The same with F16 pools (ABI 1.3): q, gate and the attention output keep the float32 bound;
// CheckAttention checks the F16 rows themselves.
TEST(CudaAttentionTest, F16KvPrepAndPagedAttentionMatchCpu) {
  MOED_REQUIRE_GPU();
  ASSERT_TRUE(GetBackend().lib->HasF16Kv());
  std::mt19937 rng(22);
  double worst = 0;
  for (const AttnShape& s : AttnShapes()) worst = std::max(worst, CheckAttention(s, /*f16=*/true, rng));
  std::printf("[ attention, F16 K/V ] max |gpu - cpu| / (1 + |cpu|) = %.3g\n", worst);
  EXPECT_LE(worst, 2e-5);
}

TEST(CudaRouteTopKTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  std::mt19937 rng(3);
  for (auto [n_expert, k, n_tokens] : {std::tuple{256, 8, 5}, std::tuple{16, 4, 33}, std::tuple{512, 10, 2},
                                       std::tuple{8, 2, 1}}) {
    std::vector<float> logits = Normal(static_cast<size_t>(n_expert * n_tokens), rng, 2.0f);
    logits[3] = logits[5];  // a tie: the lower id wins on both sides
    DeviceBuffer dl(logits.size() * 4), di(n_tokens * k * 4), dw(n_tokens * k * 4);
    dl.Upload(logits.data());
    ASSERT_EQ(lib.api().route_topk(dl.get<float>(), n_tokens, n_expert, k, di.get<int32_t>(), dw.get<float>(), nullptr), 0)
        << lib.api().last_error();
    Sync();
    const std::vector<int32_t> ids = Download<int32_t>(di, n_tokens * k);
    const std::vector<float> wts = Download<float>(dw, n_tokens * k);
    std::vector<int32_t> ref_ids(k);
    std::vector<float> ref_w(k);
    for (int t = 0; t < n_tokens; ++t) {
      cpu::RouteTopK(logits.data() + t * n_expert, n_expert, k, ref_ids.data(), ref_w.data());
      for (int i = 0; i < k; ++i) {
        EXPECT_EQ(ids[t * k + i], ref_ids[i]) << "n_expert " << n_expert << " token " << t << " rank " << i;
        EXPECT_NEAR(wts[t * k + i], ref_w[i], 1e-6f * (1 + ref_w[i]));
      }
    }
  }
  DeviceBuffer buf(64);
  EXPECT_NE(lib.api().route_topk(buf.get<float>(), 1, 4, 5, buf.get<int32_t>(), buf.get<float>(), nullptr), 0);
}

TEST(CudaLogitsTopTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(11);
  // The model's vocabulary (float4 loads), an odd width (scalar loads), and a row as wide as top_n.
  for (auto [n_vocab, n_rows] : {std::pair{248320, 4}, std::pair{1001, 5}, std::pair{20, 2}}) {
    std::vector<float> logits = Normal(static_cast<size_t>(n_vocab * n_rows), rng, 3.0f);
    float* r0 = logits.data();
    r0[7] = r0[n_vocab - 1] = 40.0f;  // tied best: the lower id first
    r0[1] = nan, r0[2] = -inf;
    float* r1 = logits.data() + n_vocab;
    std::fill(r1, r1 + n_vocab, -inf);  // no distribution
    r1[n_vocab / 2] = nan;
    if (n_rows > 2) logits[2 * n_vocab + 3] = inf;  // +inf: no distribution either
    for (int32_t top_n : {1, 20}) {
      DeviceBuffer dl(logits.size() * 4), di(n_rows * top_n * 4), dv(n_rows * top_n * 4), ds(n_rows * 4);
      dl.Upload(logits.data());
      ASSERT_EQ(lib.api().logits_top(dl.get<float>(), n_rows, n_vocab, top_n, di.get<int32_t>(), dv.get<float>(),
                                     ds.get<float>(), nullptr), 0)
          << lib.api().last_error();
      Sync();
      const std::vector<int32_t> ids = Download<int32_t>(di, n_rows * top_n);
      const std::vector<float> values = Download<float>(dv, n_rows * top_n), lse = Download<float>(ds, n_rows);
      for (int r = 0; r < n_rows; ++r) {
        const cpu::TopLogits ref =
            cpu::TopOfLogits(std::span<const float>(logits.data() + r * n_vocab, n_vocab), top_n);
        for (int j = 0; j < top_n; ++j) {
          EXPECT_EQ(ids[r * top_n + j], ref.best[j].first) << "n_vocab " << n_vocab << " row " << r << " rank " << j;
          EXPECT_EQ(values[r * top_n + j], ref.best[j].second);
        }
        if (std::isfinite(ref.log_sum_exp)) {
          EXPECT_NEAR(lse[r], ref.log_sum_exp, 2e-6 * (1 + std::fabs(ref.log_sum_exp))) << "row " << r;
        } else {
          EXPECT_EQ(lse[r], -inf) << "row " << r;
        }
      }
    }
  }
}

// logits_draw gives cpu::DrawFromRow's token exactly: the model's vocabulary and an odd width,
// temperatures, min-p, u at both ends, rows without a distribution, and skipped rows.
TEST(CudaLogitsDrawTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  std::mt19937 rng(12);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  for (auto [n_vocab, n_rows] : {std::pair{248320, 64}, std::pair{1001, 40}}) {
    std::vector<float> logits = Normal(static_cast<size_t>(n_vocab * n_rows), rng, 3.0f);
    std::fill(logits.begin() + n_vocab, logits.begin() + 2 * n_vocab, -inf);  // row 1: no distribution
    logits[2 * n_vocab + 5] = inf;                                            // row 2: neither
    logits[3 * n_vocab + 1] = nan, logits[3 * n_vocab + 2] = 30.0f;           // row 3: one token dominates
    std::vector<MoedCudaRowDraw> draws(static_cast<size_t>(n_rows));
    for (int r = 0; r < n_rows; ++r) {
      MoedCudaRowDraw& d = draws[static_cast<size_t>(r)];
      d.inv_temperature = 1.0f / std::array{1.0f, 0.7f, 1.5f, 0.05f}[r % 4];
      d.log_min_p = r % 3 == 0 ? std::log(0.05f) : -inf;
      d.u = r == 4 ? 0.0 : r == 5 ? 1.0 - 0x1.0p-53 : uniform(rng);
      d.skip = r == 6;
    }
    DeviceBuffer dl(logits.size() * 4), dd(draws.size() * sizeof(MoedCudaRowDraw)), di(n_rows * 4), dv(n_rows * 4);
    dl.Upload(logits.data()), dd.Upload(draws.data());
    const std::vector<int32_t> sentinel(static_cast<size_t>(n_rows), -7);
    di.Upload(sentinel.data());
    ASSERT_EQ(lib.api().logits_draw(dl.get<float>(), n_rows, n_vocab, dd.get<MoedCudaRowDraw>(), di.get<int32_t>(),
                                    dv.get<float>(), nullptr), 0)
        << lib.api().last_error();
    Sync();
    const std::vector<int32_t> ids = Download<int32_t>(di, n_rows);
    const std::vector<float> values = Download<float>(dv, n_rows);
    for (int r = 0; r < n_rows; ++r) {
      const MoedCudaRowDraw& d = draws[static_cast<size_t>(r)];
      if (d.skip != 0) {
        EXPECT_EQ(ids[r], -7) << "a skipped row is left alone";
        continue;
      }
      const cpu::Drawn ref = cpu::DrawFromRow(std::span<const float>(logits.data() + r * n_vocab, n_vocab),
                                              {d.inv_temperature, d.log_min_p, d.u});
      EXPECT_EQ(ids[r], ref.id) << "n_vocab " << n_vocab << " row " << r << " u " << d.u;
      EXPECT_EQ(values[r], ref.logit) << "row " << r;
    }
  }
}

TEST(CudaDeltaNetPrepTest, MatchesCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  std::mt19937 rng(8);
  for (auto [hk, hv, dk, dv, n] : {std::tuple<int64_t, int64_t, int64_t, int64_t, int>{16, 32, 128, 128, 3},
                                   {2, 4, 16, 16, 7}, {3, 3, 16, 32, 1}}) {
    const int64_t key_dim = hk * dk, inner = hv * dv, conv_dim = 2 * key_dim + inner;
    const std::vector<float> c = Normal(n * conv_dim, rng), al = Normal(n * hv, rng), b = Normal(n * hv, rng);
    const std::vector<float> ssm_a = Normal(hv, rng), dt_bias = Normal(hv, rng);
    DeviceBuffer dc(c.size() * 4), dal(al.size() * 4), db(b.size() * 4), da(hv * 4), ddt(hv * 4), dq(n * key_dim * 4),
        dkk(n * key_dim * 4), dvv(n * inner * 4), dg(n * hv * 4), dbeta(n * hv * 4);
    dc.Upload(c.data()), dal.Upload(al.data()), db.Upload(b.data()), da.Upload(ssm_a.data()), ddt.Upload(dt_bias.data());
    MoedCudaDeltaNetPrepArgs p{};
    p.n_k_heads = hk, p.n_v_heads = hv, p.dk = dk, p.dv = dv, p.n_tokens = n, p.eps = 1e-6f;
    p.q_scale = 1.0f / std::sqrt(static_cast<float>(dk));
    p.conv_out = dc.get<float>(), p.alpha = dal.get<float>(), p.beta_logit = db.get<float>();
    p.ssm_a = da.get<float>(), p.dt_bias = ddt.get<float>();
    p.q = dq.get<float>(), p.k = dkk.get<float>(), p.v = dvv.get<float>(), p.g = dg.get<float>(), p.beta = dbeta.get<float>();
    ASSERT_EQ(lib.api().deltanet_prep(&p, nullptr), 0) << lib.api().last_error();
    Sync();
    std::vector<float> q_ref, k_ref, v_ref, g_ref, beta_ref;
    for (int t = 0; t < n; ++t) {
      const float* ct = c.data() + t * conv_dim;
      for (int64_t h = 0; h < hk; ++h) {
        std::vector<float> qh(ct + h * dk, ct + (h + 1) * dk), kh(ct + key_dim + h * dk, ct + key_dim + (h + 1) * dk);
        cpu::L2Normalize(qh.data(), dk, 1e-6f);
        for (float& x : qh) x *= p.q_scale;
        cpu::L2Normalize(kh.data(), dk, 1e-6f);
        q_ref.insert(q_ref.end(), qh.begin(), qh.end());
        k_ref.insert(k_ref.end(), kh.begin(), kh.end());
      }
      v_ref.insert(v_ref.end(), ct + 2 * key_dim, ct + conv_dim);
      for (int64_t j = 0; j < hv; ++j) {
        const float x = al[t * hv + j] + dt_bias[j];
        g_ref.push_back(ssm_a[j] * (x > 20.0f ? x : std::log1p(std::exp(x))));
        beta_ref.push_back(1.0f / (1.0f + std::exp(-b[t * hv + j])));
      }
    }
    EXPECT_LE(Err(Download<float>(dq, q_ref.size()), q_ref), 1e-6);
    EXPECT_LE(Err(Download<float>(dkk, k_ref.size()), k_ref), 1e-6);
    EXPECT_EQ(Download<float>(dvv, v_ref.size()), v_ref);
    EXPECT_LE(Err(Download<float>(dg, g_ref.size()), g_ref), 1e-6);
    EXPECT_LE(Err(Download<float>(dbeta, beta_ref.size()), beta_ref), 1e-6);
  }
}

TEST(CudaPointwiseTest, GatedNormSiluMulAddRowsGatherMatchCpu) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  std::mt19937 rng(4);
  const int64_t n = 128, rows = 6;
  const std::vector<float> x = Normal(n * rows, rng), w = Normal(n, rng), z = Normal(n * rows, rng), d = Normal(n * rows, rng);
  const std::vector<float> logit = Normal(rows, rng);
  DeviceBuffer dx(x.size() * 4), dw(w.size() * 4), dz(z.size() * 4), dd(d.size() * 4), dl(rows * 4), dy(x.size() * 4);
  dx.Upload(x.data()), dw.Upload(w.data()), dz.Upload(z.data()), dd.Upload(d.data()), dl.Upload(logit.data());

  ASSERT_EQ(lib.api().rms_norm_gated(dx.get<float>(), dw.get<float>(), dz.get<float>(), n, rows, 1e-6f, dy.get<float>(), nullptr), 0);
  Sync();
  std::vector<float> ref(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    cpu::RmsNorm(x.data() + r * n, w.data(), n, 1e-6f, ref.data() + r * n);
    for (int64_t i = 0; i < n; ++i) ref[r * n + i] *= z[r * n + i] / (1.0f + std::exp(-z[r * n + i]));
  }
  EXPECT_LE(Err(Download<float>(dy, ref.size()), ref), 2e-6);

  ASSERT_EQ(lib.api().silu_mul(dx.get<float>(), dz.get<float>(), n * rows, dy.get<float>(), nullptr), 0);
  Sync();
  for (size_t i = 0; i < x.size(); ++i) ref[i] = x[i] / (1.0f + std::exp(-x[i])) * z[i];
  EXPECT_LE(Err(Download<float>(dy, ref.size()), ref), 1e-6);

  ASSERT_EQ(lib.api().add_rows(dx.get<float>(), dd.get<float>(), dl.get<float>(), n, rows, nullptr), 0);
  ASSERT_EQ(lib.api().add_rows(dx.get<float>(), dz.get<float>(), nullptr, n, rows, nullptr), 0);
  Sync();
  for (size_t i = 0; i < x.size(); ++i) ref[i] = x[i] + d[i] / (1.0f + std::exp(-logit[i / n])) + z[i];
  EXPECT_LE(Err(Download<float>(dx, ref.size()), ref), 1e-6);

  const std::vector<int32_t> pick = {5, 0, 5, 2};
  DeviceBuffer dp(pick.size() * 4), dg(pick.size() * n * 4);
  dp.Upload(pick.data());
  ASSERT_EQ(lib.api().gather_rows(dd.get<float>(), dp.get<int32_t>(), 4, n, dg.get<float>(), nullptr), 0);
  Sync();
  const std::vector<float> got = Download<float>(dg, pick.size() * n);
  for (size_t r = 0; r < pick.size(); ++r) {
    EXPECT_TRUE(std::equal(got.begin() + r * n, got.begin() + (r + 1) * n, d.begin() + pick[r] * n)) << r;
  }
}

// gemm against cpu::MatMulReference. Tolerance: the weights (exactly decoded) and x are each rounded
// once to F16 (relative 2^-11 each), then summed in float32: |err| <= (2 * 2^-11 + n_in * 2^-24) *
// abs-sum, which 1.2e-3 * abs-sum covers for n_in <= 4096.
TEST(CudaGemmTest, MatchesCpuReference) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  if (lib.api().gemm_available() == 0) GTEST_SKIP() << "cuBLAS is not installed";
  std::mt19937 rng(17);
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_K, GgmlType::kBf16, GgmlType::kIq3A770}) {
    for (auto [n_in, n_out, n_tokens] : {std::tuple<int64_t, int64_t, int64_t>{256, 96, 16}, {2048, 512, 70}, {512, 1000, 300}}) {
      const std::vector<uint8_t> w = RandomWeights(type, n_in, n_out, rng);
      const std::vector<float> x = Normal(n_in * n_tokens, rng);
      const cpu::WeightMatrix m{type, w.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
      std::vector<float> ref(n_out * n_tokens);
      ASSERT_TRUE(cpu::MatMulReference(m, x.data(), n_tokens, ref.data()).ok());
      const int64_t scratch_bytes = 2 * (n_out * n_in + n_tokens * n_in) + 256;
      DeviceBuffer dw(w.size()), dx(x.size() * 4), dy(ref.size() * 4), ds(scratch_bytes);
      dw.Upload(w.data()), dx.Upload(x.data());
      MoedCudaGemmArgs g{};
      g.ggml_type = static_cast<uint32_t>(type), g.w = dw.get<void>(), g.row_bytes = m.row_bytes;
      g.n_in = n_in, g.n_out = n_out, g.n_tokens = n_tokens, g.x = dx.get<float>(), g.y = dy.get<float>();
      g.scratch = ds.get<void>(), g.scratch_bytes = scratch_bytes;
      ASSERT_EQ(lib.api().gemm(&g, nullptr), 0) << lib.api().last_error();
      Sync();
      const std::vector<float> y = Download<float>(dy, ref.size());
      // float32 precision: the GEMV's bound (float32 sums of exactly decoded weights).
      DeviceBuffer ds32(4 * n_out * n_in + 256), dy32(ref.size() * 4);
      g.precision = MOED_CUDA_GEMM_F32, g.scratch = ds32.get<void>(), g.scratch_bytes = 4 * n_out * n_in + 256;
      g.y = dy32.get<float>();
      ASSERT_EQ(lib.api().gemm(&g, nullptr), 0) << lib.api().last_error();
      Sync();
      const std::vector<float> y32 = Download<float>(dy32, ref.size());
      std::vector<float> row(n_in);
      double worst = 0, worst32 = 0;
      for (int64_t o = 0; o < n_out; ++o) {
        ASSERT_TRUE(DequantizeRow(type, w.data() + o * m.row_bytes, row.data(), n_in).ok());
        for (int64_t t = 0; t < n_tokens; ++t) {
          double abs_sum = 0;
          for (int64_t i = 0; i < n_in; ++i) abs_sum += std::fabs(double{row[i]} * x[t * n_in + i]);
          worst = std::max(worst, std::fabs(y[t * n_out + o] - ref[t * n_out + o]) / (abs_sum + 1e-30));
          worst32 = std::max(worst32, std::fabs(y32[t * n_out + o] - ref[t * n_out + o]) / (abs_sum + 1e-30));
        }
      }
      EXPECT_LE(worst, 1.2e-3) << GgmlTypeName(type) << " " << n_in << "x" << n_out << " tokens " << n_tokens;
      EXPECT_LE(worst32, 2.5e-4) << GgmlTypeName(type) << " float32 " << n_in << "x" << n_out;
    }
  }
  // The tiny fixtures' shapes (rows of 64 and 96, as few as 3 outputs) on a stream of its own, with
  // x at an offset inside a larger buffer as the engine passes it.
  void* stream = nullptr;
  ASSERT_EQ(lib.api().stream_create(&stream), 0);
  for (auto [n_in, n_out, n_tokens] : {std::tuple<int64_t, int64_t, int64_t>{96, 192, 64}, {96, 3, 150}, {64, 256, 64},
                                       {96, 40, 16}}) {
    const GgmlType type = GgmlType::kBf16;
    const std::vector<uint8_t> w = RandomWeights(type, n_in, n_out, rng);
    const std::vector<float> x = Normal(n_in * n_tokens, rng);
    const cpu::WeightMatrix m{type, w.data(), n_in, n_out, static_cast<uint64_t>(RowBytes(type, n_in))};
    std::vector<float> ref(n_out * n_tokens);
    ASSERT_TRUE(cpu::MatMulReference(m, x.data(), n_tokens, ref.data()).ok());
    const int64_t scratch_bytes = 2 * (n_out * n_in + n_tokens * n_in) + 4096;
    DeviceBuffer dw(w.size()), dx((x.size() + 64) * 4), dy(ref.size() * 4), ds(scratch_bytes);
    std::vector<float> padded(64, 0.0f);
    padded.insert(padded.end(), x.begin(), x.end());
    dw.Upload(w.data()), dx.Upload(padded.data());
    MoedCudaGemmArgs g{};
    g.ggml_type = static_cast<uint32_t>(type), g.w = dw.get<void>(), g.row_bytes = m.row_bytes;
    g.n_in = n_in, g.n_out = n_out, g.n_tokens = n_tokens, g.x = dx.get<float>() + 64, g.y = dy.get<float>();
    g.scratch = ds.get<void>(), g.scratch_bytes = scratch_bytes;
    ASSERT_EQ(lib.api().gemm(&g, stream), 0) << lib.api().last_error();
    ASSERT_EQ(lib.api().stream_synchronize(stream), 0);
    const std::vector<float> y = Download<float>(dy, ref.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < y.size(); ++i) worst = std::max(worst, double{std::fabs(y[i] - ref[i])}), scale = std::max(scale, double{std::fabs(ref[i])});
    EXPECT_LE(worst, 2e-3 * scale) << n_in << "x" << n_out << " tokens " << n_tokens;
  }
  ASSERT_EQ(lib.api().stream_destroy(stream), 0);
  MoedCudaGemmArgs bad{};
  bad.n_in = 100;
  EXPECT_NE(lib.api().gemm(&bad, nullptr), 0);
}

TEST(CudaMoeCombineTest, AddsWeightedRowsInSlotOrder) {
  MOED_REQUIRE_GPU();
  const CudaLibrary& lib = *GetBackend().lib;
  std::mt19937 rng(2);
  const int64_t n = 96, tokens = 5, k = 3, rows = tokens * k;
  const std::vector<float> x = Normal(tokens * n, rng), r = Normal(rows * n, rng), w = Normal(tokens * k, rng);
  std::vector<int32_t> row_of(tokens * k);
  for (int64_t i = 0; i < tokens * k; ++i) row_of[i] = static_cast<int32_t>((i * 7) % rows);
  row_of[4] = -1;  // a skipped slot
  DeviceBuffer dx(x.size() * 4), dr(r.size() * 4), dw(w.size() * 4), drow(row_of.size() * 4);
  dx.Upload(x.data()), dr.Upload(r.data()), dw.Upload(w.data()), drow.Upload(row_of.data());
  ASSERT_EQ(lib.api().moe_combine(dx.get<float>(), dr.get<float>(), drow.get<int32_t>(), dw.get<float>(), tokens, k, n,
                                  nullptr), 0);
  Sync();
  std::vector<float> ref = x;
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < n; ++i) {
      float acc = 0;
      for (int64_t s = 0; s < k; ++s) {
        if (row_of[t * k + s] >= 0) acc = std::fma(w[t * k + s], r[row_of[t * k + s] * n + i], acc);
      }
      ref[t * n + i] += acc;
    }
  }
  EXPECT_LE(Err(Download<float>(dx, ref.size()), ref), 1e-6);
}

}  // namespace
}  // namespace moed::cuda
