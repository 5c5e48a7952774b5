// A fixed pool of worker threads for data-parallel loops (the CPU backend's only threading).
// ParallelFor splits [0, n) into contiguous chunks, runs them on the pool and the calling thread,
// and returns when all are done. Thread-safe for one caller at a time (the engine's step thread).
#ifndef MOED_KERNELS_CPU_THREAD_POOL_H_
#define MOED_KERNELS_CPU_THREAD_POOL_H_

#include <cstdint>
#include <functional>

namespace moed::cpu {

class ThreadPool {
 public:
  // n_threads >= 1 counts the caller; 1 means everything runs inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;
  // Calls fn(begin, end) on disjoint chunks covering [0, n); chunks are at least `grain` long.
  void ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace moed::cpu

#endif  // MOED_KERNELS_CPU_THREAD_POOL_H_
