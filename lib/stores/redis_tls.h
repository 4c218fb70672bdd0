// Internal: the OpenSSL pieces of RedisLink (lib/stores/redis_link.h): client contexts shared
// between links, a socket BIO that never raises SIGPIPE, and the wording of TLS failures.
#ifndef SLUICE_LIB_STORES_REDIS_TLS_H_
#define SLUICE_LIB_STORES_REDIS_TLS_H_

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "sluice/redis_store.h"

namespace sluice {
inline namespace v1 {
namespace internal {

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// A client context for `tls` (TLS 1.2 or later; the CA file or the system's store; the client
// certificate and key; peer verification unless `tls.verify_peer` is false). Contexts are cached
// per distinct option set and version of the files (path, inode, size, mtime), so the CA file is
// read once and not once per connection, and a rotated certificate is picked up by the next
// connection. A fork() child starts with an empty cache. Thread-safe.
// Errors: FailedPrecondition naming the field and file that cannot be read or used,
// InvalidArgument for a path with a NUL byte or only one of cert_file / key_file.
absl::StatusOr<SslCtxPtr> ClientTlsContext(const RedisTlsOptions& tls);

// What a socket BIO saw, for the link's error messages.
struct TlsSocket {
  int fd = -1;
  int first_byte = -1;  // the first byte the server sent, or -1
  bool eof = false;     // the server closed its side
  int error = 0;        // the errno of a failed send() / recv(), or 0
};

// A BIO reading and writing `socket->fd` (non-blocking) with recv() and send(MSG_NOSIGNAL).
// OpenSSL's own socket BIO writes with write(), which raises SIGPIPE when the server has gone,
// and a library must not kill (or change the signal handling of) the process it lives in; the
// alternative, blocking SIGPIPE around every SSL_write and consuming a pending one with
// sigtimedwait, costs two system calls per write and cannot tell our SIGPIPE from another
// thread's. `socket` must outlive the BIO. Returns nullptr when out of memory.
BIO* NewTlsSocketBio(TlsSocket* socket);

// The reason of the newest error on this thread's OpenSSL error queue ("wrong version number"),
// or `fallback`; clears the queue.
std::string TakeTlsError(const char* fallback);

// Whether OpenSSL's error `reason` (ERR_GET_REASON) is an alert by which the server refused this
// client (its certificate missing, unknown or unacceptable), as opposed to a broken connection.
bool IsClientRefusedAlert(int reason);

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_STORES_REDIS_TLS_H_
