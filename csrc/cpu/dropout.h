// Dropout: every variant's declarations, the op table, and the counter-based mask hash they share.
// x, y, dy, dx are flat float32 arrays of length n; mask is a flat uint8 array (1 kept, 0 dropped).
#pragma once
#include <cstdint>

#include "common/dispatch.h"

namespace fastcnn {

#define FASTCNN_DROPOUT_DECLARATIONS                                                           \
  void dropout_forward(int64_t n, uint64_t seed, uint64_t drop_below, float scale,              \
                       const float* x, float* y, uint8_t* mask);                                \
  void dropout_backward(int64_t n, float scale, const float* dy, const uint8_t* mask, float* dx);

namespace ref { FASTCNN_DROPOUT_DECLARATIONS }
namespace avx2 { FASTCNN_DROPOUT_DECLARATIONS }
namespace avx512 { FASTCNN_DROPOUT_DECLARATIONS }
#undef FASTCNN_DROPOUT_DECLARATIONS

struct DropoutOps {
  void (*dropout_forward)(int64_t, uint64_t, uint64_t, float, const float*, float*, uint8_t*);
  void (*dropout_backward)(int64_t, float, const float*, const uint8_t*, float*);
};

inline DropoutOps dropout_ops(CpuVariant v) {
  switch (v) {
    case CpuVariant::avx2: return {avx2::dropout_forward, avx2::dropout_backward};
    case CpuVariant::avx512: return {avx512::dropout_forward, avx512::dropout_backward};
    default: return {ref::dropout_forward, ref::dropout_backward};
  }
}

// Internal linkage, so each ISA build keeps its own copy (no merged inline definitions).
namespace {

// splitmix64's output function: a bijective 64-bit mix.
constexpr uint64_t dropout_mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The stream key of a seed: mixing first keeps nearby seeds (0, 1, 2...) unrelated.
constexpr uint64_t dropout_key(uint64_t seed) { return dropout_mix(seed); }

// 53 random bits for element i: the i-th output of splitmix64 started at `key`. Being a function
// of (key, i) alone, the mask does not depend on how the elements are split across threads.
constexpr uint64_t dropout_bits(uint64_t key, uint64_t i) {
  return dropout_mix(key + (i + 1) * 0x9E3779B97F4A7C15ull) >> 11;
}

}  // namespace

}  // namespace fastcnn
