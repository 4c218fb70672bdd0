#include "sluice/cache_key.h"

#include <catch2/catch.hpp>

#include <bit>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "formats/canonical_json.h"
#include "test_support.h"

using sluice::CacheKey;
using sluice::CanonicalizeJson;
using sluice::MakeCacheKey;
using sluice_test::Value;

namespace {

std::string Number(uint64_t bits) {
  std::string out;
  sluice::internal::AppendJcsNumber(std::bit_cast<double>(bits), out);
  return out;
}

}  // namespace

TEST_CASE("JCS numbers: the RFC 8785 appendix B vectors") {
  CHECK(Number(0x0000000000000000) == "0");
  CHECK(Number(0x8000000000000000) == "0");
  CHECK(Number(0x0000000000000001) == "5e-324");
  CHECK(Number(0x8000000000000001) == "-5e-324");
  CHECK(Number(0x7fefffffffffffff) == "1.7976931348623157e+308");
  CHECK(Number(0xffefffffffffffff) == "-1.7976931348623157e+308");
  CHECK(Number(0x4340000000000000) == "9007199254740992");
  CHECK(Number(0xc340000000000000) == "-9007199254740992");
  CHECK(Number(0x4430000000000000) == "295147905179352830000");
  CHECK(Number(0x44b52d02c7e14af5) == "9.999999999999997e+22");
  CHECK(Number(0x44b52d02c7e14af6) == "1e+23");
  CHECK(Number(0x44b52d02c7e14af7) == "1.0000000000000001e+23");
  CHECK(Number(0x444b1ae4d6e2ef4e) == "999999999999999700000");
  CHECK(Number(0x444b1ae4d6e2ef4f) == "999999999999999900000");
  CHECK(Number(0x444b1ae4d6e2ef50) == "1e+21");
  CHECK(Number(0x3eb0c6f7a0b5ed8c) == "9.999999999999997e-7");
  CHECK(Number(0x3eb0c6f7a0b5ed8d) == "0.000001");
  CHECK(Number(0x41b3de4355555553) == "333333333.3333332");
  CHECK(Number(0x41b3de4355555554) == "333333333.33333325");
  CHECK(Number(0x41b3de4355555555) == "333333333.3333333");
  CHECK(Number(0x41b3de4355555556) == "333333333.3333334");
  CHECK(Number(0x41b3de4355555557) == "333333333.33333343");
  CHECK(Number(0xbecbf647612f3696) == "-0.0000033333333333333333");
  CHECK(Number(0x43143ff3c1cb0959) == "1424953923781206.2");
}

TEST_CASE("JCS: the RFC 8785 section 3.2.2 example, byte for byte") {
  const std::string input =
      "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n"
      "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
      "  \"literals\": [null, true, false]\n}";
  CHECK(Value(CanonicalizeJson(input)) ==
        "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
        "\"string\":\"\xE2\x82\xAC$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

TEST_CASE("JCS: members sort by UTF-16 code units (RFC 8785 section 3.2.3)") {
  const std::string input =
      R"({"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With )"
      R"(Dagesh", "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", )"
      R"("\u00f6": "Latin Small Letter O With Diaeresis"})";
  const std::string out = Value(CanonicalizeJson(input));
  // \r, 1, U+0080, U+00F6, U+20AC, U+1F600 (surrogates D83D DE00), U+FB33: UTF-8 byte order
  // would put the emoji last.
  std::vector<size_t> at;
  for (const char* name : {"Carriage", "One", "Control", "Latin", "Euro", "Emoji", "Hebrew"}) {
    at.push_back(out.find(name));
  }
  CHECK(std::is_sorted(at.begin(), at.end()));
  CHECK(at.back() != std::string::npos);
}

