// Certificates for TLS tests, made once per test process with the `openssl` command (Debian's
// openssl package) in a temporary directory that goes away at exit:
//   ca         signs the server and client certificates
//   server     CN and SAN "localhost", SAN IP 127.0.0.1 and ::1 (for redis-server --tls-*)
//   client     CN "sluice test client", signed by ca (for --tls-auth-clients yes)
//   other_ca   an unrelated CA, which signed nothing here
// Keys are P-256 (fast to make). A redis-server serving them also keeps its plain port, so
// LocalRedis's PING still finds it up.
#ifndef SLUICE_TESTS_CPP_TLS_TEST_SUPPORT_H_
#define SLUICE_TESTS_CPP_TLS_TEST_SUPPORT_H_

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

namespace sluice_test {

struct TlsFiles {
  std::string dir;  // empty when the certificates could not be made
  std::string ca, server_cert, server_key, client_cert, client_key, other_ca;

  // Arguments for a redis-server that serves TLS on `tls_port` with the server certificate.
  std::vector<std::string> RedisArgs(int tls_port, bool require_client_cert) const {
    return {"--tls-port",         std::to_string(tls_port),
            "--tls-cert-file",    server_cert,
            "--tls-key-file",     server_key,
            "--tls-ca-cert-file", ca,
            "--tls-auth-clients", require_client_cert ? "yes" : "no"};
  }

  ~TlsFiles() {
    if (!dir.empty() && getpid() == owner) {
      std::system(("rm -rf '" + dir + "'").c_str());  // NOLINT: the test's own temp dir
    }
  }
  pid_t owner = getpid();  // a fork() child leaves the directory to its parent
};

namespace tls_internal {

inline bool Run(const std::string& dir, const std::string& command) {
  const std::string line = "cd '" + dir + "' && " + command + " >/dev/null 2>&1";
  return std::system(line.c_str()) == 0;  // NOLINT: fixed commands, our own directory
}

inline bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  return static_cast<bool>(out);
}

inline bool MakeCa(const std::string& dir, const std::string& name) {
  return Run(dir, "openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256"
                  " -keyout " + name + ".key -out " + name + ".crt -days 2 -subj '/CN=sluice " +
                  name + "' -addext basicConstraints=critical,CA:TRUE"
                  " -addext keyUsage=critical,keyCertSign,cRLSign");
}

// A key and a certificate `name`.crt signed by ca, with the extensions in `name`.ext.
inline bool MakeLeaf(const std::string& dir, const std::string& name, const std::string& cn,
                     const std::string& extensions) {
  return WriteFile(dir + "/" + name + ".ext", extensions) &&
         Run(dir, "openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout " +
                      name + ".key -out " + name + ".csr -subj '/CN=" + cn + "'") &&
         Run(dir, "openssl x509 -req -in " + name + ".csr -CA ca.crt -CAkey ca.key"
                  " -CAcreateserial -days 2 -out " + name + ".crt -extfile " + name + ".ext");
}

inline TlsFiles Make() {
  TlsFiles f;
  char pattern[] = "/tmp/sluice-tls-XXXXXX";
  if (mkdtemp(pattern) == nullptr) return f;
  const std::string dir = pattern;
  const bool made =
      MakeCa(dir, "ca") && MakeCa(dir, "other_ca") &&
      MakeLeaf(dir, "server", "localhost",
               "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
               "extendedKeyUsage=serverAuth,clientAuth\n") &&
      MakeLeaf(dir, "client", "sluice test client", "extendedKeyUsage=clientAuth\n");
  f.dir = dir;  // removed at exit even when incomplete
  if (!made) return f;
  f.ca = dir + "/ca.crt";
  f.other_ca = dir + "/other_ca.crt";
  f.server_cert = dir + "/server.crt";
  f.server_key = dir + "/server.key";
  f.client_cert = dir + "/client.crt";
  f.client_key = dir + "/client.key";
  return f;
}

}  // namespace tls_internal

// The process's certificates (made on first use). `ca` is empty if `openssl` failed.
inline const TlsFiles& TestCertificates() {
  static const TlsFiles files = tls_internal::Make();
  return files;
}

}  // namespace sluice_test

#endif  // SLUICE_TESTS_CPP_TLS_TEST_SUPPORT_H_
