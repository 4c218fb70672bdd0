// Internal: a Pending<T> whose result waits for a Redis reply (the PendingSource behind every
// cluster-scope Start... call), so that sluice/pending.h carries no Redis type.
#ifndef SLUICE_LIB_STORES_REDIS_PENDING_H_
#define SLUICE_LIB_STORES_REDIS_PENDING_H_

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sluice/pending.h"
#include "sluice/redis_store.h"
#include "stores/redis_scripts.h"

namespace sluice {
inline namespace v1 {
namespace internal {

// Turns the Redis reply (or the failure to get one) into the result. A reply Redis could not
// decide (a configuration error, an impossible reply) becomes a refusal, with the error in
// `*error`.
template <typename T>
using ReplyFinisher =
    std::function<T(const absl::StatusOr<std::vector<int64_t>>& reply, absl::Status* error)>;

template <typename T>
class RedisPending final : public PendingSource<T> {
 public:
  RedisPending(std::shared_ptr<PendingReply> reply, absl::Duration timeout,
               ReplyFinisher<T> finish)
      : reply_(std::move(reply)), timeout_(timeout), finish_(std::move(finish)) {}

  bool done() const override { return reply_->done(); }
  int fd() const override { return reply_->fd(); }
  T Finish(absl::Status* error) override { return finish_(reply_->Wait(timeout_), error); }
  // A reply already in is read and its result let go (a permit releases); one still on its way
  // is undone by the store when it lands (Delivery::undo).
  void Abandon() override {
    if (reply_->Abandon()) return;
    absl::StatusOr<std::vector<int64_t>> reply = reply_->Wait(absl::ZeroDuration());
    absl::Status ignored;
    if (reply.ok()) (void)finish_(reply, &ignored);
  }

 private:
  const std::shared_ptr<PendingReply> reply_;
  const absl::Duration timeout_;
  const ReplyFinisher<T> finish_;
};

// A Pending<T> that waits for `reply` at most `timeout`, then runs `finish`.
template <typename T>
Pending<T> WaitForReply(std::shared_ptr<PendingReply> reply, absl::Duration timeout,
                        ReplyFinisher<T> finish) {
  return Pending<T>(
      std::make_unique<RedisPending<T>>(std::move(reply), timeout, std::move(finish)));
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_PENDING_H_
