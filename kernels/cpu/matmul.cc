// MatMul on block-format weights. Work is split over tiles of kRowTile output rows. A thread
// walks its tile in column chunks of kColChunk weights: it decodes the chunk of each row once into
// a small thread-local buffer (F32 weights are read in place), which stays in L1, and multiplies
// it with the same columns of every token, so a prefill of n tokens pays the decoding once per
// row, not n times.
//
// Arithmetic: each (row, token) output has 8 float lanes; lane k accumulates w[i] * x[i] for
// i = k mod 8 in increasing i, and the lanes are summed in a fixed pairwise order. Every kernel
// below (4 rows x 1 token, 2 rows x 2 tokens, 1 x 1) does exactly this, so a result does not
// depend on the thread count, the tile position or how many tokens share the call. The kernels
// use GCC vector extensions (4 floats, plain SSE2 without -march flags; any GCC/clang target)
// so that the accumulators stay in registers.
#include "kernels/cpu/matmul.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/base/strings.h"
#include "kernels/quants/dequantize.h"
#include "kernels/quants/dequantize_impl.h"

namespace moed::cpu {
namespace {

using V4 = float __attribute__((vector_size(16)));

constexpr int64_t kRowTile = 4;
constexpr int kLanes = 8;
// Columns decoded at a time: a multiple of every block size (1, 32, 64, 256); 4 rows of it are
// 16 KiB of floats.
constexpr int64_t kColChunk = 1024;
// Bound on n_in and on n_tokens * n_in / n_tokens * n_out: keeps every size product far from
// int64 overflow while exceeding any real model by orders of magnitude.
constexpr int64_t kMaxElems = int64_t{1} << 40;
// Multiply-adds a parallel chunk should hold at least, so that tiny products stay on one thread.
constexpr int64_t kMinChunkWork = int64_t{1} << 16;

inline V4 Load(const float* p) {
  V4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void Store(float* p, V4 v) { std::memcpy(p, &v, sizeof(v)); }

// The scalar end of a row whose length is not a multiple of 8 (F32/F16/BF16 only): columns
// [n8, n) go to lanes 0.. in order, continuing the lane pattern because n8 % 8 == 0.
inline void AddTail(const float* w, const float* x, int64_t n8, int64_t n, float* acc) {
  for (int64_t i = n8; i < n; ++i) acc[i - n8] += w[i] * x[i];
}

// acc[r * 8 + lane] += rows r < 4 (stride ws apart) times one token's x, over n columns.
void Accumulate4x1(const float* w, int64_t ws, const float* x, int64_t n, float* acc) {
  const float* w0 = w;
  const float* w1 = w + ws;
  const float* w2 = w + 2 * ws;
  const float* w3 = w + 3 * ws;
  V4 a0 = Load(acc), b0 = Load(acc + 4), a1 = Load(acc + 8), b1 = Load(acc + 12);
  V4 a2 = Load(acc + 16), b2 = Load(acc + 20), a3 = Load(acc + 24), b3 = Load(acc + 28);
  const int64_t n8 = n & ~int64_t{7};
  for (int64_t i = 0; i < n8; i += 8) {
    const V4 x0 = Load(x + i), x1 = Load(x + i + 4);
    a0 += Load(w0 + i) * x0;
    b0 += Load(w0 + i + 4) * x1;
    a1 += Load(w1 + i) * x0;
    b1 += Load(w1 + i + 4) * x1;
    a2 += Load(w2 + i) * x0;
    b2 += Load(w2 + i + 4) * x1;
    a3 += Load(w3 + i) * x0;
    b3 += Load(w3 + i + 4) * x1;
  }
  Store(acc, a0), Store(acc + 4, b0), Store(acc + 8, a1), Store(acc + 12, b1);
  Store(acc + 16, a2), Store(acc + 20, b2), Store(acc + 24, a3), Store(acc + 28, b3);
  if (n8 != n) {
    AddTail(w0, x, n8, n, acc);
    AddTail(w1, x, n8, n, acc + 8);
    AddTail(w2, x, n8, n, acc + 16);
    AddTail(w3, x, n8, n, acc + 24);
  }
}

// Two rows (w, w + ws) times two tokens (x, x + xs). acc0 holds token 0's lanes for both rows
// (row r at acc0 + 8r), acc1 token 1's. Twice the arithmetic per load of Accumulate4x1, for
// prefill.
void Accumulate2x2(const float* w, int64_t ws, const float* x, int64_t xs, int64_t n, float* acc0, float* acc1) {
  const float* w0 = w;
  const float* w1 = w + ws;
  const float* x0p = x;
  const float* x1p = x + xs;
  V4 a00 = Load(acc0), b00 = Load(acc0 + 4), a01 = Load(acc0 + 8), b01 = Load(acc0 + 12);
  V4 a10 = Load(acc1), b10 = Load(acc1 + 4), a11 = Load(acc1 + 8), b11 = Load(acc1 + 12);
  const int64_t n8 = n & ~int64_t{7};
  for (int64_t i = 0; i < n8; i += 8) {
    const V4 wa0 = Load(w0 + i), wb0 = Load(w0 + i + 4);
    const V4 wa1 = Load(w1 + i), wb1 = Load(w1 + i + 4);
    const V4 xa0 = Load(x0p + i), xb0 = Load(x0p + i + 4);
    a00 += wa0 * xa0;
    b00 += wb0 * xb0;
    a01 += wa1 * xa0;
    b01 += wb1 * xb0;
    const V4 xa1 = Load(x1p + i), xb1 = Load(x1p + i + 4);
    a10 += wa0 * xa1;
    b10 += wb0 * xb1;
    a11 += wa1 * xa1;
    b11 += wb1 * xb1;
  }
  Store(acc0, a00), Store(acc0 + 4, b00), Store(acc0 + 8, a01), Store(acc0 + 12, b01);
  Store(acc1, a10), Store(acc1 + 4, b10), Store(acc1 + 8, a11), Store(acc1 + 12, b11);
  if (n8 != n) {
    AddTail(w0, x0p, n8, n, acc0);
    AddTail(w1, x0p, n8, n, acc0 + 8);
    AddTail(w0, x1p, n8, n, acc1);
    AddTail(w1, x1p, n8, n, acc1 + 8);
  }
}

// One row times one token (the rows of a partial last tile).
void Accumulate1x1(const float* w, const float* x, int64_t n, float* acc) {
  V4 a = Load(acc), b = Load(acc + 4);
  const int64_t n8 = n & ~int64_t{7};
  for (int64_t i = 0; i < n8; i += 8) {
    a += Load(w + i) * Load(x + i);
    b += Load(w + i + 4) * Load(x + i + 4);
  }
  Store(acc, a), Store(acc + 4, b);
  if (n8 != n) AddTail(w, x, n8, n, acc);
}

// Asks for [p, p + bytes) to be brought into cache (a hint; no effect on results).
inline void Prefetch(const uint8_t* p, uint64_t bytes) {
  for (uint64_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
}

// Sum of the 8 lanes in a fixed pairwise order.
inline float ReduceLanes(const float* a) {
  return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

bool Overlaps(const void* a, uint64_t a_bytes, const void* b, uint64_t b_bytes) {
  const auto pa = reinterpret_cast<uintptr_t>(a);
  const auto pb = reinterpret_cast<uintptr_t>(b);
  return a_bytes > 0 && b_bytes > 0 && pa < pb + b_bytes && pb < pa + a_bytes;
}

// Checks the weight description; `what` names the caller in messages.
absl::Status ValidateWeight(const WeightMatrix& w, const char* what) {
  const GgmlTypeTraits* t = FindGgmlType(w.type);
  if (t == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": unknown ggml type id ", static_cast<uint32_t>(w.type)));
  }
  if (!t->can_dequantize || quants_internal::BlockDecoderFor(w.type) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no CPU kernel for weight type ", Sv(t->name)));
  }
  if (w.n_in < 0 || w.n_out < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": negative weight shape n_in = ", w.n_in, ", n_out = ", w.n_out));
  }
  if (w.n_in > kMaxElems) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": n_in = ", w.n_in, " is too large"));
  }
  if (w.n_in % t->block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": n_in = ", w.n_in, " is not a multiple of the ",
                                                   Sv(t->name), " block size ", t->block_size));
  }
  const auto need = static_cast<uint64_t>(RowBytes(w.type, w.n_in));
  if (w.row_bytes < need) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": row_bytes = ", w.row_bytes, " is less than the ",
                                                   need, " bytes of ", w.n_in, " ", Sv(t->name), " weights"));
  }
  if (w.n_out > 0 && w.row_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max() / w.n_out)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": weight size overflows (n_out = ", w.n_out,
                                                   ", row_bytes = ", w.row_bytes, ")"));
  }
  if (w.data == nullptr && w.n_out > 0 && need > 0) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": null weight data"));
  }
  return absl::OkStatus();
}

