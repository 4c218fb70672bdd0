// ConcurrencyLimiter and its Permit.
#include <pybind11/stl.h>

#include <optional>
#include <string>

#include "bindings.h"
#include "sluice/concurrency_limiter.h"
#include "sluice/redis_store.h"

namespace sluice_python {

using sluice::ConcurrencyLimiter;
using Permit = sluice::ConcurrencyLimiter::Permit;

namespace {

sluice::Pending<absl::Status> StartRenew(Permit& p, std::optional<double> lease) {
  return lease ? p.StartRenew(SecondsToDuration(*lease, "lease")) : p.StartRenew();
}

void FinishRenew(Permit& p, sluice::Pending<absl::Status>& pending) {
  const absl::Status s = GetReleasingGil(pending);
  if (absl::IsFailedPrecondition(s)) {
    (void)p.Release();  // the slot is gone: the permit holds nothing any more
    RaisePython("LeaseExpired", std::string(s.message()));
  }
  ThrowIfError(s);
}

}  // namespace

void BindConcurrency(py::module_& m) {
  BindPending<int64_t>(m, "PendingCount", R"doc(
A count under way (``ConcurrencyLimiter.start_in_flight``): wait for ``fileno()`` to be readable,
then ``result()`` returns it without waiting.)doc");
  BindPending<Permit>(m, "PendingPermit", R"doc(
A permit under way (``ConcurrencyLimiter.start``): wait for ``fileno()`` to be readable, then
``result()`` returns the Permit without waiting.)doc");
  py::class_<sluice::Pending<absl::Status>>(m, "PendingRenewal", R"doc(
A lease renewal under way (``Permit._start_renew``); ``Permit._finish_renew`` takes its outcome.)doc")
      .def("fileno", &sluice::Pending<absl::Status>::fd)
      .def("done", &sluice::Pending<absl::Status>::done);

  py::class_<Permit>(m, "Permit", R"doc(
A slot of a ConcurrencyLimiter, and a lease: it is given back on ``release()``, when the ``with``
block ends, or when the object is collected, and it is reclaimed by the limiter if its lease runs
out first (renew long work with ``renew()``). Truthy while held.)doc")
      .def("__bool__", &Permit::held)
      .def_property_readonly("held", &Permit::held)
      .def_property_readonly("decision", &Permit::decision)
      .def_property_readonly("expires_at",
                             [](const Permit& p) { return NanosToSeconds(p.expires_at_nanos()); },
                             "When the lease ends, in seconds on the limiter's clock.")
      .def(
          "release", [](Permit& p) { return p.Release().ok(); },
          "Gives the slot back. False if the lease had already expired and the slot was\n"
          "reclaimed (the work overran its lease). Idempotent.")
      .def(
          "renew",
          [](Permit& p, std::optional<double> lease) {
            sluice::Pending<absl::Status> pending = StartRenew(p, lease);
            FinishRenew(p, pending);
          },
          py::arg("lease") = py::none(),
          "Extends the lease to `lease` seconds from now (default: the limiter's lease).\n"
          "Raises sluice.LeaseExpired if the slot was already reclaimed.")
      .def(
          "_start_renew",
          [](const py::object& self, std::optional<double> lease) {
            return KeepingAlive(StartRenew(Self<Permit>(self), lease), self);
          },
          py::arg("lease") = py::none(),
          "renew(), split for waiting cooperatively on the returned PendingRenewal.")
      .def("_finish_renew", &FinishRenew, py::arg("pending"))
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Permit& p, py::object, py::object, py::object) {
        (void)p.Release();
        return false;
      });

  py::class_<ConcurrencyLimiter>(m, "ConcurrencyLimiter", R"doc(
At most ``max_in_flight`` permits per key at once. The check and the take are one atomic step, and
every permit is a lease of ``lease`` seconds, so a crashed or forgotten holder cannot leak its
slot. Thread-safe; ``try_acquire`` never blocks (``acquire`` in the facade waits cooperatively).

Scope: process (default); host with ``shared_region="name"``; cluster with ``redis=RedisStore(...)``
and ``redis_name="name"`` (leases in Redis, one cap for every host; strict mode), with ``on_failure`` as
for RateLimiter (``"local"``: max_in_flight / local_share per process).)doc")
      .def(py::init([](int64_t max_in_flight, double lease, double retry_after, int64_t max_keys,
                       const sluice::Clock* clock, std::optional<std::string> shared_region,
                       std::shared_ptr<sluice::RedisStore> redis, std::optional<std::string> redis_name,
                       const std::string& on_failure, std::optional<int64_t> local_share) {
             ConcurrencyLimiter::Options o;
             o.shared_region = shared_region.value_or("");
             o.cluster = ClusterFromPython("sluice.ConcurrencyLimiter", std::move(redis),
                                           std::move(redis_name), on_failure, local_share);
             o.max_in_flight = max_in_flight;
             o.lease = SecondsToDuration(lease, "lease");
             o.retry_after = SecondsToDuration(retry_after, "retry_after");
             o.max_keys = max_keys;
             return ValueOrThrow(ConcurrencyLimiter::Create(o, ClockOrDefault(clock)));
           }),
           py::arg("max_in_flight"), py::kw_only(),
           py::arg("lease") = absl::ToDoubleSeconds(ConcurrencyLimiter::Options{}.lease),
           py::arg("retry_after") = absl::ToDoubleSeconds(ConcurrencyLimiter::Options{}.retry_after),
           py::arg("max_keys") = ConcurrencyLimiter::Options{}.max_keys,
           py::arg("clock") = nullptr, py::arg("shared_region") = py::none(),
           py::arg("redis") = nullptr, py::arg("redis_name") = py::none(),
           py::arg("on_failure") = FailureModeName(sluice::ClusterOptions{}.on_failure), py::arg("local_share") = py::none(), py::keep_alive<1, 6>())
      .def(
          "try_acquire",
          [](const py::object& self, std::string_view key) {
            sluice::Pending<Permit> pending = Self<ConcurrencyLimiter>(self).Start(key);
            return KeepingAlive(GetReleasingGil(pending), self);
          },
          py::arg("key"),
          "Takes a slot for `key` if one is free. The Permit is falsy when refused; it keeps\n"
          "the limiter alive.")
      .def(
          "start",
          [](const py::object& self, std::string_view key) {
            return KeepingAlive(Self<ConcurrencyLimiter>(self).Start(key), self);
          },
          py::arg("key"),
          "As try_acquire, returning a PendingPermit at once (cluster scope: the Redis reply\n"
          "may still be on its way).")
      .def(
          "in_flight",
          [](ConcurrencyLimiter& c, std::string_view key) {
            sluice::Pending<int64_t> pending = c.StartInFlight(key);
            return GetReleasingGil(pending);
          },
          py::arg("key"),
          "Permits held for `key`. Cluster scope: a round trip (-1 if Redis did not answer).")
      .def(
          "start_in_flight",
          [](const py::object& self, std::string_view key) {
            return KeepingAlive(Self<ConcurrencyLimiter>(self).StartInFlight(key), self);
          },
          py::arg("key"), "As in_flight, returning a PendingCount at once.")
      .def_property_readonly("failure_mode_decisions", &ConcurrencyLimiter::failure_mode_decisions)
      .def_property_readonly("cluster", [](const ConcurrencyLimiter& c) {
        return c.options().cluster.store != nullptr;
      })
      .def("reclaim_expired", &ConcurrencyLimiter::ReclaimExpired,
           py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("max_in_flight",
                             [](const ConcurrencyLimiter& c) { return c.options().max_in_flight; })
      .def_property_readonly("lease", [](const ConcurrencyLimiter& c) {
        return absl::ToDoubleSeconds(c.options().lease);
      });
}

}  // namespace sluice_python
