// Process-wide kernel thread count.
#include "common/threads.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <cstdlib>

#ifdef FASTCNN_WITH_OPENMP
#include <omp.h>
#endif

namespace fastcnn {
namespace {

// Default: OMP_NUM_THREADS when the user set it, else the cores this process may run on.
int default_threads() {
#ifdef FASTCNN_WITH_OPENMP
  if (std::getenv("OMP_NUM_THREADS") != nullptr) return omp_get_max_threads();
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set) > 0 ? CPU_COUNT(&set) : 1;
  return omp_get_num_procs();
#else
  return 1;
#endif
}

std::atomic<int>& thread_setting() {
  static std::atomic<int> n{default_threads()};
  return n;
}

// libgomp's thread pool does not survive fork(): a child whose parent already ran a parallel region
// would wait forever on pool threads that no longer exist. Such a child runs every kernel on its
// own thread, as PyTorch does after fork.
std::atomic<bool> pool_started{false};
std::atomic<bool> pool_lost{false};

void on_fork_child() {
  if (pool_started.load(std::memory_order_relaxed)) {
    pool_lost.store(true, std::memory_order_relaxed);
    thread_setting().store(1, std::memory_order_relaxed);
  }
}

const int fork_handler_registered = pthread_atfork(nullptr, nullptr, on_fork_child);

}  // namespace

int kernel_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_kernel_threads(int n) {
  (void)fork_handler_registered;
#ifdef FASTCNN_WITH_OPENMP
  if (pool_lost.load(std::memory_order_relaxed)) n = 1;
  thread_setting().store(n < 1 ? 1 : n, std::memory_order_relaxed);
#else
  (void)n;  // without OpenMP every kernel is serial
#endif
}

int threads_for(double work) {
  // About 50k multiply-adds take ~10 us on one core, the cost of waking an OpenMP team.
  constexpr double kWorkPerThread = 5e4;
  const int n = kernel_threads();
  if (work < kWorkPerThread) return 1;
  const double useful = work / kWorkPerThread;
  const int threads = useful < n ? static_cast<int>(useful) : n;
  if (threads > 1 && !pool_started.load(std::memory_order_relaxed))
    pool_started.store(true, std::memory_order_relaxed);
  return threads;
}

}  // namespace fastcnn