absl::Status ValidateProduct(const WeightMatrix& w, const float* x, int64_t n_tokens, const float* y,
                             const char* what) {
  if (absl::Status s = ValidateWeight(w, what); !s.ok()) return s;
  if (n_tokens < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": negative n_tokens ", n_tokens));
  if (n_tokens > 0 && (w.n_in > kMaxElems / n_tokens || w.n_out > kMaxElems / n_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": n_tokens = ", n_tokens, " is too large"));
  }
  const uint64_t x_bytes = static_cast<uint64_t>(n_tokens * w.n_in) * sizeof(float);
  const uint64_t y_bytes = static_cast<uint64_t>(n_tokens * w.n_out) * sizeof(float);
  if ((x == nullptr && x_bytes > 0) || (y == nullptr && y_bytes > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": null activation or output buffer"));
  }
  if (Overlaps(x, x_bytes, y, y_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": output overlaps the input activations"));
  }
  return absl::OkStatus();
}

// Runs fn(begin, end) over [0, n) on the pool, or inline without one.
void Parallel(ThreadPool* pool, int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (pool == nullptr) {
    if (n > 0) fn(0, n);
    return;
  }
  pool->ParallelFor(n, grain, fn);
}

}  // namespace

WeightMatrix ExpertSlice(GgmlType type, const uint8_t* data, int64_t n_in, int64_t n_out, int64_t e) {
  WeightMatrix w;
  w.type = type;
  w.n_in = n_in;
  w.n_out = n_out;
  const GgmlTypeTraits* t = FindGgmlType(type);
  // An invalid description keeps row_bytes = 0 and data = nullptr, which MatMul rejects.
  if (t == nullptr || n_in < 0 || n_out < 0 || e < 0 || n_in % t->block_size != 0) return w;
  w.row_bytes = static_cast<uint64_t>(RowBytes(type, n_in));
  w.data = data == nullptr ? nullptr : data + static_cast<uint64_t>(e) * static_cast<uint64_t>(n_out) * w.row_bytes;
  return w;
}

