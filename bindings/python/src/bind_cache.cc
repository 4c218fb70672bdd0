// CacheKey, cache_key(), the stream replay helpers, ResponseCache and its single-flight _Fetch
// (the facade in sluice/_cache.py drives _Fetch: get_or_fetch, stream_or_fetch).
#include <pybind11/stl.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "bindings.h"
#include "sluice/cache_key.h"
#include "sluice/redis_store.h"
#include "sluice/response_cache.h"
#include "sluice/sse_replay.h"

namespace sluice_python {
namespace {

using sluice::CachedResponse;
using sluice::CacheKey;
using sluice::ResponseCache;

// A Python object as the owner of a stored body (sluice::Bytes): the answer's `bytes` object
// itself, so that put and get copy nothing.
//
// The last reference may drop on a thread without the GIL (the Redis connection thread, a C++
// caller), and there it must not wait for the GIL: it may hold a shard's mutex, which a thread
// holding the GIL may be waiting for. Such releases are queued and done under the GIL: by a
// pending call, and by the next put.
struct PyObjectOwner {
  void operator()(const void* object) const;
};

std::mutex pending_mu;
std::vector<PyObject*> pending_releases;  // guarded by pending_mu
std::atomic<bool> releases_pending{false};

int ReleasePending(void* /*unused*/) {
  std::vector<PyObject*> releases;
  {
    std::lock_guard<std::mutex> lock(pending_mu);
    releases.swap(pending_releases);
    releases_pending.store(false, std::memory_order_relaxed);
  }
  for (PyObject* object : releases) Py_DECREF(object);
  return 0;
}

void PyObjectOwner::operator()(const void* object) const {
  auto* o = static_cast<PyObject*>(const_cast<void*>(object));
  if (!Py_IsInitialized()) return;  // the interpreter is gone: nothing left to free it into
  if (PyGILState_Check()) {
    Py_DECREF(o);
    return;
  }
  std::lock_guard<std::mutex> lock(pending_mu);
  pending_releases.push_back(o);
  if (!releases_pending.exchange(true, std::memory_order_relaxed)) {
    // Callable without the GIL; if its queue is full, the next put releases them.
    (void)Py_AddPendingCall(&ReleasePending, nullptr);
  }
}

sluice::Bytes BytesOf(const py::bytes& object) {
  char* data = nullptr;
  Py_ssize_t size = 0;
  PyBytes_AsStringAndSize(object.ptr(), &data, &size);
  Py_INCREF(object.ptr());
  return sluice::Bytes(std::shared_ptr<const void>(object.ptr(), PyObjectOwner{}),
                       std::string_view(data, static_cast<size_t>(size)));
}

// The `bytes` object a body views, or a new one holding a copy.
py::object BodyToPython(const sluice::Bytes& body) {
  if (body.owner() != nullptr && std::get_deleter<PyObjectOwner>(body.owner()) != nullptr) {
    return py::reinterpret_borrow<py::object>(
        static_cast<PyObject*>(const_cast<void*>(body.owner().get())));
  }
  return py::bytes(body.data(), body.size());
}

// ResponseCache::Fetch's result, for the facade's get_or_fetch loop.
struct PyFetch {
  sluice::FetchResult result;
};

sluice::Lead& LeadOf(PyFetch& f) {
  if (!f.result.lead) RaisePython("FailedPrecondition", "sluice.ResponseCache: not the leader");
  return *f.result.lead;
}

}  // namespace

// The stored answer as Python sees it: bytes for a whole body, a list of bytes for SSE chunks.
py::object CachedResponseToPython(const CachedResponse& r) {
  if (!r.streamed) return BodyToPython(r.body);
  py::list chunks;
  for (const std::string& c : r.chunks) chunks.append(py::bytes(c));
  return chunks;
}

// bytes, or a list of bytes chunks; anything else is a TypeError. Only a list is iterated: a
// generator would run Python code inside this native call, which must never switch greenlets
// (the facade turns other iterables into lists first).
CachedResponse CachedResponseFromPython(const py::object& answer) {
  CachedResponse r;
  if (releases_pending.load(std::memory_order_relaxed)) ReleasePending(nullptr);
  if (py::isinstance<py::bytes>(answer)) {
    r.body = BytesOf(py::reinterpret_borrow<py::bytes>(answer));
    return r;
  }
  if (!py::isinstance<py::list>(answer)) {
    throw py::type_error("answer must be bytes or a list of bytes chunks, got " +
                         py::str(py::type::handle_of(answer).attr("__name__")).cast<std::string>());
  }
  r.streamed = true;
  for (py::handle chunk : py::reinterpret_borrow<py::list>(answer)) {
    if (!py::isinstance<py::bytes>(chunk)) {
      throw py::type_error("answer chunks must be bytes, got " +
                           py::str(py::type::handle_of(chunk).attr("__name__")).cast<std::string>());
    }
    r.chunks.push_back(chunk.cast<std::string>());
  }
  return r;
}


void BindCache(py::module_& m) {
  py::class_<PyFetch>(m, "_Fetch", "ResponseCache._fetch's result (see sluice/single_flight.h).")
      .def_property_readonly("hit",
                             [](const PyFetch& f) -> py::object {
                               if (f.result.hit == nullptr) return py::none();
                               return CachedResponseToPython(*f.result.hit);
                             })
      .def_property_readonly("is_lead", [](const PyFetch& f) { return f.result.lead.has_value(); })
      .def_property_readonly("is_broken", [](const PyFetch& f) { return f.result.broken; })
      .def("fileno", [](const PyFetch& f) { return f.result.wait ? f.result.wait->fd() : -1; })
      .def("ready", [](const PyFetch& f) { return f.result.wait && f.result.wait->ready(); })
      .def("_result",
           [](PyFetch& f) {
             if (!f.result.wait || !f.result.wait->ready()) {
               RaisePython("FailedPrecondition", "sluice.ResponseCache: the wait is not over");
             }
             return PyFetch{f.result.wait->Result()};
           })
      .def("complete",
           [](PyFetch& f, py::object answer, double ttl, bool store) {
             const bool stored =
                 LeadOf(f).Complete(CachedResponseFromPython(answer), SecondsToDuration(ttl, "ttl"), store);
             f.result.lead.reset();
             return stored;
           },
           py::arg("answer"), py::kw_only(), py::arg("ttl") = 0.0, py::arg("store") = true)
      .def("append",
           [](PyFetch& f, py::bytes chunk) {
             LeadOf(f).Append(std::string(chunk));
           },
           py::arg("chunk"))
      .def("complete_stream",
           [](PyFetch& f, double ttl, bool store) {
             const bool stored = LeadOf(f).CompleteStream(SecondsToDuration(ttl, "ttl"), store);
             f.result.lead.reset();
             return stored;
           },
           py::kw_only(), py::arg("ttl") = 0.0, py::arg("store") = true)
      .def("take_chunks",
           [](PyFetch& f) {
             py::list out;
             if (!f.result.wait) return out;
             for (const std::string& c : f.result.wait->TakeChunks()) out.append(py::bytes(c));
             return out;
           })
      .def("abandon", [](PyFetch& f) {
        if (f.result.lead) f.result.lead->Abandon();
        f.result.lead.reset();
      });

  py::class_<CacheKey>(m, "CacheKey", R"doc(
A request's cache key (``sluice.cache_key``): ``digest`` (32 hex digits of XXH3-128) and
``canonical`` (the namespace, 0x1F, and the RFC 8785 form of the request: what a hit is verified
against). Equal keys mean the same question.)doc")
      .def_property_readonly("digest", &CacheKey::DigestHex)
      .def_property_readonly("canonical", [](const CacheKey& k) { return py::bytes(k.canonical); })
      .def("__eq__", [](const CacheKey& a, const CacheKey& b) { return a == b; })
      .def("__hash__", [](const CacheKey& k) { return static_cast<py::ssize_t>(k.digest_lo >> 1); })
      .def("__repr__", [](const CacheKey& k) { return "CacheKey(" + k.DigestHex() + ")"; });

  m.def(
      "cache_key",
      [](py::bytes body, const std::string& name_space,
         std::optional<std::vector<std::string>> exclude) {
        std::string_view view = body;
        sluice::CacheKeyOptions options;
        if (exclude) options.excluded_fields = *exclude;
        py::gil_scoped_release release;
        return ValueOrThrow(sluice::MakeCacheKey(view, name_space, options));
      },
      py::arg("body"), py::arg("namespace") = "", py::kw_only(), py::arg("exclude") = py::none(),
      "The cache key of an OpenAI-style request body (bytes): RFC 8785 canonical JSON without\n"
      "the fields that do not decide the answer (``exclude``; default user, stream,\n"
      "stream_options, metadata, store, request_id, timeout, service_tier, cache), prefixed by\n"
      "``namespace``, hashed with XXH3-128. Raises sluice.InvalidArgument naming the JSON error.");
  m.def(
      "canonical_json",
      [](py::bytes json) {
        std::string_view view = json;
        std::string out;
        {
          py::gil_scoped_release release;
          out = ValueOrThrow(sluice::CanonicalizeJson(view));
        }
        return py::bytes(out);
      },
      py::arg("json"), "The RFC 8785 (JCS) canonical form of a JSON text (bytes).");

  m.def(
      "completion_to_sse",
      [](py::bytes completion) {
        std::string_view view = completion;
        std::vector<std::string> events = ValueOrThrow(sluice::CompletionToSse(view));
        py::list out;
        for (const std::string& e : events) out.append(py::bytes(e));
        return out;
      },
      py::arg("completion"),
      "A chat.completion JSON (bytes) as the SSE events of a streamed answer (a list of bytes,\n"
      "each 'data: {...}\\n\\n', ending with [DONE]). Raises sluice.InvalidArgument, or\n"
      "sluice.Error for a tool-call answer (not converted).");
  m.def(
      "sse_to_completion",
      [](const std::vector<std::string>& chunks) {
        return py::bytes(ValueOrThrow(sluice::SseToCompletion(chunks)));
      },
      py::arg("chunks"),
      "The SSE events of a streamed answer (a list of bytes) as one chat.completion JSON.");

  py::class_<ResponseCache>(m, "ResponseCache", R"doc(
LLM answers in process memory under their cache keys, within ``max_bytes`` (keys, answers and a
fixed overhead per entry): sharded, per-entry TTL, W-TinyLFU with a window sized by miniature
caches (an LRU on recency-heavy traffic, frequency-filtered on Zipf traffic), hits verified against the canonical bytes (include/sluice/response_cache.h). With
``redis=RedisStore(...)``, a Redis tier behind it, shared by every process using the same
``redis_name``: writes go to both; a miss here asks Redis (in get_or_fetch / stream_or_fetch,
cooperatively) before anyone calls upstream; Redis down only costs misses (``redis_errors``).
Thread-safe; never blocks on I/O.)doc")
      .def(py::init([](int64_t max_bytes, int shards, double default_ttl, double protected_share,
                       bool admission, bool store_tool_calls,
                       std::shared_ptr<sluice::RedisStore> redis, const std::string& redis_name,
                       const sluice::Clock* clock) {
             ResponseCache::Options o;
             o.max_bytes = max_bytes;
             o.shards = shards;
             o.default_ttl = SecondsToDuration(default_ttl, "default_ttl");
             o.protected_share = protected_share;
             o.admission = admission;
             o.store_tool_calls = store_tool_calls;
             o.redis = std::move(redis);
             o.redis_name = redis_name;
             return ValueOrThrow(ResponseCache::Create(o, ClockOrDefault(clock)));
           }),
           // Defaults are ResponseCache::Options{}'s, so the two cannot drift.
           py::kw_only(), py::arg("max_bytes") = ResponseCache::Options{}.max_bytes,
           py::arg("shards") = ResponseCache::Options{}.shards,
           py::arg("default_ttl") = absl::ToDoubleSeconds(ResponseCache::Options{}.default_ttl),
           py::arg("protected_share") = ResponseCache::Options{}.protected_share,
           py::arg("admission") = ResponseCache::Options{}.admission,
           py::arg("store_tool_calls") = ResponseCache::Options{}.store_tool_calls,
           py::arg("redis") = nullptr, py::arg("redis_name") = ResponseCache::Options{}.redis_name,
           py::arg("clock") = nullptr, py::keep_alive<1, 10>())
      .def(
          "get",
          [](ResponseCache& c, const CacheKey& key) -> py::object {
            std::shared_ptr<const CachedResponse> hit = c.Get(key);
            if (hit == nullptr) return py::none();
            return CachedResponseToPython(*hit);
          },
          py::arg("key"),
          "The stored answer: bytes (a whole body), a list of bytes (the SSE chunks of a streamed\n"
          "answer), or None.")
      .def(
          "put",
          [](ResponseCache& c, const CacheKey& key, py::object answer, double ttl) {
            return c.Put(key, CachedResponseFromPython(answer), SecondsToDuration(ttl, "ttl"));
          },
          py::arg("key"), py::arg("answer"), py::kw_only(), py::arg("ttl") = 0.0,
          "Stores an answer (bytes, or an iterable of bytes chunks for a streamed one) for ``ttl``\n"
          "seconds (0: default_ttl). False when it was not stored: larger than a shard, or\n"
          "turned away at once by the admission filter in favour of more popular answers (an\n"
          "answer larger than the window); a stored answer may still be turned away when the\n"
          "window pushes it out (stats()['rejected']).")
      .def("erase", &ResponseCache::Erase, py::arg("key"), "Removes the key's entry.")
      .def("_fetch",
           [](const py::object& self, const CacheKey& key) {
             return KeepingAlive(PyFetch{Self<ResponseCache>(self).Fetch(key)}, self);
           },
           py::arg("key"),
           "A lookup that merges identical concurrent misses; see get_or_fetch.")
      .def("stats",
           [](const ResponseCache& c) {
             const ResponseCache::Stats s = c.stats();
             py::dict d;
             d["hits"] = s.hits;
             d["misses"] = s.misses;
             d["inserts"] = s.inserts;
             d["rejected"] = s.rejected;
             d["evictions"] = s.evictions;
             d["expirations"] = s.expirations;
             d["collisions"] = s.collisions;
             d["merged_waits"] = s.merged_waits;
             d["leader_failovers"] = s.leader_failovers;
             d["skipped_tool_calls"] = s.skipped_tool_calls;
             d["redis_hits"] = s.redis_hits;
             d["redis_misses"] = s.redis_misses;
             d["redis_writes"] = s.redis_writes;
             d["redis_errors"] = s.redis_errors;
             d["entries"] = s.entries;
             d["bytes"] = s.bytes;
             return d;
           },
           "hits, misses, inserts, rejected, evictions, expirations, collisions, merged_waits,\n"
           "leader_failovers, skipped_tool_calls, redis_hits, redis_misses, redis_writes,\n"
           "redis_errors, entries, bytes.");
}

}  // namespace sluice_python
