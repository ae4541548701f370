#pragma once
// Autocast over the two LibTorch C++ APIs: per-backend calls up to 2.3 (is_enabled /
// set_autocast_gpu_dtype, ...), device-typed calls from 2.4 on (is_autocast_enabled(kCUDA), ...).
// AutocastScope is the C++ form of Python's `with torch.autocast(...)`; the training engine
// uses it for bf16 on CUDA, and activation checkpointing replays the enabled flags it captured.
#include <ATen/autocast_mode.h>
#include <torch/version.h>

#define LDDPM_AUTOCAST_DEVICE_API \
  (TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4))

namespace lddpm::models {

inline bool autocastEnabled(c10::DeviceType type) {
#if LDDPM_AUTOCAST_DEVICE_API
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                       : at::autocast::is_cpu_enabled();
#endif
}

inline void setAutocastEnabled(c10::DeviceType type, bool enabled) {
#if LDDPM_AUTOCAST_DEVICE_API
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

inline c10::ScalarType autocastDtype(c10::DeviceType type) {
#if LDDPM_AUTOCAST_DEVICE_API
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void setAutocastDtype(c10::DeviceType type, c10::ScalarType dtype) {
#if LDDPM_AUTOCAST_DEVICE_API
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

// Autocast to `dtype` on `type` for the scope's lifetime when `enabled` (a no-op otherwise);
// restores the previous flag and dtype, and frees the cast-weight cache when the outermost
// scope ends (weights change after the optimiser step, their casts must not be reused).
class AutocastScope {
 public:
  AutocastScope(c10::DeviceType type, bool enabled, c10::ScalarType dtype = c10::kBFloat16)
      : type_(type), active_(enabled) {
    if (!active_) return;
    wasEnabled_ = autocastEnabled(type_);
    wasDtype_ = autocastDtype(type_);
    setAutocastEnabled(type_, true);
    setAutocastDtype(type_, dtype);
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    setAutocastEnabled(type_, wasEnabled_);
    setAutocastDtype(type_, wasDtype_);
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  c10::DeviceType type_;
  bool active_;
  bool wasEnabled_ = false;
  c10::ScalarType wasDtype_ = c10::kBFloat16;
};

}  // namespace lddpm::models