absl::Status MatMul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, ThreadPool* pool) {
  if (absl::Status s = ValidateProduct(w, x, n_tokens, y, "MatMul"); !s.ok()) return s;
  const int64_t n_in = w.n_in;
  const int64_t n_out = w.n_out;
  if (n_tokens == 0 || n_out == 0) return absl::OkStatus();
  if (n_in == 0) {
    std::fill(y, y + n_tokens * n_out, 0.0f);
    return absl::OkStatus();
  }
  const GgmlTypeTraits& traits = *FindGgmlType(w.type);
  // F32 rows are used in place when they are float-aligned; everything else is decoded.
  const bool in_place = w.type == GgmlType::kF32 && w.row_bytes % sizeof(float) == 0 &&
                        reinterpret_cast<uintptr_t>(w.data) % alignof(float) == 0;
  // The weight was validated above, so each chunk goes straight to the format's decoder, without
  // DequantizeRow's per-call checks. Non-null: ValidateWeight accepted a dequantizable type.
  const quants_internal::BlockDecoder decode = quants_internal::BlockDecoderFor(w.type);
  const int64_t n_tiles = (n_out + kRowTile - 1) / kRowTile;
  const int64_t grain = std::max<int64_t>(1, kMinChunkWork / (kRowTile * n_in * n_tokens));
  const size_t acc_floats = static_cast<size_t>(n_tokens * kRowTile * kLanes);

  Parallel(pool, n_tiles, grain, [&](int64_t tile_begin, int64_t tile_end) {
    thread_local std::vector<float> buffer;  // kRowTile rows of one column chunk, decoded
    thread_local std::vector<float> acc;     // [token][row in tile][lane]
    if (!in_place && buffer.size() < static_cast<size_t>(kRowTile * kColChunk)) {
      buffer.resize(static_cast<size_t>(kRowTile * kColChunk));
    }
    if (acc.size() < acc_floats) acc.resize(acc_floats);
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t o = tile * kRowTile;
      const int64_t rows = std::min(kRowTile, n_out - o);
      std::fill(acc.begin(), acc.begin() + static_cast<std::ptrdiff_t>(acc_floats), 0.0f);
      for (int64_t c0 = 0; c0 < n_in; c0 += kColChunk) {
        const int64_t len = std::min(kColChunk, n_in - c0);
        // Byte offset of column c0 inside a row (c0 is a whole number of blocks).
        const uint64_t col_bytes = static_cast<uint64_t>(c0 / traits.block_size * traits.type_size);
        const uint8_t* src = w.data + static_cast<uint64_t>(o) * w.row_bytes + col_bytes;
        const uint64_t chunk_bytes = static_cast<uint64_t>(len / traits.block_size * traits.type_size);
        // The next tile's same columns, requested while this one is decoded: a tile reads its
        // rows in runs of a few hundred bytes, too short for the hardware prefetcher to follow.
        const bool prefetch = o + 2 * kRowTile <= n_out;
        const float* rw;
        int64_t stride;
        if (in_place) {
          rw = reinterpret_cast<const float*>(src);
          stride = static_cast<int64_t>(w.row_bytes / sizeof(float));
        } else {
          for (int64_t r = 0; r < rows; ++r) {
            const uint8_t* row_src = src + static_cast<uint64_t>(r) * w.row_bytes;
            if (prefetch) Prefetch(row_src + kRowTile * w.row_bytes, chunk_bytes);
            float* dst = buffer.data() + r * kColChunk;
            decode(row_src, dst, len / traits.block_size);
          }
          rw = buffer.data();
          stride = kColChunk;
        }
        const float* xc = x + c0;
        int64_t t = 0;
        if (rows == kRowTile) {
          for (; t + 2 <= n_tokens; t += 2) {
            float* acc0 = acc.data() + t * kRowTile * kLanes;
            float* acc1 = acc0 + kRowTile * kLanes;
            const float* xt = xc + t * n_in;
            Accumulate2x2(rw, stride, xt, n_in, len, acc0, acc1);
            Accumulate2x2(rw + 2 * stride, stride, xt, n_in, len, acc0 + 2 * kLanes, acc1 + 2 * kLanes);
          }
          for (; t < n_tokens; ++t) {
            Accumulate4x1(rw, stride, xc + t * n_in, len, acc.data() + t * kRowTile * kLanes);
          }
        } else {
          for (; t < n_tokens; ++t) {
            for (int64_t r = 0; r < rows; ++r) {
              Accumulate1x1(rw + r * stride, xc + t * n_in, len, acc.data() + (t * kRowTile + r) * kLanes);
            }
          }
        }
      }
      for (int64_t t = 0; t < n_tokens; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          y[t * n_out + o + r] = ReduceLanes(acc.data() + (t * kRowTile + r) * kLanes);
        }
      }
    }
  });
  return absl::OkStatus();
}

