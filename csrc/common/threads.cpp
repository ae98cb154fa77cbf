// Process-wide kernel thread count.
#include "common/threads.h"

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

}  // namespace

int kernel_threads() { return thread_setting().load(std::memory_order_relaxed); }

void set_kernel_threads(int n) {
#ifdef FASTCNN_WITH_OPENMP
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
  return useful < n ? static_cast<int>(useful) : n;
}

}  // namespace fastcnn
