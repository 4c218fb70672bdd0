#include "sluice/provider_error.h"

#include <catch2/catch.hpp>

using sluice::AttemptOutcome;
using sluice::Classify;
using sluice::ClassifyProviderError;
using sluice::Failure;
using sluice::ParseRetryAfter;
using sluice::TransportError;

TEST_CASE("classify: transport errors win, then the status") {
  CHECK(Classify({.http_status = 200}) == Failure::kNone);
  CHECK(Classify({.http_status = 0}) == Failure::kConnect);
  CHECK(Classify({.transport = TransportError::kConnect}) == Failure::kConnect);
  CHECK(Classify({.http_status = 200, .transport = TransportError::kReset}) == Failure::kReset);
  CHECK(Classify({.transport = TransportError::kTimeout}) == Failure::kTimeout);
  CHECK(Classify({.http_status = 429}) == Failure::kRateLimited);
  CHECK(Classify({.http_status = 401}) == Failure::kAuth);
  CHECK(Classify({.http_status = 403}) == Failure::kAuth);
  CHECK(Classify({.http_status = 408}) == Failure::kTimeout);
  CHECK(Classify({.http_status = 504}) == Failure::kTimeout);
  CHECK(Classify({.http_status = 500}) == Failure::kServer);
  CHECK(Classify({.http_status = 529}) == Failure::kServer);
  CHECK(Classify({.http_status = 400}) == Failure::kClient);
  CHECK(Classify({.http_status = 413}) == Failure::kContextLength);
}

TEST_CASE("classify: provider error bodies of 4xx answers") {
  // OpenAI
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"error":{"message":"This model's maximum context length is )"
                                R"(8192 tokens. However, your messages resulted in 9000 tokens.",)"
                                R"("type":"invalid_request_error","param":"messages",)"
                                R"("code":"context_length_exceeded"}})"}) ==
        Failure::kContextLength);
  // Azure OpenAI content filter
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"error":{"message":"The response was filtered due to the )"
                                R"(prompt triggering Azure OpenAI's content management policy.",)"
                                R"("code":"content_filter","status":400}})"}) ==
        Failure::kContentFilter);
  // Anthropic
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"type":"error","error":{"type":"invalid_request_error",)"
                                R"("message":"prompt is too long: 210000 tokens > 200000 maximum"}})"}) ==
        Failure::kContextLength);
  // Gemini
  CHECK(ClassifyProviderError(R"({"error":{"code":429,"message":"Resource has been exhausted",)"
                              R"("status":"RESOURCE_EXHAUSTED"}})") == Failure::kRateLimited);
  // DashScope (Qwen): the reason at the top level
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"code":"DataInspectionFailed","message":"Input data may )"
                                R"(contain inappropriate content.","request_id":"x"})"}) ==
        Failure::kContentFilter);
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"code":"InvalidParameter","message":"Range of input length )"
                                R"(should be [1, 30720]"})"}) == Failure::kContextLength);
  // An ordinary 400 stays a client error; so does junk.
  CHECK(Classify({.http_status = 400,
                  .error_body = R"({"error":{"message":"'temperature' must be <= 2",)"
                                R"("type":"invalid_request_error"}})"}) == Failure::kClient);
  CHECK(Classify({.http_status = 400, .error_body = "<html>Bad Request</html>"}) ==
        Failure::kClient);
  CHECK(ClassifyProviderError("") == Failure::kNone);
  CHECK(ClassifyProviderError("[1,2,3]") == Failure::kNone);
  CHECK(ClassifyProviderError(R"({"error":"overloaded"})") == Failure::kServer);
}

TEST_CASE("Retry-After: delta seconds and HTTP dates") {
  const absl::Time now = absl::FromUnixSeconds(1'800'000'000);  // 2027-01-15 08:00:00 UTC
  CHECK(ParseRetryAfter("120", now) == absl::Seconds(120));
  CHECK(ParseRetryAfter(" 1.5 ", now) == absl::Milliseconds(1500));
  CHECK(ParseRetryAfter("0", now) == absl::ZeroDuration());
  CHECK(ParseRetryAfter("-3", now) == absl::ZeroDuration());
  CHECK(ParseRetryAfter("Fri, 15 Jan 2027 08:00:30 GMT", now) == absl::Seconds(30));
  CHECK(ParseRetryAfter("Fri, 15 Jan 2027 07:00:00 GMT", now) == absl::ZeroDuration());
  CHECK_FALSE(ParseRetryAfter("", now).has_value());
  CHECK_FALSE(ParseRetryAfter("soon", now).has_value());
  CHECK_FALSE(ParseRetryAfter("nan", now).has_value());
  CHECK_FALSE(ParseRetryAfter("inf", now).has_value());
}
