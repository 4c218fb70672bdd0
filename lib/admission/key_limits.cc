#include "sluice/key_limits.h"

#include "admission/key_windows.h"

namespace sluice {
inline namespace v1 {

const std::vector<Window>& KeyLimits::windows() const {
  static const std::vector<Window>* const kNone = new std::vector<Window>();
  return compiled_ != nullptr ? compiled_->source : *kNone;
}

bool KeyLimits::exact() const { return compiled_ == nullptr || compiled_->exact; }

}  // namespace v1
}  // namespace sluice
