// CPU feature detection and the choice of kernel variant, made once per process.
#pragma once
#include <string>
#include <vector>

namespace fastcnn {

enum class CpuVariant { ref, avx2, avx512 };

const char* cpu_variant_name(CpuVariant v);
// Variants compiled into this module that this CPU can run, reference first.
std::vector<CpuVariant> runnable_cpu_variants();
// The variant every op uses: the best runnable one, or FASTCNN_CPU_VARIANT when it names a runnable
// variant. Throws std::invalid_argument for an unknown or unrunnable name.
CpuVariant active_cpu_variant();

}  // namespace fastcnn
