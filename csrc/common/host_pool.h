// A caching host allocator for the large arrays the kernels return. Glibc hands each large new
// block out as a fresh mapping, and the first touch of every page faults (~0.5 ms per MB); a block
// whose array died is kept here, already touched, and handed out again for the next request of
// the same rounded size. Small blocks go straight to malloc (they come from the heap, touched).
#pragma once

#include <cstddef>
#include <cstdint>

namespace fastcnn {

struct HostPoolStats {
  int64_t cached_bytes;  // held for reuse, in no live array
  int64_t limit_bytes;   // cached_bytes never exceeds this
  int64_t hits, misses;  // pooled requests served from the cache / freshly allocated
};

// Requests of at least this many bytes are pooled; smaller ones are plain malloc.
constexpr size_t kHostPoolMinBytes = size_t{128} << 10;

// A 64-byte aligned block of at least `bytes` bytes, or nullptr when the system is out of memory.
// Thread-safe, and safe in a child after fork(). Blocks are uninitialized (reused ones hold old
// data).
void* host_pool_alloc(size_t bytes);
// Returns a block from host_pool_alloc: cached for reuse while the cache is under its limit,
// otherwise freed. Thread-safe.
void host_pool_free(void* p);

HostPoolStats host_pool_stats();
// False when the limit is 0: callers then allocate as they would without the pool.
bool host_pool_caching();
// Sets the cache limit (0 disables caching) and frees cached blocks beyond it.
void host_pool_set_limit(int64_t bytes);
// Frees every cached block.
void host_pool_trim();

}  // namespace fastcnn
