// RateLimiter, LeakyBucket, TokenBudget (and its Reservation).
//
// The GIL is deliberately *kept* around single decisions: a decision is tens of nanoseconds, less
// than releasing and re-taking the GIL costs, and it never blocks. It is released around the work
// that scales with the table (dropping idle keys).
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>
#include <limits>

#include "bindings.h"
#include "sluice/leaky_bucket.h"
#include "sluice/rate_limiter.h"
#include "sluice/redis_store.h"
#include "sluice/scope.h"
#include "sluice/token_budget.h"

namespace sluice_python {
namespace {

using sluice::Decision;
using sluice::LeakyBucket;
using sluice::RateLimiter;
using sluice::TokenBudget;
using Reservation = sluice::TokenBudget::Reservation;

const sluice::ClusterOptions kCluster{};  // the defaults of every cluster keyword

int64_t MinBurst(const std::vector<sluice::Window>& windows) {
  int64_t least = std::numeric_limits<int64_t>::max();
  for (const auto& w : windows) least = std::min(least, w.effective_burst());
  return least;
}

void BindRateLimiter(py::module_& m) {
  py::class_<RateLimiter>(m, "RateLimiter", R"doc(
Requests per key against one or several windows at once (GCRA). Thread-safe; never blocks.

Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
and ``redis_name="name"`` (``mode="strict"``: one round trip per decision; ``mode="leased"``: local
decisions from leases, overshoot at most limit * lease_ttl / period), and ``on_failure`` =
"allow" | "deny" | "local" (limit / local_share) while Redis cannot answer.

    limiter = sluice.RateLimiter([sluice.Window.per_second(10, burst=20),
                                  sluice.Window.per_hour(1000)])
    if not limiter.allow(f"{tenant}:{app}"):
        ...  # 429

A request passes only if every window has room; a refusal charges no window. Idle keys are
dropped on their own; ``max_keys`` bounds the keys that are mid-window at once, and a *new* key
beyond it raises ``sluice.CapacityError`` from ``try_acquire`` (``allow`` returns False).)doc")
      .def(py::init([](std::vector<sluice::Window> windows, int64_t max_keys,
                       const sluice::Clock* clock, std::optional<std::string> shared_region,
                       std::shared_ptr<sluice::RedisStore> redis, std::optional<std::string> redis_name,
                       const std::string& on_failure, std::optional<int64_t> local_share, const std::string& mode,
                       int64_t lease_units, double lease_ttl) {
             RateLimiter::Options o;
             o.windows = std::move(windows);
             o.max_keys = max_keys;
             o.shared_region = shared_region.value_or("");
             o.cluster = ClusterFromPython("sluice.RateLimiter", std::move(redis), std::move(redis_name),
                                           on_failure, local_share);
             o.cluster.lease_units = lease_units;
             o.cluster.lease_ttl = SecondsToDuration(lease_ttl, "lease_ttl");
             o.cluster.mode = ClusterModeFromName("sluice.RateLimiter", mode);
             return ValueOrThrow(RateLimiter::Create(o, ClockOrDefault(clock)));
           }),
           py::arg("windows"), py::kw_only(), py::arg("max_keys") = sluice::ScopeOptions{}.max_keys,
           py::arg("clock") = nullptr, py::arg("shared_region") = py::none(),
           py::arg("redis") = nullptr, py::arg("redis_name") = py::none(),
           py::arg("on_failure") = FailureModeName(kCluster.on_failure), py::arg("local_share") = py::none(),
           py::arg("mode") = ClusterModeName(kCluster.mode),
           py::arg("lease_units") = kCluster.lease_units,
           py::arg("lease_ttl") = absl::ToDoubleSeconds(kCluster.lease_ttl),
           py::keep_alive<1, 4>())
      .def(
          "start",
          [](const py::object& self, std::string_view key, int64_t cost) {
            return KeepingAlive(ValueOrThrow(Self<RateLimiter>(self).Start(key, cost)), self);
          },
          py::arg("key"), py::arg("cost") = 1,
          "Starts a decision and returns a PendingDecision at once (cluster scope: the reply is on "
          "its way; wait for its fileno() to become readable, then call result()).")
      .def(
          "allow_without_waiting",
          [](RateLimiter& rl, std::string_view key, int64_t cost) -> py::object {
            if (cost < 1 || cost > MinBurst(rl.options().windows)) {
              ThrowIfError(rl.TryAcquire(key, cost).status());  // raises InvalidArgument
            }
            const std::optional<bool> allowed = rl.AllowWithoutWaiting(key, cost);
            if (!allowed.has_value()) return py::none();
            return py::bool_(*allowed);
          },
          py::arg("key"), py::arg("cost") = 1,
          "allow() when it can decide without waiting for Redis (always outside cluster\n"
          "scope; in leased mode when this process's lease covers it); else None: use start().")
      .def_property_readonly("failure_mode_decisions", &RateLimiter::failure_mode_decisions)
      .def_property_readonly("leased_local_decisions", &RateLimiter::leased_local_decisions)
      .def_property_readonly("lease_round_trips", &RateLimiter::lease_round_trips)
      .def_property_readonly("cluster",
                             [](const RateLimiter& rl) { return rl.options().cluster.store != nullptr; })
      .def(
          "allow",
          [](RateLimiter& rl, std::string_view key, int64_t cost) {
            if (rl.options().cluster.store != nullptr) {  // waits for Redis: let others run
              py::gil_scoped_release release;
              absl::StatusOr<sluice::Decision> d = rl.TryAcquire(key, cost);
              if (d.ok()) return d->allowed;
              py::gil_scoped_acquire acquire;
              ThrowIfError(d.status());
            }
            if (rl.Allow(key, cost)) return true;
            if (cost < 1 || cost > MinBurst(rl.options().windows)) {
              ThrowIfError(rl.TryAcquire(key, cost).status());  // raises InvalidArgument
            }
            return false;
          },
          py::arg("key"), py::arg("cost") = 1,
          "Takes `cost` units for `key` if every window has room. Returns whether it did (False\n"
          "also for a new key beyond max_keys). The fastest call; try_acquire returns the\n"
          "Decision behind the answer.")
      .def(
          "try_acquire",
          [](RateLimiter& rl, std::string_view key, int64_t cost) {
            absl::StatusOr<sluice::Decision> d;
            if (rl.options().cluster.store != nullptr) {
              py::gil_scoped_release release;
              d = rl.TryAcquire(key, cost);
            } else {
              d = rl.TryAcquire(key, cost);
            }
            return ValueOrThrow(std::move(d));
          },
          py::arg("key"), py::arg("cost") = 1,
          "Takes `cost` units for `key` if every window has room; returns the Decision (truthy\n"
          "when allowed; remaining, retry_after, ...). A new key beyond max_keys raises\n"
          "sluice.CapacityError; allow() is the yes/no fast path.")
      .def(
          "peek",
          [](RateLimiter& rl, std::string_view key) {
            sluice::PendingDecision pending = rl.StartPeek(key);
            return GetReleasingGil(pending);
          },
          py::arg("key"),
          "What `key` has left, without taking anything: `allowed` (would a request of cost 1\n"
          "pass now), `remaining`, and `retry_after` when it would not.")
      .def(
          "start_peek",
          [](const py::object& self, std::string_view key) {
            return KeepingAlive(Self<RateLimiter>(self).StartPeek(key), self);
          },
          py::arg("key"), "As peek, returning a PendingDecision at once (see start).")
      .def("drop_idle_keys", &RateLimiter::DropIdleKeys,
           py::call_guard<py::gil_scoped_release>(),
           "Drops every idle key now; returns how many.")
      .def_property_readonly("key_count", &RateLimiter::key_count)
      .def_property_readonly("memory_bytes", &RateLimiter::memory_bytes)
      .def_property_readonly("windows",
                             [](const RateLimiter& rl) { return rl.options().windows; })
      .def_property_readonly("max_keys", [](const RateLimiter& rl) { return rl.options().max_keys; });
}

void BindLeakyBucket(py::module_& m) {
  py::class_<LeakyBucket>(m, "LeakyBucket", R"doc(
Shapes a burst into a steady rate: each call books a departure slot and says how long to wait.
Thread-safe; the object itself never sleeps (``acquire`` in the facade sleeps cooperatively).

Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
and ``redis_name="name"`` (one schedule for every host; strict mode), with ``on_failure`` as for
RateLimiter.)doc")
      .def(py::init([](int64_t rate, double per, int64_t burst, double max_wait, int64_t max_keys,
                       const sluice::Clock* clock, std::optional<std::string> shared_region,
                       std::shared_ptr<sluice::RedisStore> redis, std::optional<std::string> redis_name,
                       const std::string& on_failure, std::optional<int64_t> local_share) {
             LeakyBucket::Options o;
             o.shared_region = shared_region.value_or("");
             o.cluster = ClusterFromPython("sluice.LeakyBucket", std::move(redis), std::move(redis_name),
                                           on_failure, local_share);
             o.rate = rate;
             o.per = SecondsToDuration(per, "per");
             o.burst = burst;
             o.max_wait = SecondsToDuration(max_wait, "max_wait");
             o.max_keys = max_keys;
             return ValueOrThrow(LeakyBucket::Create(o, ClockOrDefault(clock)));
           }),
           py::arg("rate"), py::arg("per") = absl::ToDoubleSeconds(LeakyBucket::Options{}.per),
           py::arg("burst") = LeakyBucket::Options{}.burst,
           py::arg("max_wait") = absl::ToDoubleSeconds(LeakyBucket::Options{}.max_wait),
           py::kw_only(), py::arg("max_keys") = sluice::ScopeOptions{}.max_keys, py::arg("clock") = nullptr,
           py::arg("shared_region") = py::none(), py::arg("redis") = nullptr,
           py::arg("redis_name") = py::none(), py::arg("on_failure") = FailureModeName(kCluster.on_failure),
           py::arg("local_share") = py::none(), py::keep_alive<1, 7>())
      .def(
          "try_acquire",
          [](LeakyBucket& b, std::string_view key, int64_t cost) {
            sluice::PendingDecision pending = ValueOrThrow(b.Start(key, cost));
            return GetReleasingGil(pending);
          },
          py::arg("key"), py::arg("cost") = 1,
          "Books `cost` units. Allowed: wait `delay` seconds, then go. Refused (the wait would\n"
          "exceed max_wait): nothing was booked; `retry_after` says when to ask again.")
      .def(
          "start",
          [](const py::object& self, std::string_view key, int64_t cost) {
            return KeepingAlive(ValueOrThrow(Self<LeakyBucket>(self).Start(key, cost)), self);
          },
          py::arg("key"), py::arg("cost") = 1,
          "As try_acquire, returning a PendingDecision at once (see RateLimiter.start).")
      .def_property_readonly("failure_mode_decisions", &LeakyBucket::failure_mode_decisions)
      .def_property_readonly("cluster",
                             [](const LeakyBucket& b) { return b.options().cluster.store != nullptr; })
      .def("drop_idle_keys", &LeakyBucket::DropIdleKeys, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("key_count", &LeakyBucket::key_count)
      .def_property_readonly("rate", [](const LeakyBucket& b) { return b.options().rate; })
      .def_property_readonly("per",
                             [](const LeakyBucket& b) { return absl::ToDoubleSeconds(b.options().per); })
      .def_property_readonly("burst", [](const LeakyBucket& b) { return b.options().burst; })
      .def_property_readonly("max_wait", [](const LeakyBucket& b) {
        return absl::ToDoubleSeconds(b.options().max_wait);
      });
}

void BindTokenBudget(py::module_& m) {
  BindPending<Reservation>(m, "PendingReservation", R"doc(
A reservation under way (``TokenBudget.start_reserve``): wait for ``fileno()`` to be readable, then
``result()`` returns the Reservation without waiting.)doc");
  py::class_<Reservation>(m, "Reservation", R"doc(
Tokens reserved before an LLM call. Truthy while pending. ``settle(actual)`` replaces the estimate
with the real usage (refund or debt); ``cancel()`` refunds it all. As a context manager it cancels
when the block raises and is still unsettled; otherwise an unsettled reservation stays charged as
estimated.)doc")
      .def("__bool__", &Reservation::pending)
      .def_property_readonly("pending", &Reservation::pending)
      .def_property_readonly("decision", &Reservation::decision)
      .def_property_readonly("estimate", &Reservation::estimate)
      .def(
          "settle",
          [](Reservation& r, int64_t actual) {
            sluice::PendingDecision pending = ValueOrThrow(r.StartSettle(actual));
            return GetReleasingGil(pending);
          },
          py::arg("actual"), "Charges the real usage; returns the key's balance afterwards.")
      .def("cancel",
           [](Reservation& r) {
             sluice::PendingDecision pending = ValueOrThrow(r.StartSettle(0));
             (void)GetReleasingGil(pending);
           },
           "Refunds the whole estimate (the call never reached the provider).")
      .def(
          "_start_settle",
          [](const py::object& self, int64_t actual) {
            return KeepingAlive(ValueOrThrow(Self<Reservation>(self).StartSettle(actual)), self);
          },
          py::arg("actual"),
          "settle(), returning a PendingDecision at once (the facade waits cooperatively).")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Reservation& r, py::object exc_type, py::object, py::object) {
        if (!exc_type.is_none() && r.pending()) (void)r.Cancel();
        return false;
      });

