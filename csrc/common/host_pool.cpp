// The caching host allocator (host_pool.h): free lists keyed by the rounded block size, one mutex.
#include "common/host_pool.h"

#include <pthread.h>

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <new>
#include <unordered_map>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define FASTCNN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FASTCNN_ASAN 1
#endif
#endif
#if defined(FASTCNN_ASAN)
#include <sanitizer/asan_interface.h>
#endif

namespace fastcnn {
namespace {

// AddressSanitizer sees a whole rounded block as allocated. The bytes past a request, and all of
// a cached block, are poisoned, so that a kernel writing past its workspace (or a read of an
// array that died) is reported instead of landing in slack that no one checks.
#if defined(FASTCNN_ASAN)
void poison(void* p, size_t n) { ASAN_POISON_MEMORY_REGION(p, n); }
void unpoison(void* p, size_t n) { ASAN_UNPOISON_MEMORY_REGION(p, n); }
#else
void poison(void*, size_t) {}
void unpoison(void*, size_t) {}
#endif

// Every block starts with a header (the block's rounded size), then the 64-byte aligned data.
constexpr size_t kHeader = 64;
constexpr size_t kPage = 4096;
// Default limit: enough for a training step's activations and gradients of a small CNN at batch
// 128-256 to be reused from step to step. FASTCNN_HOST_POOL_MB overrides it (0: no caching).
constexpr int64_t kDefaultLimit = int64_t{512} << 20;

int64_t default_limit() {
  if (const char* env = std::getenv("FASTCNN_HOST_POOL_MB")) {
    char* end = nullptr;
    const long long mb = std::strtoll(env, &end, 10);
    if (end != env && *end == '\0' && mb >= 0 && mb < (int64_t{1} << 40)) return mb << 20;
  }
  return kDefaultLimit;
}

struct Pool {
  std::mutex m;
  std::unordered_map<size_t, std::vector<void*>> free_lists;  // rounded size -> blocks
  int64_t cached = 0, limit = default_limit(), hits = 0, misses = 0;
  std::atomic<bool> caching{limit > 0};
};

// Never destroyed: arrays may die (and give blocks back) while the interpreter shuts down.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// fork() while another thread holds the mutex would leave it locked forever in the child: the
// pool is locked around fork and unlocked on both sides, so the child inherits consistent lists.
// (Today every caller holds the GIL, as os.fork() does, so this is a guard for callers without it.)
void before_fork() { pool().m.lock(); }
void after_fork() { pool().m.unlock(); }
const int atfork_registered = pthread_atfork(before_fork, after_fork, after_fork);

size_t& header_size(void* block) { return *static_cast<size_t*>(block); }
void* data_of(void* block) { return static_cast<char*>(block) + kHeader; }
void* block_of(void* data) { return static_cast<char*>(data) - kHeader; }

// The block's data as handed out for a request of `bytes`: the rest poisoned (ASan builds).
void* hand_out(void* block, size_t size, size_t bytes) {
  void* data = data_of(block);
  unpoison(data, size - kHeader);
  poison(static_cast<char*>(data) + bytes, size - kHeader - bytes);
  return data;
}

void release(void* block, size_t size) {
  unpoison(data_of(block), size - kHeader);
  std::free(block);
}

// Frees cached blocks (any sizes) until cached <= target; call with the mutex held.
void shrink_locked(Pool& p, int64_t target) {
  for (auto it = p.free_lists.begin(); it != p.free_lists.end() && p.cached > target;) {
    std::vector<void*>& blocks = it->second;
    while (!blocks.empty() && p.cached > target) {
      release(blocks.back(), it->first);
      blocks.pop_back();
      p.cached -= static_cast<int64_t>(it->first);
    }
    it = blocks.empty() ? p.free_lists.erase(it) : std::next(it);
  }
}

}  // namespace

void* host_pool_alloc(size_t bytes) {
  (void)atfork_registered;
  if (bytes > (size_t{1} << 47)) return nullptr;
  const bool pooled = bytes >= kHostPoolMinBytes;
  const size_t size = pooled ? (bytes + kHeader + kPage - 1) / kPage * kPage
                             : (bytes + kHeader + 63) / 64 * 64;
  Pool& p = pool();
  if (pooled) {
    std::lock_guard<std::mutex> lock(p.m);
    auto it = p.free_lists.find(size);
    if (it != p.free_lists.end() && !it->second.empty()) {
      void* block = it->second.back();
      it->second.pop_back();
      p.cached -= static_cast<int64_t>(size);
      ++p.hits;
      return hand_out(block, size, bytes);
    }
    ++p.misses;
  }
  void* block = std::aligned_alloc(64, size);
  if (block == nullptr) {
    // Out of memory: give the cache back to the system and try once more.
    host_pool_trim();
    block = std::aligned_alloc(64, size);
    if (block == nullptr) return nullptr;
  }
  header_size(block) = size;
  return hand_out(block, size, bytes);
}

void host_pool_free(void* data) {
  if (data == nullptr) return;
  void* block = block_of(data);
  const size_t size = header_size(block);
  if (size >= kHostPoolMinBytes) {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.m);
    if (p.cached + static_cast<int64_t>(size) <= p.limit) {
      poison(data, size - kHeader);
      p.free_lists[size].push_back(block);
      p.cached += static_cast<int64_t>(size);
      return;
    }
  }
  release(block, size);
}

bool host_pool_caching() { return pool().caching.load(std::memory_order_relaxed); }

HostPoolStats host_pool_stats() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  return {p.cached, p.limit, p.hits, p.misses};
}

void host_pool_set_limit(int64_t bytes) {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  p.limit = bytes < 0 ? 0 : bytes;
  p.caching.store(p.limit > 0, std::memory_order_relaxed);
  shrink_locked(p, p.limit);
}

void host_pool_trim() {
  Pool& p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  shrink_locked(p, 0);
}

}  // namespace fastcnn