absl::Status MatMulReference(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y) {
  if (absl::Status s = ValidateProduct(w, x, n_tokens, y, "MatMulReference"); !s.ok()) return s;
  std::vector<float> row(static_cast<size_t>(w.n_in));
  for (int64_t o = 0; o < w.n_out; ++o) {
    const uint8_t* src = w.data + static_cast<uint64_t>(o) * w.row_bytes;
    if (absl::Status s = DequantizeRow(w.type, src, row.data(), w.n_in); !s.ok()) return s;
    for (int64_t t = 0; t < n_tokens; ++t) {
      const float* xt = x + t * w.n_in;
      double sum = 0.0;
      for (int64_t i = 0; i < w.n_in; ++i) sum += static_cast<double>(row[i]) * static_cast<double>(xt[i]);
      y[t * w.n_out + o] = static_cast<float>(sum);
    }
  }
  return absl::OkStatus();
}

absl::Status GetRow(const WeightMatrix& w, int64_t row, float* out) {
  if (absl::Status s = ValidateWeight(w, "GetRow"); !s.ok()) return s;
  if (row < 0 || row >= w.n_out) {
    return absl::InvalidArgumentError(absl::StrCat("GetRow: row ", row, " is outside [0, ", w.n_out, ")"));
  }
  if (out == nullptr && w.n_in > 0) return absl::InvalidArgumentError("GetRow: null output buffer");
  return DequantizeRow(w.type, w.data + static_cast<uint64_t>(row) * w.row_bytes, out, w.n_in);
}

}  // namespace moed::cpu
