// Process-wide kernel thread count and the helper-thread pool the parallel kernels run on.
#include "common/threads.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

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

// Helper threads do not survive fork(), and a child could inherit the pool's mutex locked: a child
// whose parent already ran parallel work runs every kernel on its own thread, as PyTorch does after
// fork.
std::atomic<bool> pool_started{false};
std::atomic<bool> pool_lost{false};

void on_fork_child() {
  if (pool_started.load(std::memory_order_relaxed)) {
    pool_lost.store(true, std::memory_order_relaxed);
    thread_setting().store(1, std::memory_order_relaxed);
  }
}

const int fork_handler_registered = pthread_atfork(nullptr, nullptr, on_fork_child);

// One job at a time. Helpers sleep on `wake`; a job opens threads - 1 slots, and a helper joins
// under the mutex only while slots are open, so the caller, once its own claims run dry, closes
// the slots and waits for the helpers that did join (they are running: a short wait).
// A helper that has just finished a job watches `generation` for a while before it sleeps: the
// next parallel kernel of a layer sequence usually starts within tens of microseconds, and a
// sleeping helper joins a job 20-50 us after it is posted (most calls of a training step on our
// 2-core machines), while a watching one joins within 5 us. The caller likewise watches
// `running` for the helpers still at work before it sleeps on `idle`, which would cost it as
// long again to wake from.
// A kernel announces its parallel section when it sizes its team (expect_parallel), before any
// serial work of its own: that moves `watch_until` on, so watching helpers keep watching through
// the serial work, and wakes sleeping ones, so that their wake-up overlaps it. The next job ends
// the announcement.
// The caller keeps the helpers off its own CPU (keep_helpers_off).
struct Pool {
  std::mutex m;
  std::condition_variable wake, idle;
  std::atomic<bool> busy{false};
  // The tasks not yet claimed, [front, back) after `first`: front in the low 32 bits, back in the
  // high ones, so that both ends are claimed with one compare-and-swap.
  std::atomic<uint64_t> unclaimed{0};
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t first = 0;
  std::atomic<uint64_t> generation{0};
  std::atomic<int> running{0};  // helpers in the current job; changed under m
  int open_slots = 0, next_slot = 1, helpers = 0;
  std::vector<pthread_t> helper_threads;  // changed under m
  cpu_set_t allowed{};                    // the CPUs of the thread that started the pool
  std::atomic<int> helpers_off_cpu{-1};   // the CPU the helpers' masks leave out, or -1
  // Written by every announcement, read by watching helpers: a line of its own.
  alignas(64) std::atomic<int64_t> watch_until{0};  // steady_clock nanoseconds
  std::atomic<int> sleeping{0};  // helpers waiting on `wake`; changed under m
};

// Never destroyed: helper threads may still wait on it while the process exits.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// The caller claims tasks from the front, helpers from the back. A layer's consecutive calls then
// give each thread about the same tasks, so each core's L2 keeps the same part of the data (at
// batch 1 the 1.6 MB weight of a 3136 -> 128 linear layer stays split between the two L2s),
// where claims from one counter dealt the tasks out anew on every call.
void claim_tasks(Pool& p, TaskFn fn, void* ctx, int64_t first, int slot) {
  const bool from_front = slot == 0;
  uint64_t span = p.unclaimed.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t front = span & 0xffffffffu, back = span >> 32;
    if (front >= back) return;
    const uint64_t claimed = from_front ? front : back - 1;
    const uint64_t rest = from_front ? span + 1 : span - (uint64_t{1} << 32);
    if (p.unclaimed.compare_exchange_weak(span, rest, std::memory_order_relaxed)) {
      fn(ctx, first + static_cast<int64_t>(claimed), slot);
      span = p.unclaimed.load(std::memory_order_relaxed);
    }
  }
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Long enough to bridge the Python code between the kernels of consecutive layers; short enough
// that an idle process stops using the core at once.
constexpr int64_t kWatchNs = 100'000;
// How long an announced section is waited for: a kernel's serial work before its first parallel
// section (packing w^T, a zero fill, a db pass) with room to spare. A kernel that announces a
// section is about to run one, so a helper rarely waits this out.
constexpr int64_t kExpectNs = 1'000'000;

