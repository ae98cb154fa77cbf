// The kernel thread count: one process-wide setting read by every parallel kernel, so that a count
// set from one Python thread holds for kernels called from any other.
#pragma once

#include <cstdint>

namespace fastcnn {

// Threads a parallel kernel may use (>= 1).
int kernel_threads();
// Sets it; n < 1 is clamped to 1. In a process forked after kernels ran on several threads it stays
// 1, because the OpenMP thread pool is not inherited across fork().
void set_kernel_threads(int n);
// Threads for a problem of `work` inner-loop iterations: small problems stay on one thread because
// waking a team costs more than it saves. A result above 1 is announced (expect_parallel): kernels
// size their team on entry, so their serial work before the first parallel section (packing, a
// zero fill) overlaps the helpers' wake-up.
int threads_for(double work);
// Threads for a memory-bound pass over n floats (a few operations an element: ReLU, a batch norm's
// affine map, a gradient mask): two from ~75k elements, where a helper's share repays its wake-up.
int streaming_threads(int64_t n);
// Announces a parallel section on `threads` threads that the caller will start within about a
// millisecond: sleeping pool helpers wake now and watch for it instead of waking when it starts
// (20-50 us later on an idle machine, far more on a busy one), and watching ones watch on. A
// kernel with serial work between two parallel sections calls it before that work. Cheap when
// the helpers are awake; does nothing for threads <= 1.
void expect_parallel(int threads);

// Runs fn(ctx, task, slot) for every task in [0, tasks) on at most `threads` threads: the calling
// thread (slot 0) and pool helpers (slots 1 .. threads - 1) claim tasks one at a time. The caller
// never waits for a helper that has not started: one the scheduler has not run yet (another
// process holds its core) joins no task, so a busy machine costs what one thread costs instead of
// a scheduler slice per call, as an OpenMP barrier does. Results must not depend on which slot
// runs a task. While the pool serves one caller, a concurrent caller runs its tasks alone.
using TaskFn = void (*)(void* ctx, int64_t task, int slot);
void run_tasks(int64_t tasks, int threads, TaskFn fn, void* ctx);

// run_tasks with a callable body(task, slot).
template <class Body>
void parallel_for(int64_t tasks, int threads, const Body& body) {
  if (threads <= 1 || tasks <= 1) {
    for (int64_t t = 0; t < tasks; ++t) body(t, 0);
    return;
  }
  run_tasks(
      tasks, threads,
      [](void* ctx, int64_t t, int slot) { (*static_cast<const Body*>(ctx))(t, slot); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// Splits [0, n) into contiguous ranges, a few per thread, and runs body(begin, end, slot) on each.
template <class Body>
void parallel_ranges(int64_t n, int threads, const Body& body) {
  const int64_t parts = threads <= 1 ? 1 : (n < 4 * threads ? n : 4 * threads);
  parallel_for(parts, threads,
               [&](int64_t p, int slot) { body(p * n / parts, (p + 1) * n / parts, slot); });
}

}  // namespace fastcnn
