// Usage metering (sluice/usage.h): UsageReader, Usage, read_usage, include_usage_in_stream and
// the prompt-token estimates.
#include <cmath>
#include <optional>
#include <string>

#include "bindings.h"
#include "sluice/usage.h"

namespace sluice_python {
namespace {

using sluice::Provider;
using sluice::Usage;
using sluice::UsageReader;

constexpr std::pair<const char*, Provider> kProviders[] = {
    {"auto", Provider::kAuto},
    {"openai_chat", Provider::kOpenAIChat},
    {"openai_completions", Provider::kOpenAICompletions},
    {"openai_responses", Provider::kOpenAIResponses},
    {"anthropic", Provider::kAnthropic},
    {"gemini", Provider::kGemini},
    {"dashscope", Provider::kDashScope},
};

Provider ProviderFromName(const std::string& name) {
  for (const auto& [text, provider] : kProviders) {
    if (name == text) return provider;
  }
  RaisePython("InvalidArgument",
              "sluice.UsageReader: provider must be one of auto, openai_chat, "
              "openai_completions, openai_responses, anthropic, gemini, dashscope; got '" +
                  name + "'");
}

std::string ProviderToName(Provider provider) {
  for (const auto& [text, p] : kProviders) {
    if (p == provider) return text;
  }
  return "auto";
}

// What Finish / ReadUsage gave: the usage, None when the answer reported none, else the error.
py::object UsageOrNone(absl::StatusOr<Usage> usage) {
  if (absl::IsNotFound(usage.status())) return py::none();
  return py::cast(ValueOrThrow(std::move(usage)));
}

sluice::EstimateOptions CheckedEstimateOptions(const char* where, int64_t tokens_per_message,
                                               int64_t tokens_per_request,
                                               int64_t tokens_per_image,
                                               double cjk_chars_per_token, double scale) {
  auto bad = [&](const std::string& what) {
    RaisePython("InvalidArgument", std::string("sluice.") + where + ": " + what);
  };
  if (tokens_per_message < 0) bad("tokens_per_message must be >= 0");
  if (tokens_per_request < 0) bad("tokens_per_request must be >= 0");
  if (tokens_per_image < 0) bad("tokens_per_image must be >= 0");
  if (!std::isfinite(cjk_chars_per_token) || cjk_chars_per_token <= 0) {
    bad("cjk_chars_per_token must be a finite number > 0");
  }
  if (!std::isfinite(scale) || scale < 0) bad("scale must be a finite number >= 0");
  sluice::EstimateOptions o;
  o.tokens_per_message = tokens_per_message;
  o.tokens_per_request = tokens_per_request;
  o.tokens_per_image = tokens_per_image;
  o.cjk_chars_per_token = cjk_chars_per_token;
  o.scale = scale;
  return o;
}

// A reader and whether it was finished (Feed after Finish is refused, not undefined).
struct PyUsageReader {
  UsageReader reader;
  bool finished = false;
  std::optional<absl::StatusOr<Usage>> result;
};

}  // namespace

void BindUsage(py::module_& m) {
  const sluice::EstimateOptions kDefaults;

  py::class_<Usage>(m, "Usage", R"doc(
The token usage of one answer, as its provider reported it (``sluice.UsageReader``,
``sluice.read_usage``). ``prompt_tokens`` includes cached ones, ``completion_tokens`` reasoning
ones; ``total_tokens`` is the reported total or their sum; ``reported`` names the counts the
provider gave (the others read 0).)doc")
      .def_readonly("prompt_tokens", &Usage::prompt_tokens)
      .def_readonly("completion_tokens", &Usage::completion_tokens)
      .def_readonly("total_tokens", &Usage::total_tokens)
      .def_readonly("cached_tokens", &Usage::cached_tokens)
      .def_readonly("cache_creation_tokens", &Usage::cache_creation_tokens)
      .def_readonly("reasoning_tokens", &Usage::reasoning_tokens)
      .def_property_readonly("provider", [](const Usage& u) { return ProviderToName(u.provider); })
      .def_property_readonly("reported",
                             [](const Usage& u) {
                               py::list names;
                               const std::pair<Usage::Field, const char*> fields[] = {
                                   {Usage::kPromptTokens, "prompt_tokens"},
                                   {Usage::kCompletionTokens, "completion_tokens"},
                                   {Usage::kTotalTokens, "total_tokens"},
                                   {Usage::kCachedTokens, "cached_tokens"},
                                   {Usage::kCacheCreationTokens, "cache_creation_tokens"},
                                   {Usage::kReasoningTokens, "reasoning_tokens"}};
                               for (const auto& [field, name] : fields) {
                                 if (u.Has(field)) names.append(name);
                               }
                               return py::tuple(names);
                             })
      .def("__repr__", [](const Usage& u) {
        return "Usage(prompt_tokens=" + std::to_string(u.prompt_tokens) +
               ", completion_tokens=" + std::to_string(u.completion_tokens) +
               ", total_tokens=" + std::to_string(u.total_tokens) + ", provider='" +
               ProviderToName(u.provider) + "')";
      });

  py::class_<PyUsageReader>(m, "UsageReader", R"doc(
Reads the token usage of a provider's answer as it streams: ``feed(chunk)`` the bytes as they
arrive, cut anywhere (SSE events split mid-line, mid-JSON, mid-UTF-8), then ``finish()`` gives
the ``Usage``, or None when the answer reported none (an OpenAI stream without
``stream_options.include_usage``: see ``include_usage_in_stream``). ``provider``: 'auto'
(detected), 'openai_chat', 'openai_completions', 'openai_responses', 'anthropic', 'gemini',
'dashscope'. Memory is bounded by ``max_event_bytes`` per unfinished event.)doc")
      .def(py::init([](const std::string& provider, int64_t max_event_bytes) {
             if (max_event_bytes < 1) {
               RaisePython("InvalidArgument",
                           "sluice.UsageReader: max_event_bytes must be >= 1, got " +
                               std::to_string(max_event_bytes));
             }
             UsageReader::Options o;
             o.max_event_bytes = static_cast<size_t>(max_event_bytes);
             return PyUsageReader{UsageReader(ProviderFromName(provider), o)};
           }),
           py::arg("provider") = "auto", py::kw_only(),
           py::arg("max_event_bytes") =
               static_cast<int64_t>(UsageReader::Options{}.max_event_bytes))
      .def(
          "feed",
          [](PyUsageReader& r, py::bytes chunk) {
            if (r.finished) {
              RaisePython("FailedPrecondition", "sluice.UsageReader: feed after finish()");
            }
            std::string_view view = chunk;
            r.reader.Feed(view);
          },
          py::arg("chunk"), "Reads the next bytes of the answer (any chunking).")
      .def(
          "finish",
          [](PyUsageReader& r) {
            if (!r.result) r.result = r.reader.Finish();
            r.finished = true;
            return UsageOrNone(*r.result);
          },
          "Ends the answer: its Usage, or None when it reported no usage. Again: the same.")
      .def_property_readonly("stats", [](const PyUsageReader& r) {
        const UsageReader::Stats& s = r.reader.stats();
        py::dict d;
        d["events"] = s.events;
        d["usage_reports"] = s.usage_reports;
        d["malformed_events"] = s.malformed_events;
        d["oversized_events"] = s.oversized_events;
        d["rejected_counts"] = s.rejected_counts;
        return d;
      });

  m.def(
      "read_usage",
      [](py::bytes body, const std::string& provider) {
        std::string_view view = body;
        const Provider p = ProviderFromName(provider);
        absl::StatusOr<Usage> usage;
        {
          py::gil_scoped_release release;
          usage = sluice::ReadUsage(p, view);
        }
        return UsageOrNone(std::move(usage));
      },
      py::arg("body"), py::arg("provider") = "auto",
      "The usage of a whole answer (bytes: a JSON body or a whole SSE stream), or None when it\n"
      "reported none.");
  m.def(
      "include_usage_in_stream",
      [](py::bytes request_body) {
        std::string_view view = request_body;
        return py::bytes(ValueOrThrow(sluice::IncludeUsageInStream(view)));
      },
      py::arg("request_body"),
      "An OpenAI-style request body (bytes) that streams, with stream_options.include_usage set\n"
      "so the answer reports its usage; other bodies unchanged. Raises sluice.InvalidArgument.");
  m.def(
      "estimate_prompt_tokens",
      [](py::bytes request_body, int64_t tokens_per_message, int64_t tokens_per_request,
         int64_t tokens_per_image, double cjk_chars_per_token, double scale) {
        const sluice::EstimateOptions o =
            CheckedEstimateOptions("estimate_prompt_tokens", tokens_per_message,
                                   tokens_per_request, tokens_per_image, cjk_chars_per_token,
                                   scale);
        std::string_view view = request_body;
        return sluice::EstimatePromptTokens(view, o);
      },
      py::arg("request_body"), py::kw_only(),
      py::arg("tokens_per_message") = kDefaults.tokens_per_message,
      py::arg("tokens_per_request") = kDefaults.tokens_per_request,
      py::arg("tokens_per_image") = kDefaults.tokens_per_image,
      py::arg("cjk_chars_per_token") = kDefaults.cjk_chars_per_token,
      py::arg("scale") = kDefaults.scale,
      "A cheap estimate of a chat request's prompt tokens (bytes), for TokenBudget.reserve\n"
      "before the call (within about 9% of o200k_base for 90% of requests; docs/usage.md).");
  m.def(
      "estimate_text_tokens",
      [](const std::string& text, int64_t tokens_per_message, int64_t tokens_per_request,
         int64_t tokens_per_image, double cjk_chars_per_token, double scale) {
        const sluice::EstimateOptions o =
            CheckedEstimateOptions("estimate_text_tokens", tokens_per_message,
                                   tokens_per_request, tokens_per_image, cjk_chars_per_token,
                                   scale);
        return sluice::EstimateTextTokens(text, o);
      },
      py::arg("text"), py::kw_only(),
      py::arg("tokens_per_message") = kDefaults.tokens_per_message,
      py::arg("tokens_per_request") = kDefaults.tokens_per_request,
      py::arg("tokens_per_image") = kDefaults.tokens_per_image,
      py::arg("cjk_chars_per_token") = kDefaults.cjk_chars_per_token,
      py::arg("scale") = kDefaults.scale, "The same estimate for plain text (str).");
}

}  // namespace sluice_python