  py::class_<TokenBudget>(m, "TokenBudget", R"doc(
LLM tokens per key over one or several windows: reserve an estimate before the call, settle the
real usage after. A request whose estimate does not fit is refused before it starts; usage beyond
the estimate is carried as debt. Thread-safe; never blocks.

Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
and ``redis_name="name"`` (one budget for every host; strict mode), with ``on_failure`` as for
RateLimiter.)doc")
      .def(py::init([](std::vector<sluice::Window> windows, int64_t max_keys,
                       const sluice::Clock* clock, std::optional<std::string> shared_region,
                       std::shared_ptr<sluice::RedisStore> redis, std::optional<std::string> redis_name,
                       const std::string& on_failure, std::optional<int64_t> local_share) {
             TokenBudget::Options o;
             o.windows = std::move(windows);
             o.max_keys = max_keys;
             o.shared_region = shared_region.value_or("");
             o.cluster = ClusterFromPython("sluice.TokenBudget", std::move(redis), std::move(redis_name),
                                           on_failure, local_share);
             return ValueOrThrow(TokenBudget::Create(o, ClockOrDefault(clock)));
           }),
           py::arg("windows"), py::kw_only(), py::arg("max_keys") = sluice::ScopeOptions{}.max_keys,
           py::arg("clock") = nullptr, py::arg("shared_region") = py::none(),
           py::arg("redis") = nullptr, py::arg("redis_name") = py::none(),
           py::arg("on_failure") = FailureModeName(kCluster.on_failure), py::arg("local_share") = py::none(), py::keep_alive<1, 4>())
      .def(
          "try_reserve",
          [](const py::object& self, std::string_view key, int64_t estimate) {
            sluice::Pending<Reservation> pending =
                ValueOrThrow(Self<TokenBudget>(self).StartReserve(key, estimate));
            return KeepingAlive(GetReleasingGil(pending), self);
          },
          py::arg("key"), py::arg("estimate"),
          "Reserves `estimate` tokens. The Reservation is falsy when refused; its decision says\n"
          "when to retry.")
      .def(
          "start_reserve",
          [](const py::object& self, std::string_view key, int64_t estimate) {
            return KeepingAlive(ValueOrThrow(Self<TokenBudget>(self).StartReserve(key, estimate)),
                                self);
          },
          py::arg("key"), py::arg("estimate"),
          "As try_reserve, returning a PendingReservation at once.")
      .def(
          "charge",
          [](TokenBudget& b, std::string_view key, int64_t tokens) {
            sluice::PendingDecision pending = ValueOrThrow(b.StartCharge(key, tokens));
            return GetReleasingGil(pending);
          },
          py::arg("key"), py::arg("tokens"),
          "Charges `tokens` after the fact (may put the key in debt); returns the balance.")
      .def(
          "start_charge",
          [](const py::object& self, std::string_view key, int64_t tokens) {
            return KeepingAlive(ValueOrThrow(Self<TokenBudget>(self).StartCharge(key, tokens)),
                                self);
          },
          py::arg("key"), py::arg("tokens"),
          "As charge, returning a PendingDecision at once (a zero charge is a peek).")
      .def(
          "peek",
          [](TokenBudget& b, std::string_view key) {
            sluice::PendingDecision pending = b.StartPeek(key);
            return GetReleasingGil(pending);
          },
          py::arg("key"),
          "The key's balance (remaining may be negative: debt); `allowed` says whether one more\n"
          "token fits now, and `retry_after` when it would.")
      .def(
          "start_peek",
          [](const py::object& self, std::string_view key) {
            return KeepingAlive(Self<TokenBudget>(self).StartPeek(key), self);
          },
          py::arg("key"), "As peek, returning a PendingDecision at once.")
      .def_property_readonly("failure_mode_decisions", &TokenBudget::failure_mode_decisions)
      .def_property_readonly("cluster",
                             [](const TokenBudget& b) { return b.options().cluster.store != nullptr; })
      .def("drop_idle_keys", &TokenBudget::DropIdleKeys, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("key_count", &TokenBudget::key_count)
      .def_property_readonly("windows",
                             [](const TokenBudget& b) { return b.options().windows; });
}

}  // namespace

void BindGcraObjects(py::module_& m) {
  BindRateLimiter(m);
  BindLeakyBucket(m);
  BindTokenBudget(m);
}

}  // namespace sluice_python
