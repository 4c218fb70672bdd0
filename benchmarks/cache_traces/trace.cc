#include "trace.h"

#include <cstdio>
#include <memory>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "sluice/response_cache.h"

namespace cache_traces {
namespace {

// SplitMix64's finaliser: a well-mixed hash of the id, so answer sizes do not follow popularity.
uint64_t Mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

struct FileCloser {
  void operator()(FILE* f) const { std::fclose(f); }
};

}  // namespace

std::string QuestionBody(int64_t id) {
  return absl::StrCat(R"({"model":"qwen","messages":[{"role":"user","content":"q)", id, R"("}]})");
}

sluice::CacheKey QuestionKey(int64_t id) {
  return sluice::MakeCacheKey(QuestionBody(id), kTraceNamespace).value();
}

int64_t AnswerBytes(int64_t id) {
  return kMinAnswerBytes +
         static_cast<int64_t>(Mix(static_cast<uint64_t>(id)) %
                              static_cast<uint64_t>(kMaxAnswerBytes - kMinAnswerBytes + 1));
}

int64_t ChargedBytes(int64_t id) {
  // The canonical key's length depends only on the id's digit count: remember it per count.
  static const std::vector<int64_t> canonical_by_digits = [] {
    std::vector<int64_t> sizes(20);
    int64_t id_with_digits = 0;
    for (size_t digits = 1; digits < sizes.size(); ++digits) {
      sizes[digits] = static_cast<int64_t>(QuestionKey(id_with_digits).canonical.size());
      id_with_digits = id_with_digits == 0 ? 10 : id_with_digits * 10;
    }
    return sizes;
  }();
  size_t digits = 1;
  for (int64_t rest = id; rest >= 10; rest /= 10) ++digits;
  return canonical_by_digits[digits] + AnswerBytes(id) + sluice::ResponseCache::kEntryOverhead;
}

absl::Status WriteTrace(const std::string& path, const std::string& header,
                        const std::vector<Request>& requests) {
  std::unique_ptr<FILE, FileCloser> out(std::fopen(path.c_str(), "w"));
  if (out == nullptr) return absl::InvalidArgumentError(absl::StrCat("cannot write ", path));
  std::fprintf(out.get(), "# sluice cache trace v1 %s requests=%zu\n", header.c_str(),
               requests.size());
  for (const Request& r : requests) {
    std::fprintf(out.get(), "%lld %lld\n", static_cast<long long>(r.id),
                 static_cast<long long>(r.charge));
  }
  if (std::ferror(out.get())) return absl::DataLossError(absl::StrCat("writing ", path, " failed"));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Request>> ReadTrace(const std::string& path) {
  std::unique_ptr<FILE, FileCloser> in(std::fopen(path.c_str(), "r"));
  if (in == nullptr) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<Request> requests;
  char line[256];
  for (int line_no = 1; std::fgets(line, sizeof line, in.get()) != nullptr; ++line_no) {
    if (line[0] == '#' || line[0] == '\n') continue;
    long long id = -1, charge = -1;
    char rest = 0;
    if (std::sscanf(line, "%lld %lld %c", &id, &charge, &rest) != 2 || id < 0 || charge <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ":", line_no, ": expected '<question id> <charged bytes>'"));
    }
    requests.push_back({id, charge});
  }
  return requests;
}

}  // namespace cache_traces
