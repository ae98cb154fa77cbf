// The packed, cache-blocked SGEMM that conv2d and linear build on (fast variants only: the ref
// kernels are plain loops). C = A * B with A (m x k) and B (k x n) described by packing callbacks,
// so an operand can be a strided matrix, a transposed one, or an image read as im2col on the fly.
// Letters here are GEMM letters: m rows of C, n columns of C, k the reduction depth.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastcnn {

// Per-call scratch that a binding allocates for a fast kernel: `floats` floats at `data`, the size
// the family's *_workspace_floats(shape, threads) asked for. Kernels use at most `threads` threads.
struct Workspace {
  float* data;
  int threads;
  int64_t floats;
};

// p rounded up to its 64-byte boundary, where kernels start their workspace regions (the
// *_workspace_floats sizes leave room for the step).
inline float* align64(float* p) {
  return reinterpret_cast<float*>((reinterpret_cast<uintptr_t>(p) + 63) / 64 * 64);
}

// Throws std::logic_error unless [p, p + floats) lies in ws. Kernels check the regions they carve
// before their threads write them, so a workspace sized for another kernel is an error, never a
// write past the block.
inline void require_room(const Workspace& ws, const float* p, int64_t floats, const char* kernel) {
  if (floats > 0 && (p < ws.data || floats > ws.data + ws.floats - p))
    throw std::logic_error(std::string(kernel) + ": needs " + std::to_string(floats) +
                           " floats of workspace at offset " + std::to_string(p - ws.data) +
                           ", but " + std::to_string(ws.floats) + " were allocated");
}

// Checks the regions of threads [0, nt) that a kernel carves `stride` floats apart from `first`,
// of which each uses `need`: they must not overlap, and the last must lie in ws.
inline void require_slots(const Workspace& ws, const float* first, int64_t stride, int64_t need,
                          int nt, const char* kernel) {
  if (need > stride)
    throw std::logic_error(std::string(kernel) + ": a thread's scratch needs " +
                           std::to_string(need) + " floats, but the layout gives it " +
                           std::to_string(stride));
  require_room(ws, first + (nt > 1 ? nt - 1 : 0) * stride, need, kernel);
}

// Packs lines [line0, line0 + lines) and depth [k0, k0 + depth) of an operand (A: lines are rows;
// B: lines are columns) into consecutive panels `width` lines wide. A panel stores its depth rows
// one after another, each `width` floats; lines past `lines` in the last panel are written as 0.
using GemmPackFn = void (*)(const void* ctx, int64_t line0, int64_t lines, int64_t k0,
                            int64_t depth, int width, float* dst);
// For an A operand that may be read in place: the address of element (line0, k0) when depth
// [k0, k0 + depth) of every line from line0 on is contiguous, lines *ld floats apart; nullptr
// when it is not (that block is packed).
using GemmRowsFn = const float* (*)(const void* ctx, int64_t line0, int64_t k0, int64_t depth,
                                    int64_t* ld);
struct GemmOperand {
  GemmPackFn pack;
  const void* ctx;
  GemmRowsFn rows = nullptr;
  // An A operand packed ahead, for all its lines from 0 and the whole depth of the gemm call,
  // in gemm_prepacked's layout (pack(ctx, 0, m, 0, k, gemm_mr(), packed) writes it): read in
  // place, neither rows nor pack are called. For A blocks that several gemm calls share (the
  // column ranges of one product), which would each pack them again.
  const float* packed = nullptr;
  // A B operand whose depth rows may be read in place (GemmRowsFn with lines and depth swapped:
  // the address of element (line0, k0) when, at each depth, lines from line0 on are contiguous,
  // depth rows *ld floats apart; nullptr when they are not).
  GemmRowsFn depth_rows = nullptr;
};

// Operand element (line, k) at p[line * line_stride + k * depth_stride]; packed by pack_strided.
struct StridedOperand {
  const float* p;
  int64_t line_stride, depth_stride;
};

#define FASTCNN_GEMM_DECLARATIONS                                                              \
  /* Micro-tile rows (A panel width) and columns (B panel width). */                          \
  int gemm_mr();                                                                               \
  int gemm_nr();                                                                               \
  /* B panel width when gemm reads B in place (GemmOperand::depth_rows): column ranges of a  \
     product split in multiples of it leave no partial panels inside. */                      \
  int gemm_depth_rows_nr();                                                                    \
  /* Floats of 64-byte-aligned scratch one gemm call needs (its packed A and B blocks). */    \
  int64_t gemm_scratch_floats();                                                               \
  void pack_strided(const void* ctx, int64_t line0, int64_t lines, int64_t k0, int64_t depth,  \
                    int width, float* dst);                                                    \
  /* A StridedOperand's rows where its depth is contiguous (depth_stride 1). */               \
  const float* strided_rows(const void* ctx, int64_t line0, int64_t k0, int64_t depth,         \
                            int64_t* ld);                                                      \
  /* A StridedOperand's depth rows where its lines are contiguous (line_stride 1). */         \
  const float* strided_depth_rows(const void* ctx, int64_t line0, int64_t k0, int64_t depth,   \
                                  int64_t* ld);                                                \
  /* C[i0 + i, j0 + j] (= or +=) sum_k A[i0 + i, k] * B[k, j0 + j] for i < m, j < n; c points  \
     at element (i0, j0) with row stride ldc. With row_bias (not accumulating), C[i0 + i, *]  \
     = row_bias[i] + the sum, as if C had been filled with the bias and accumulated. k == 0   \
     writes zeros or the bias (or leaves C when accumulating). Single-threaded: callers split  \
     C into tiles; every element is summed in the same order whatever the tiling, so results  \
     do not depend on the thread count. */                                                    \
  void gemm(int64_t i0, int64_t m, int64_t j0, int64_t n, int64_t k, GemmOperand a,            \
            GemmOperand b, float* c, int64_t ldc, bool accumulate, float* scratch,            \
            const float* row_bias = nullptr);                                                 \
  /* gemm on operands the caller packed already: ceil(m / gemm_mr()) A panels of k * gemm_mr()  \
     floats and ceil(n / gemm_nr()) B panels of k * gemm_nr() floats, one after another, in    \
     pack_strided's panel layout (zero-padded past m and n). No scratch. */                    \
  void gemm_prepacked(int64_t m, int64_t n, int64_t k, const float* a, const float* b,         \
                      float* c, int64_t ldc, bool accumulate);

namespace avx2 { FASTCNN_GEMM_DECLARATIONS }
namespace avx512 { FASTCNN_GEMM_DECLARATIONS }
#undef FASTCNN_GEMM_DECLARATIONS

}  // namespace fastcnn