TEST_CASE("JCS: errors name the problem") {
  CHECK_FALSE(CanonicalizeJson("{\"a\":1,").ok());
  CHECK_THAT(std::string(CanonicalizeJson(R"({"a":1,"a":2})").status().message()),
             Catch::Contains("duplicate member name \"a\""));
  CHECK_FALSE(CanonicalizeJson("\"\xff\"").ok());  // invalid UTF-8
  CHECK_FALSE(CanonicalizeJson("NaN").ok());
  // Big integers keep every digit (a seed of 2^53 + 1 is not 2^53).
  CHECK(Value(CanonicalizeJson("[9007199254740993,18446744073709551615,-9007199254740993]")) ==
        "[9007199254740993,18446744073709551615,-9007199254740993]");
  CHECK(Value(CanonicalizeJson("[1, 1.0, 1e0, -0.0, 100e-2]")) == "[1,1,1,0,1]");
}

TEST_CASE("cache key: key order, whitespace and excluded fields do not change it") {
  const std::string a =
      R"({"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},)"
      R"({"role":"user","content":"Hi"}],"temperature":0.7,"stream":true,"user":"u-1"})";
  const std::string b =
      "{ \"user\": \"someone-else\",\n \"temperature\": 0.70, \"stream\": false,\n"
      "  \"messages\": [ {\"content\": \"Be brief.\", \"role\": \"system\"},\n"
      "                {\"content\": \"Hi\", \"role\": \"user\"} ],\n  \"model\": \"gpt-4o\" }";
  const CacheKey ka = Value(MakeCacheKey(a, "tenant-1"));
  const CacheKey kb = Value(MakeCacheKey(b, "tenant-1"));
  CHECK(ka == kb);
  CHECK(ka.canonical ==
        "tenant-1\x1F{\"messages\":[{\"content\":\"Be brief.\",\"role\":\"system\"},"
        "{\"content\":\"Hi\",\"role\":\"user\"}],\"model\":\"gpt-4o\",\"temperature\":0.7}");
  // Another namespace is another key.
  CHECK_FALSE(Value(MakeCacheKey(a, "tenant-2")) == ka);
  // Excluding less puts the field back in.
  sluice::CacheKeyOptions keep_user;
  keep_user.excluded_fields = {"stream"};
  CHECK_FALSE(Value(MakeCacheKey(a, "tenant-1", keep_user)) ==
              Value(MakeCacheKey(b, "tenant-1", keep_user)));
  CHECK_THAT(std::string(MakeCacheKey("[1]").status().message()), Catch::Contains("not a JSON object"));
}

TEST_CASE("cache key: every determining field changes it") {
  const std::string base =
      R"({"model":"m","messages":[{"role":"user","content":"Hi"}],"temperature":0.7,)"
      R"("tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"auto",)"
      R"("response_format":{"type":"json_object"},"top_p":1,"max_tokens":10,"seed":1})";
  const CacheKey k = Value(MakeCacheKey(base));
  const std::vector<std::pair<std::string, std::string>> edits = {
      {R"("model":"m")", R"("model":"m2")"},
      {R"("role":"user")", R"("role":"system")"},
      {R"("content":"Hi")", R"("content":"Hi.")"},
      {R"("content":"Hi")", R"("content":[{"type":"text","text":"Hi"}])"},
      {R"("temperature":0.7)", R"("temperature":0.8)"},
      {R"("name":"f")", R"("name":"g")"},
      {R"("tool_choice":"auto")", R"("tool_choice":"none")"},
      {R"("type":"json_object")", R"("type":"text")"},
      {R"("top_p":1)", R"("top_p":0.9)"},
      {R"("max_tokens":10)", R"("max_tokens":11)"},
      {R"("seed":1)", R"("seed":2)"},
  };
  for (const auto& [from, to] : edits) {
    std::string edited = base;
    edited.replace(edited.find(from), from.size(), to);
    INFO(to);
    const CacheKey e = Value(MakeCacheKey(edited));
    CHECK_FALSE(e == k);
    CHECK_FALSE((e.digest_hi == k.digest_hi && e.digest_lo == k.digest_lo));
  }
}

