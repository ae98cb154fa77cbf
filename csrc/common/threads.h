// The kernel thread count: one process-wide setting read by every parallel kernel, so that a count
// set from one Python thread holds for kernels called from any other.
#pragma once

namespace fastcnn {

// Threads a parallel kernel may use (>= 1).
int kernel_threads();
// Sets it; n < 1 is clamped to 1. In a process forked after kernels ran on several threads it stays
// 1, because the OpenMP thread pool is not inherited across fork().
void set_kernel_threads(int n);
// Threads for a problem of `work` inner-loop iterations: small problems stay on one thread because
// waking a team costs more than it saves.
int threads_for(double work);

}  // namespace fastcnn
