// WeightCache: one layer's packed weights (e.g. conv2d's Winograd filter points), kept between
// calls. The packed form is made again whenever the weights differ, bit for bit, from the copy of
// those it was made from, so neither an optimizer step nor a write into the weight array can be
// served a stale result. Python holds one per layer as _core.WeightCache.
#pragma once
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

namespace fastcnn::bind {

class WeightCache {
 public:
  // The packed form (packed_floats floats) of the weights w (n floats) for `key` (the variant
  // and whatever else the packing depends on), made by pack(out) unless the cache holds it
  // already. Locks the cache into `hold` for the caller's kernel call; returns null, packing
  // nothing, when another thread holds it (that caller then packs its own). Call without the GIL.
  const float* packed(std::unique_lock<std::mutex>& hold, const std::vector<int64_t>& key,
                      const float* w, int64_t n, int64_t packed_floats,
                      const std::function<void(float*)>& pack);

 private:
  std::mutex m_;
  std::vector<int64_t> key_;  // empty: nothing cached
  std::vector<float> raw_;    // the weights packed_ was made from
  std::vector<float> packed_;  // with room to start the packed form on a 64-byte boundary
  float* start();
};

}  // namespace fastcnn::bind
