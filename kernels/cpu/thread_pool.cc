// ThreadPool: n_threads - 1 persistent workers plus the calling thread. A ParallelFor publishes
// one job (a generation number under a mutex); the caller and the workers claim chunk indices
// from an atomic counter, so uneven chunks balance themselves. Workers spin briefly before
// sleeping on a condition variable, because the engine issues many small loops back to back
// (one per weight matrix per layer) and a futex wake-up per loop would dominate decode latency.
#include "kernels/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

namespace moed::cpu {
namespace {

// Set while a thread runs chunks of some pool's job, so that a nested ParallelFor (a chunk that
// calls ParallelFor again) runs inline instead of deadlocking on the busy pool.
thread_local bool t_inside_job = false;

// How many times an idle worker polls for a new job before it sleeps. Each poll is a relaxed
// load plus a yield; a few thousand is tens of microseconds, about one layer's gap.
constexpr int kSpinPolls = 2000;

}  // namespace

struct ThreadPool::Impl {
  int n_threads = 1;
  std::vector<std::thread> workers;

  std::mutex mu;
  std::condition_variable wake;  // workers wait here for a new generation or shutdown
  std::condition_variable done;  // the caller waits here for the job's workers to leave
  bool shutdown = false;         // guarded by mu
  bool job_open = false;         // guarded by mu: workers may still join the current job
  int busy = 0;                  // guarded by mu: workers that joined the current job
  std::atomic<uint64_t> generation{0};

  // The current job; written by the caller before it bumps `generation` (under mu), read by the
  // workers after they see the new generation (under mu), so no extra ordering is needed.
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  int64_t n = 0;
  int64_t chunk = 1;
  int64_t n_chunks = 0;
  std::atomic<int64_t> next_chunk{0};

  // Claims and runs chunks until none is left. A worker counts itself in `busy` before it
  // claims anything, so once the caller has seen the counter run out, busy == 0 means done.
  void RunChunks() {
    for (;;) {
      const int64_t c = next_chunk.fetch_add(1, std::memory_order_relaxed);
      if (c >= n_chunks) break;
      const int64_t begin = c * chunk;
      (*fn)(begin, std::min(n, begin + chunk));
    }
  }

  void WorkerLoop() {
    uint64_t seen = 0;
    for (;;) {
      for (int i = 0; i < kSpinPolls && generation.load(std::memory_order_acquire) == seen; ++i) {
        std::this_thread::yield();
      }
      std::unique_lock<std::mutex> lock(mu);
      wake.wait(lock, [&] { return shutdown || generation.load(std::memory_order_relaxed) != seen; });
      if (shutdown) return;
      seen = generation.load(std::memory_order_relaxed);
      if (!job_open) continue;  // the caller already finished this job alone
      ++busy;
      lock.unlock();
      t_inside_job = true;
      RunChunks();
      t_inside_job = false;
      lock.lock();
      if (--busy == 0) done.notify_one();
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : impl_(new Impl) {
  impl_->n_threads = std::max(1, n_threads);
  impl_->workers.reserve(static_cast<size_t>(impl_->n_threads - 1));
  for (int i = 1; i < impl_->n_threads; ++i) {
    impl_->workers.emplace_back([this] { impl_->WorkerLoop(); });
  }
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->shutdown = true;
  }
  impl_->wake.notify_all();
  for (std::thread& t : impl_->workers) t.join();
  delete impl_;
}

int ThreadPool::size() const { return impl_->n_threads; }

void ThreadPool::ParallelFor(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(1, grain);
  Impl& s = *impl_;
  if (s.n_threads == 1 || n <= grain || t_inside_job) {
    fn(0, n);
    return;
  }
  // About four chunks per thread balance uneven work without much claiming traffic; never
  // below the grain the caller asked for.
  const int64_t target_chunks = 4 * static_cast<int64_t>(s.n_threads);
  const int64_t chunk = std::max(grain, (n + target_chunks - 1) / target_chunks);
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.fn = &fn;
    s.n = n;
    s.chunk = chunk;
    s.n_chunks = (n + chunk - 1) / chunk;
    s.next_chunk.store(0, std::memory_order_relaxed);
    s.job_open = true;
    s.generation.fetch_add(1, std::memory_order_release);
  }
  s.wake.notify_all();
  t_inside_job = true;
  s.RunChunks();
  t_inside_job = false;
  // Every chunk has been claimed; wait for the workers still running theirs. Closing the job
  // under the mutex guarantees no late worker touches `fn` after we return.
  std::unique_lock<std::mutex> lock(s.mu);
  s.done.wait(lock, [&] { return s.busy == 0; });
  s.job_open = false;
  s.fn = nullptr;
}

}  // namespace moed::cpu
