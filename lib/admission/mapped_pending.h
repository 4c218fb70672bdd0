// Internal: a Pending<To> read from a Pending<From> (a TokenBudget reservation from the decision
// under way), so an object turns a backend's result into its own without knowing the scope.
#ifndef SLUICE_LIB_ADMISSION_MAPPED_PENDING_H_
#define SLUICE_LIB_ADMISSION_MAPPED_PENDING_H_

#include <functional>
#include <memory>
#include <utility>

#include "sluice/pending.h"

namespace sluice {
inline namespace v1 {
namespace internal {

template <typename From, typename To>
class MappedPending final : public PendingSource<To> {
 public:
  MappedPending(Pending<From> from, std::function<To(From)> map)
      : from_(std::move(from)), map_(std::move(map)) {}

  bool done() const override { return from_.done(); }
  int fd() const override { return from_.fd(); }
  To Finish(absl::Status* error) override {
    From result = from_.Get();
    *error = from_.status();
    return map_(std::move(result));
  }
  // `from_`, dropped with this, gives back what it was granted.
  void Abandon() override {}

 private:
  Pending<From> from_;
  const std::function<To(From)> map_;
};

// `from`'s result, turned by `map` once it is in.
template <typename To, typename From>
Pending<To> MapPending(Pending<From> from, std::function<To(From)> map) {
  if (from.done()) {  // decided on the spot: map it now
    From result = from.Get();
    return Pending<To>(map(std::move(result)), from.status());
  }
  return Pending<To>(std::make_unique<MappedPending<From, To>>(std::move(from), std::move(map)));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_ADMISSION_MAPPED_PENDING_H_