// Spins until done() or `until` (steady_clock ns, re-read: an announcement may move it) passes.
template <class Done, class Until>
void watch(const Done& done, const Until& until) {
  while (!done() && now_ns() < until()) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
}

// Narrows every helper's CPU mask to leave out `cpu`, where the caller runs, unless it already
// does; called under m when a job is posted or announced. The kernel tends to wake a helper on
// its waker's CPU, and since the caller and its helpers keep sleeping and waking, the load
// balancer often leaves them stacked there: on our 2-vCPU machines a 2-thread 1x1 conv
// (8x128x28x28, K128) then took 1.5-2.4 ms, against 1.5 on one thread and 0.8 with the two
// threads on different CPUs, for seconds at a time. Helpers that moved themselves off the caller's
// CPU when they found it there stayed pinned to the other one, and when the caller itself moved
// there (waking from a sleep) the helper could not leave: a 2-thread linear 128x3136 -> 128 ran
// at 1-thread speed (0.56-0.6 ms against 0.31) for blocks of calls. The caller sees its own CPU
// when it posts, so it moves the helpers, before its work begins.
void keep_helpers_off(Pool& p, int cpu) {
  if (p.helper_threads.empty() || cpu < 0 ||
      cpu == p.helpers_off_cpu.load(std::memory_order_relaxed))
    return;
  if (!CPU_ISSET(cpu, &p.allowed) || CPU_COUNT(&p.allowed) < 2) return;
  cpu_set_t others = p.allowed;
  CPU_CLR(cpu, &others);
  for (const pthread_t t : p.helper_threads) pthread_setaffinity_np(t, sizeof(others), &others);
  p.helpers_off_cpu.store(cpu, std::memory_order_relaxed);
}

void helper_loop(Pool* p) {
  uint64_t seen = 0;          // the last job this helper joined or found closed
  int64_t watched_until = 0;  // the end of its own watch after its last job
  const auto posted = [&] { return p->generation.load(std::memory_order_acquire) != seen; };
  const auto until = [&] {
    return std::max(watched_until, p->watch_until.load(std::memory_order_relaxed));
  };
  const auto open = [&] { return p->generation.load() != seen && p->open_slots > 0; };
  std::unique_lock<std::mutex> lock(p->m);
  for (;;) {
    lock.unlock();
    watch(posted, until);
    lock.lock();
    // `sleeping` goes up before watch_until is read again, and expect_parallel moves watch_until
    // before it reads `sleeping`: one of the two sees the other's write.
    p->sleeping.fetch_add(1);
    while (!open() && now_ns() >= std::max(watched_until, p->watch_until.load()))
      p->wake.wait(lock);
    p->sleeping.fetch_sub(1);
    if (!open()) {
      // A job that closed before this helper came, or an announcement: it watches for the next.
      seen = p->generation.load();
      continue;
    }
    seen = p->generation.load();
    --p->open_slots;
    ++p->running;
    const int slot = p->next_slot++;
    TaskFn fn = p->fn;
    void* ctx = p->ctx;
    const int64_t first = p->first;
    lock.unlock();
    claim_tasks(*p, fn, ctx, first, slot);
    watched_until = now_ns() + kWatchNs;
    lock.lock();
    if (--p->running == 0) p->idle.notify_all();
  }
}