TEST_CASE("cache key property: any member permutation of a random object gives one key") {
  std::mt19937_64 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> members;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      members.push_back("\"k" + std::to_string(i) + "\":[" + std::to_string(rng() % 1000) + ",{\"x" +
                        std::to_string(rng() % 3) + "\":" + std::to_string(rng() % 7) + ".50}]");
    }
    auto join = [&](const std::vector<std::string>& m) {
      std::string s = "{";
      for (size_t i = 0; i < m.size(); ++i) s += (i ? " , " : "") + m[i];
      return s + "}";
    };
    const CacheKey first = Value(MakeCacheKey(join(members)));
    std::shuffle(members.begin(), members.end(), rng);
    CHECK(Value(MakeCacheKey(join(members))) == first);
  }
}

TEST_CASE("JCS: canonical output is a fixed point, also for doubles from 2^64 up to 1e21") {
  // 1e20 prints as a 21-digit integer, which the canonicaliser once refused to read back.
  for (const std::string input :
       {"1e20", "[1e19,1.8446744073709552e19,9.999999999999999e20,-1e20]", "123456789e12",
        R"({"b":1e20,"a":[2e20,{"c":-3.5e20}]})", "[0.1,1e-7,1e21,5e-324,1.7976931348623157e308]"}) {
    INFO(input);
    const std::string once = Value(CanonicalizeJson(input));
    CHECK(Value(CanonicalizeJson(once)) == once);
  }
  CHECK(Value(CanonicalizeJson("[1e20,-2.5e20]")) == "[100000000000000000000,-250000000000000000000]");
}

TEST_CASE("JCS: integer literals beyond 64 bits are accepted and keep their digits") {
  const std::string big = "123456789012345678901234567890";
  CHECK(Value(CanonicalizeJson("[" + big + ", -" + big + ", 18446744073709551616, -9223372036854775809]")) ==
        "[" + big + ",-" + big + ",18446744073709551616,-9223372036854775809]");
  // Member order, nesting and the cache key's excluded fields still work around them, and the
  // literals come back in their own places.
  CHECK(Value(CanonicalizeJson(R"({"z": 1, "y": [)" + big + R"(, 2.50], "x": {"w": -)" + big + "}}")) ==
        R"({"x":{"w":-)" + big + R"(},"y":[)" + big + R"(,2.5],"z":1})");
  const CacheKey key = Value(MakeCacheKey(
      R"({"seed": )" + big + R"(, "user": {"n": [9)" + big + R"(, 1.5]}, "model": "m", "n": 3})"));
  CHECK(key.canonical == "\x1F{\"model\":\"m\",\"n\":3,\"seed\":" + big + "}");
  // Still refused: bad numbers next to a big one, numbers beyond the double range.
  CHECK_FALSE(CanonicalizeJson("[" + big + ", 01]").ok());
  CHECK_FALSE(CanonicalizeJson("[" + big + ", 1e400]").ok());
  CHECK_FALSE(CanonicalizeJson("[0" + big + "]").ok());
  CHECK_FALSE(CanonicalizeJson("[" + big + "x]").ok());
  CHECK_FALSE(CanonicalizeJson(R"({"a":)" + big + R"(,"a":1})").ok());
  // Inside strings nothing is touched.
  CHECK(Value(CanonicalizeJson(R"(["\")" + big + R"(", )" + big + "]")) ==
        R"(["\")" + big + R"(",)" + big + "]");
}

TEST_CASE("JCS and cache keys: an empty view with a null pointer is an error, not UB") {
  CHECK(CanonicalizeJson(std::string_view(nullptr, 0)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(MakeCacheKey(std::string_view(nullptr, 0)).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(Value(MakeCacheKey("{}", std::string_view(nullptr, 0))).canonical == "\x1F{}");
}
