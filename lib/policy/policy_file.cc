// LoadPolicyFile: a policy from a file, or from the file $SLUICE_CONFIG names.
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "sluice/policy.h"

namespace sluice {
inline namespace v1 {
namespace {

constexpr char kConfigVariable[] = "SLUICE_CONFIG";
// A policy is a page or two of text; anything far larger is not one (and must not be read
// whole into memory by mistake, a log file named by a wrong SLUICE_CONFIG, say).
constexpr off_t kMaxPolicyBytes = off_t{16} << 20;

absl::Status OpenError(const std::string& path, int error) {
  const std::string message =
      absl::StrCat("sluice.LoadPolicyFile: cannot read ", path, ": ", std::strerror(error));
  if (error == ENOENT || error == ENOTDIR) return absl::NotFoundError(message);
  if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
  return absl::FailedPreconditionError(message);
}

}  // namespace

absl::StatusOr<Policy> LoadPolicyFile(std::string_view path) {
  std::string file(path);
  if (file.empty()) {
    const char* from_env = std::getenv(kConfigVariable);
    if (from_env == nullptr || *from_env == '\0') {
      return absl::NotFoundError(absl::StrCat("sluice.LoadPolicyFile: no path given and ",
                                              kConfigVariable, " is not set"));
    }
    file = from_env;
  }
  struct stat info;
  if (stat(file.c_str(), &info) != 0) return OpenError(file, errno);
  if (!S_ISREG(info.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sluice.LoadPolicyFile: cannot read ", file, ": not a regular file"));
  }
  if (info.st_size > kMaxPolicyBytes) {
    return absl::FailedPreconditionError(absl::StrCat("sluice.LoadPolicyFile: ", file, " is ",
                                                      info.st_size,
                                                      " bytes; a policy is at most 16 MiB"));
  }
  errno = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in) return OpenError(file, errno != 0 ? errno : EACCES);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return OpenError(file, errno != 0 ? errno : EIO);
  return ParsePolicy(text.str(), file);
}

}  // namespace v1
}  // namespace sluice
