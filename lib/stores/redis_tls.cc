// OpenSSL for RedisLink: shared client contexts, a SIGPIPE-free socket BIO, error wording.
#include "stores/redis_tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "base/fork_hooks.h"
#include "sluice/internal/mutex.h"

namespace sluice {
inline namespace v1 {
namespace internal {

namespace {

// Whether `path` can be opened for reading; appends its identity (inode, size, mtime) to `key`
// so that a replaced or rewritten file gets a context of its own.
absl::Status CheckReadable(const char* field, const std::string& path, std::string& key) {
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis TLS: ", field, " must not contain a NUL byte"));
  }
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
    const int err = fd < 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : errno;
    if (fd >= 0) close(fd);
    return absl::FailedPreconditionError(absl::StrCat("redis TLS: cannot read ", field, " \"",
                                                      path, "\": ", std::strerror(err)));
  }
  close(fd);
  absl::StrAppend(&key, path.size(), ":", path, ":", st.st_dev, ":", st.st_ino, ":", st.st_size,
                  ":", st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec, "|");
  return absl::OkStatus();
}

absl::Status Unusable(const char* field, const std::string& path, const char* what) {
  return absl::FailedPreconditionError(absl::StrCat("redis TLS: ", field, " \"", path, "\" ",
                                                    what, ": ", TakeTlsError("unknown error")));
}

// An encrypted key must fail to load, never prompt on the process's terminal (OpenSSL's default).
int NoPassword(char*, int, int, void*) { return 0; }

absl::StatusOr<SslCtxPtr> NewContext(const RedisTlsOptions& tls) {
  ERR_clear_error();
  SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrCat("redis TLS: cannot create a context: ", TakeTlsError("out of memory")));
  }
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  // Writes resume from a buffer that may have grown in between (RedisLink's output buffer).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_default_passwd_cb(ctx.get(), NoPassword);
  if (!tls.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), tls.ca_file.c_str(), nullptr) != 1) {
      return Unusable("tls.ca_file", tls.ca_file, "holds no usable PEM certificate");
    }
  } else if (tls.verify_peer && SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "redis TLS: cannot use the system's certificate store (set tls.ca_file): ",
        TakeTlsError("unknown error")));
  }
  SSL_CTX_set_verify(ctx.get(), tls.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!tls.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx.get(), tls.cert_file.c_str()) != 1) {
      return Unusable("tls.cert_file", tls.cert_file, "holds no usable PEM certificate");
    }
    const bool key_loaded =
        SSL_CTX_use_PrivateKey_file(ctx.get(), tls.key_file.c_str(), SSL_FILETYPE_PEM) == 1;
    // OpenSSL checks the key against the certificate as it loads it.
    if (!key_loaded && ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis TLS: tls.key_file \"", tls.key_file, "\" is not the key of tls.cert_file \"",
          tls.cert_file, "\": ", TakeTlsError("mismatch")));
    }
    if (!key_loaded) {
      return Unusable("tls.key_file", tls.key_file,
                      "holds no usable PEM private key (an encrypted key is not supported)");
    }
    if (SSL_CTX_check_private_key(ctx.get()) != 1) {
      return absl::FailedPreconditionError(absl::StrCat(
          "redis TLS: tls.key_file \"", tls.key_file, "\" is not the key of tls.cert_file \"",
          tls.cert_file, "\": ", TakeTlsError("mismatch")));
    }
  }
  return ctx;
}

// The contexts made so far, by option set and file versions. Never destroyed: a link may be
// closed during static destruction.
class ContextCache {
 public:
  static ContextCache& Get() {
    static ContextCache* const cache = new ContextCache;
    return *cache;
  }

  absl::StatusOr<SslCtxPtr> Find(const RedisTlsOptions& tls, const std::string& key) {
    MutexLock lock(&mu_);
    if (auto it = contexts_->find(key); it != contexts_->end()) {
      SSL_CTX_up_ref(it->second);
      return SslCtxPtr(it->second);
    }
    // Made under the lock: links opened together (a cluster's nodes) read the files once.
    absl::StatusOr<SslCtxPtr> made = NewContext(tls);
    if (!made.ok()) return made.status();  // not cached: a fixed file is read again next time
    if (contexts_->size() >= kMaxContexts) {  // files rotated many times: start over
      for (auto& [unused, ctx] : *contexts_) SSL_CTX_free(ctx);
      contexts_->clear();
    }
    SSL_CTX_up_ref(made->get());
    contexts_->emplace(key, made->get());
    return made;
  }

