// Internal to the CPU kernels: 8-float vector helpers and the x86-64-v3 function cloning used by
// the delta rule and attention kernels.
//
// Why: the build is -O2 without -march, where GCC vectorises only loops whose trip count it can
// see, and float reductions not at all. These helpers use GCC/Clang vector types (8 floats,
// lowered to SSE pairs on the baseline target), and MOED_CPU_MULTIVERSION clones a hot function
// for x86-64-v3 (AVX2 + FMA), picked once at load time (GCC on x86-64 Linux only; elsewhere the
// function is compiled once for the baseline). Helpers are always_inline so that they are
// compiled for the target of the clone that calls them.
#ifndef MOED_KERNELS_CPU_VEC8_H_
#define MOED_KERNELS_CPU_VEC8_H_

#include <cstdint>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define MOED_CPU_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MOED_CPU_MULTIVERSION
#endif
#define MOED_CPU_INLINE inline __attribute__((always_inline))

namespace moed::cpu::vec8 {

using V8 = float __attribute__((vector_size(32)));

// Vectors only cross helper boundaries by reference: passing them by value would change the
// calling convention between the baseline and the AVX clone (GCC's -Wpsabi).
MOED_CPU_INLINE void Load(V8& v, const float* p) { std::memcpy(&v, p, sizeof(V8)); }
MOED_CPU_INLINE void Store(float* p, const V8& v) { std::memcpy(p, &v, sizeof(V8)); }
MOED_CPU_INLINE float HSum(const V8& v) {
  return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]));
}

MOED_CPU_INLINE float Dot(const float* a, const float* b, int64_t n) {
  V8 s0 = {}, s1 = {}, a0, a1, b0, b1;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Load(a0, a + i);
    Load(a1, a + i + 8);
    Load(b0, b + i);
    Load(b1, b + i + 8);
    s0 += a0 * b0;
    s1 += a1 * b1;
  }
  for (; i + 8 <= n; i += 8) {
    Load(a0, a + i);
    Load(b0, b + i);
    s0 += a0 * b0;
  }
  float s = HSum(s0 + s1);
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Two dot products of x against a and b in one pass over x.
MOED_CPU_INLINE void Dot2(const float* x, const float* a, const float* b, int64_t n, float& xa,
                          float& xb) {
  V8 sa0 = {}, sa1 = {}, sb0 = {}, sb1 = {}, x0, x1, t0, t1;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Load(x0, x + i);
    Load(x1, x + i + 8);
    Load(t0, a + i);
    Load(t1, a + i + 8);
    sa0 += x0 * t0;
    sa1 += x1 * t1;
    Load(t0, b + i);
    Load(t1, b + i + 8);
    sb0 += x0 * t0;
    sb1 += x1 * t1;
  }
  for (; i + 8 <= n; i += 8) {
    Load(x0, x + i);
    Load(t0, a + i);
    sa0 += x0 * t0;
    Load(t0, b + i);
    sb0 += x0 * t0;
  }
  xa = HSum(sa0 + sa1);
  xb = HSum(sb0 + sb1);
  for (; i < n; ++i) {
    xa += x[i] * a[i];
    xb += x[i] * b[i];
  }
}

// y += a * x
MOED_CPU_INLINE void Axpy(float a, const float* x, float* y, int64_t n) {
  V8 vx, vy;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Load(vx, x + i);
    Load(vy, y + i);
    vy += a * vx;
    Store(y + i, vy);
  }
  for (; i < n; ++i) y[i] += a * x[i];
}

// y = a * y + b * x
MOED_CPU_INLINE void ScaleAxpy(float a, float b, const float* x, float* y, int64_t n) {
  V8 vx, vy;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Load(vx, x + i);
    Load(vy, y + i);
    vy = a * vy + b * vx;
    Store(y + i, vy);
  }
  for (; i < n; ++i) y[i] = a * y[i] + b * x[i];
}

// y = a * x
MOED_CPU_INLINE void ScaleCopy(float a, const float* x, float* y, int64_t n) {
  V8 vx;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Load(vx, x + i);
    vx *= a;
    Store(y + i, vx);
  }
  for (; i < n; ++i) y[i] = a * x[i];
}

// y *= x element-wise
MOED_CPU_INLINE void Mul(const float* x, float* y, int64_t n) {
  V8 vx, vy;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Load(vx, x + i);
    Load(vy, y + i);
    vy *= vx;
    Store(y + i, vy);
  }
  for (; i < n; ++i) y[i] *= x[i];
}

// y *= a
MOED_CPU_INLINE void Scale(float a, float* y, int64_t n) {
  V8 vy;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Load(vy, y + i);
    vy *= a;
    Store(y + i, vy);
  }
  for (; i < n; ++i) y[i] *= a;
}

}  // namespace moed::cpu::vec8

#endif  // MOED_KERNELS_CPU_VEC8_H_
