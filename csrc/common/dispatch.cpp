// CPU feature detection and the process-wide variant choice.
#include "common/dispatch.h"

#include <cstdlib>
#include <stdexcept>

namespace fastcnn {
namespace {

bool cpu_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}

CpuVariant choose_cpu_variant() {
  const std::vector<CpuVariant> runnable = runnable_cpu_variants();
  const char* forced = std::getenv("FASTCNN_CPU_VARIANT");
  if (forced == nullptr || *forced == '\0') return runnable.back();
  for (CpuVariant v : runnable)
    if (std::string(forced) == cpu_variant_name(v)) return v;
  std::string names;
  for (CpuVariant v : runnable) names += std::string(names.empty() ? "" : ", ") + cpu_variant_name(v);
  throw std::invalid_argument("FASTCNN_CPU_VARIANT: expected one of the variants this CPU runs (" +
                              names + "), got '" + forced + "'");
}

}  // namespace

const char* cpu_variant_name(CpuVariant v) {
  switch (v) {
    case CpuVariant::ref: return "ref";
    case CpuVariant::avx2: return "avx2";
    case CpuVariant::avx512: return "avx512";
  }
  return "unknown";
}

std::vector<CpuVariant> runnable_cpu_variants() {
  std::vector<CpuVariant> out{CpuVariant::ref};
  if (cpu_has_avx2()) out.push_back(CpuVariant::avx2);
  if (cpu_has_avx512()) out.push_back(CpuVariant::avx512);
  return out;
}

CpuVariant active_cpu_variant() {
  static const CpuVariant chosen = choose_cpu_variant();
  return chosen;
}

}  // namespace fastcnn