 private:
  using Map = absl::flat_hash_map<std::string, SSL_CTX*>;
  static constexpr size_t kMaxContexts = 32;

  // A fork() child forgets (leaks) the parent's contexts instead of sharing them: a parent
  // thread may have been verifying a certificate at the instant of the fork, holding the lock
  // of the context's certificate store, which no thread of the child would ever release.
  ContextCache()
      : fork_hooks_(nullptr, nullptr, [this] {
          mu_.ResetInForkChild();
          MutexLock lock(&mu_);
          contexts_ = new Map;
        }) {}

  Mutex mu_;
  Map* contexts_ ABSL_GUARDED_BY(mu_) = new Map;
  ForkHooks fork_hooks_;
};

int BioWrite(BIO* bio, const char* data, size_t len, size_t* written) {
  auto* s = static_cast<TlsSocket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  *written = 0;
  ssize_t n;
  do {
    n = send(s->fd, data, len, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n >= 0) {
    *written = static_cast<size_t>(n);
    return 1;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) {
    BIO_set_retry_write(bio);
  } else {
    s->error = errno;
  }
  return 0;
}

int BioRead(BIO* bio, char* data, size_t len, size_t* read) {
  auto* s = static_cast<TlsSocket*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  *read = 0;
  ssize_t n;
  do {
    n = recv(s->fd, data, len, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    if (s->first_byte < 0) s->first_byte = static_cast<unsigned char>(data[0]);
    *read = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    s->eof = true;  // BIO_CTRL_EOF tells OpenSSL the server closed without close_notify
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    BIO_set_retry_read(bio);
  } else {
    s->error = errno;
  }
  return 0;
}

long BioCtrl(BIO* bio, int cmd, long, void*) {  // NOLINT(runtime/int): OpenSSL's signature
  auto* s = static_cast<TlsSocket*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered here
    case BIO_CTRL_EOF:
      return s != nullptr && s->eof ? 1 : 0;
    default:
      return 0;
  }
}

BIO_METHOD* SocketMethod() {
  static BIO_METHOD* const method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "sluice socket");
    if (m != nullptr) {
      BIO_meth_set_write_ex(m, BioWrite);
      BIO_meth_set_read_ex(m, BioRead);
      BIO_meth_set_ctrl(m, BioCtrl);
    }
    return m;
  }();
  return method;
}

}  // namespace

absl::StatusOr<SslCtxPtr> ClientTlsContext(const RedisTlsOptions& tls) {
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return absl::InvalidArgumentError(
        "redis TLS: tls.cert_file and tls.key_file go together: set both or neither");
  }
  std::string key = absl::StrCat(tls.verify_peer ? "verify|" : "no-verify|");
  if (!tls.ca_file.empty()) {
    if (absl::Status s = CheckReadable("tls.ca_file", tls.ca_file, key); !s.ok()) return s;
  } else {
    key += "system|";
  }
  if (!tls.cert_file.empty()) {
    if (absl::Status s = CheckReadable("tls.cert_file", tls.cert_file, key); !s.ok()) return s;
    if (absl::Status s = CheckReadable("tls.key_file", tls.key_file, key); !s.ok()) return s;
  }
  return ContextCache::Get().Find(tls, key);
}

BIO* NewTlsSocketBio(TlsSocket* socket) {
  BIO_METHOD* method = SocketMethod();
  BIO* bio = method != nullptr ? BIO_new(method) : nullptr;
  if (bio == nullptr) return nullptr;
  BIO_set_data(bio, socket);
  BIO_set_init(bio, 1);
  return bio;
}

std::string TakeTlsError(const char* fallback) {
  const unsigned long first = ERR_get_error();  // NOLINT(runtime/int): the root cause
  ERR_clear_error();
  const char* reason = first != 0 ? ERR_reason_error_string(first) : nullptr;
  return reason != nullptr ? reason : fallback;
}

bool IsClientRefusedAlert(int reason) {
  switch (reason - SSL_AD_REASON_OFFSET) {
    case SSL_AD_HANDSHAKE_FAILURE:
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
      return true;
    default:
      return false;
  }
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