// One job of run_tasks: tasks [first, first + tasks), tasks < 2^32.
void run_job(Pool& p, int64_t first, int64_t tasks, int threads, TaskFn fn, void* ctx) {
  {
    std::lock_guard<std::mutex> lock(p.m);
    if (p.helper_threads.empty() &&
        pthread_getaffinity_np(pthread_self(), sizeof(p.allowed), &p.allowed) != 0)
      CPU_ZERO(&p.allowed);
    try {
      for (; p.helpers < threads - 1; ++p.helpers) {
        std::thread helper(helper_loop, &p);
        p.helper_threads.push_back(helper.native_handle());
        helper.detach();
        p.helpers_off_cpu.store(-1, std::memory_order_relaxed);  // the new one is not narrowed
      }
    } catch (const std::system_error&) {
      // No more threads: the helpers there are (maybe none) share the work.
    }
    keep_helpers_off(p, sched_getcpu());
    p.fn = fn, p.ctx = ctx, p.first = first;
    p.unclaimed.store(static_cast<uint64_t>(tasks) << 32);
    ++p.generation;
    p.open_slots = threads - 1, p.next_slot = 1, p.running.store(0);
    // The announced section has started: after it a helper watches kWatchNs, as after any job,
    // instead of what is left of the announcement's millisecond.
    p.watch_until.store(0, std::memory_order_relaxed);
  }
  p.wake.notify_all();
  claim_tasks(p, fn, ctx, first, 0);
  {
    std::unique_lock<std::mutex> lock(p.m);
    p.open_slots = 0;
    if (p.running.load() > 0) {
      lock.unlock();
      const int64_t until = now_ns() + kWatchNs;
      watch([&] { return p.running.load(std::memory_order_acquire) == 0; },
            [&] { return until; });
      lock.lock();
      p.idle.wait(lock, [&] { return p.running.load() == 0; });
    }
  }
}

}  // namespace

void run_tasks(int64_t tasks, int threads, TaskFn fn, void* ctx) {
  Pool& p = pool();
  if (threads <= 1 || tasks <= 1 || p.busy.exchange(true)) {
    for (int64_t t = 0; t < tasks; ++t) fn(ctx, t, 0);
    return;
  }
  constexpr int64_t kMaxJob = int64_t{1} << 31;  // fits the 32-bit ends of Pool::unclaimed
  for (int64_t first = 0; first < tasks; first += kMaxJob)
    run_job(p, first, tasks - first < kMaxJob ? tasks - first : kMaxJob, threads, fn, ctx);
  p.busy.store(false);
}

void expect_parallel(int threads) {
  if (threads <= 1) return;
  Pool& p = pool();
  p.watch_until.store(now_ns() + kExpectNs);
  const int cpu = sched_getcpu();
  const bool moved = cpu != p.helpers_off_cpu.load(std::memory_order_relaxed);
  if (p.sleeping.load() == 0 && !moved) return;
  // Taking the mutex orders this wake after a helper's last look at watch_until before it sleeps.
  {
    std::lock_guard<std::mutex> lock(p.m);
    keep_helpers_off(p, cpu);
  }
  p.wake.notify_all();
}

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
  // 150k multiply-adds take 2-3 us on one core at the fast kernels' 100-150 GFLOP/s. Below twice
  // that, handing half to a helper costs more than it saves: at batch 1 a 1->32 3x3 conv on 28x28
  // (225k) took 7.3 us on one thread and 15.3 on two (while the caller still slept until its
  // helper finished). The fmnist-bn eval forward at batch 1 took 0.102 ms with a 250k gate and
  // 0.090 with 150k (the 3136->128 linear layer, 401k, then splits; bench_train.py, 2 threads,
  // alternating runs).
  constexpr double kWorkPerThread = 1.5e5;
  const int n = kernel_threads();
  if (work < kWorkPerThread) return 1;
  const double useful = work / kWorkPerThread;
  const int threads = useful < n ? static_cast<int>(useful) : n;
  if (threads > 1 && !pool_started.load(std::memory_order_relaxed))
    pool_started.store(true, std::memory_order_relaxed);
  expect_parallel(threads);
  return threads;
}

int streaming_threads(int64_t n) {
  // With the threshold at 1.5M elements (weight 1/5), one thread ran arrays that two threads run
  // in half the time: 2 threads, ReLU on 131k / 262k / 524k / 1M floats, 13.4 / 47 / 157 / 330 us
  // against torch's 8.8 / 20 / 59 / 162 (which splits from 32k); at 65k 6.3 against 5.3 and at
  // 33k level (3.6 / 3.5).
  return threads_for(4.0 * static_cast<double>(n));
}

}  // namespace fastcnn
