// RedisOptionsFromUrl and RedisNodesFromString (sluice/redis_store.h): every form operators write
// parses to the fields it names; every bad URL is refused naming the bad part; no password ever
// reaches a message.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/redis_store.h"
#include "test_support.h"

using sluice::RedisNode;
using sluice::RedisOptions;
using sluice::RedisOptionsFromUrl;
using sluice_test::ErrorOf;
using sluice_test::Value;

namespace {

std::string Nodes(const std::vector<RedisNode>& nodes) {
  std::string out;
  for (const RedisNode& n : nodes) out += (out.empty() ? "" : ",") + n.host + "/" + std::to_string(n.port);
  return out;
}

// Every field of RedisOptions as one line, for comparing with a table row.
std::string Describe(const RedisOptions& o) {
  return "host=" + o.host + " port=" + std::to_string(o.port) + " unix=" + o.unix_socket +
         " user=" + o.username + " pass=" + o.password + " db=" + std::to_string(o.db) +
         " connect=" + absl::FormatDuration(o.connect_timeout) +
         " command=" + absl::FormatDuration(o.command_timeout) +
         " reconnect=" + absl::FormatDuration(o.reconnect_interval) + " prefix=" + o.key_prefix +
         " master=" + o.sentinel_master + " sentinels=" + Nodes(o.sentinels) +
         " suser=" + o.sentinel_username + " spass=" + o.sentinel_password +
         " cluster=" + Nodes(o.cluster_nodes) + " tls=" + (o.tls.enabled ? "on" : "off") +
         " ca=" + o.tls.ca_file + " sni=" + o.tls.server_name + " cert=" + o.tls.cert_file +
         " key=" + o.tls.key_file + " verify=" + (o.tls.verify_peer ? "yes" : "no");
}

// The defaults with `changes` applied, described.
std::string Expect(std::function<void(RedisOptions&)> changes) {
  RedisOptions o;
  changes(o);
  return Describe(o);
}

}  // namespace

TEST_CASE("RedisOptionsFromUrl: every form sets the fields it names") {
  struct Row {
    const char* url;
    std::function<void(RedisOptions&)> expect;
  };
  const Row rows[] = {
      {"redis://localhost", [](RedisOptions& o) { o.host = "localhost"; }},
      {"REDIS://h:6380/2", [](RedisOptions& o) { o.host = "h"; o.port = 6380; o.db = 2; }},
      {"redis://h/", [](RedisOptions& o) { o.host = "h"; }},
      {"redis://:s3cret@h", [](RedisOptions& o) { o.host = "h"; o.password = "s3cret"; }},
      {"redis://app:p%40ss%3Aw%2Fd@10.0.0.5:6390/4",
       [](RedisOptions& o) {
         o.host = "10.0.0.5"; o.port = 6390; o.db = 4; o.username = "app"; o.password = "p@ss:w/d";
       }},
      {"redis://u:p@ss@h", [](RedisOptions& o) { o.host = "h"; o.username = "u"; o.password = "p@ss"; }},
      {"redis://[::1]", [](RedisOptions& o) { o.host = "::1"; }},
      {"redis://[fd00::5]:7000/1", [](RedisOptions& o) { o.host = "fd00::5"; o.port = 7000; o.db = 1; }},
      {"redis://h?db=3&key_prefix=app%3Asluice",
       [](RedisOptions& o) { o.host = "h"; o.db = 3; o.key_prefix = "app:sluice"; }},
      {"redis://h?connect_timeout=0.5&socket_timeout=0.01&reconnect_interval=2s",
       [](RedisOptions& o) {
         o.host = "h";
         o.connect_timeout = absl::Milliseconds(500);
         o.command_timeout = absl::Milliseconds(10);
         o.reconnect_interval = absl::Seconds(2);
       }},
      {"redis://h?command_timeout=5ms&", [](RedisOptions& o) { o.host = "h"; o.command_timeout = absl::Milliseconds(5); }},
      {"rediss://h", [](RedisOptions& o) { o.host = "h"; o.tls.enabled = true; }},
      {"rediss://:pw@redis.example.com:6380/0?ssl_ca_certs=/etc/ca.pem&ssl_certfile=/c.pem&"
       "ssl_keyfile=/k.pem&ssl_server_name=r.example&ssl_cert_reqs=CERT_NONE",
       [](RedisOptions& o) {
         o.host = "redis.example.com"; o.port = 6380; o.password = "pw"; o.tls.enabled = true;
         o.tls.ca_file = "/etc/ca.pem"; o.tls.cert_file = "/c.pem"; o.tls.key_file = "/k.pem";
         o.tls.server_name = "r.example"; o.tls.verify_peer = false;
       }},
      {"rediss://h?tls_ca_file=/ca.pem&ssl_cert_reqs=required",
       [](RedisOptions& o) { o.host = "h"; o.tls.enabled = true; o.tls.ca_file = "/ca.pem"; }},
      {"unix:///run/redis/redis.sock", [](RedisOptions& o) { o.unix_socket = "/run/redis/redis.sock"; }},
      {"unix://:pw@/run/redis%20x.sock?db=5",
       [](RedisOptions& o) { o.unix_socket = "/run/redis x.sock"; o.password = "pw"; o.db = 5; }},
      {"unix://u:p@ss@/tmp/r.sock",
       [](RedisOptions& o) { o.unix_socket = "/tmp/r.sock"; o.username = "u"; o.password = "p@ss"; }},
      {"redis+sentinel://s1,s2:26380,[fd00::3]/mymaster",
       [](RedisOptions& o) {
         o.sentinel_master = "mymaster";
         o.sentinels = {{"s1", 26379}, {"s2", 26380}, {"fd00::3", 26379}};
       }},
      {"rediss+sentinel://:pw@s1/mymaster/2?sentinel_username=w&sentinel_password=t0p",
       [](RedisOptions& o) {
         o.sentinel_master = "mymaster"; o.sentinels = {{"s1", 26379}}; o.db = 2;
         o.password = "pw"; o.tls.enabled = true; o.sentinel_username = "w";
         o.sentinel_password = "t0p";
       }},
      {"redis+cluster://:pw@n1:7000,n2", [](RedisOptions& o) {
         o.cluster_nodes = {{"n1", 7000}, {"n2", 6379}}; o.password = "pw";
       }},
      {"rediss+cluster://n1:7000/0", [](RedisOptions& o) {
         o.cluster_nodes = {{"n1", 7000}}; o.tls.enabled = true;
       }},
      {"redis+cluster://n1/", [](RedisOptions& o) { o.cluster_nodes = {{"n1", 6379}}; }},
  };
  for (const Row& row : rows) {
    INFO(row.url);
    CHECK(Describe(Value(RedisOptionsFromUrl(row.url))) == Expect(row.expect));
  }
}

TEST_CASE("RedisOptionsFromUrl: a bad URL is refused naming the bad part") {
  struct Row {
    const char* url;
    const char* error;
  };
  const Row rows[] = {
      {"redis://h:abc/0",
       "sluice.RedisOptionsFromUrl: port 'abc' in 'redis://h:abc/0' is not a number 1..65535"},
      {"redis://h:0", "port '0' in 'redis://h:0' is not a number 1..65535"},
      {"redis://h:65536", "port '65536'"},
      {"redis://h:+5", "port '+5'"},
      {"redis://h/x", "db 'x' in 'redis://h/x' is not a number >= 0"},
      {"redis://h/-1", "db '-1'"},
      {"redis://h/99999999999", "db '99999999999'"},
      {"redis://h/1?db=2", "option 'db' in 'redis://h/1?db=2' repeats the database the path gives"},
      {"redis://", "the host in 'redis://' is missing"},
      {"redis://h1,h2", "hosts 'h1,h2' in 'redis://h1,h2' are several"},
      {"redis://::1", "host '::1' in 'redis://::1' is an IPv6 literal without brackets"},
      {"redis://[::1", "host '[::1' in 'redis://[::1' has an IPv6 literal without its closing"},
      {"redis://[::1]x", "host '[::1]x'"},
      {"localhost:6379", "the scheme in 'localhost:6379' is missing: must be one of redis,"},
      {"http://h", "scheme 'http' in 'http://h' is not one of redis, rediss, unix"},
      {"redis://h?bogus=1", "option 'bogus' in 'redis://h?bogus=1' is not an option sluice knows"},
      {"redis://h?sockt_timeout=1", "(did you mean socket_timeout?)"},
      {"redis://h?db", "option 'db' in 'redis://h?db' has no value"},
      {"redis://h?db=1&db=1", "option 'db' in 'redis://h?db=1&db=1' is given twice"},
      {"redis://h?command_timeout=1&socket_timeout=1", "repeats command_timeout (its alias)"},
      {"redis://h?command_timeout=soon", "option 'command_timeout' in 'redis://h?command_timeout=soon' "
                                         "is not a duration"},
      {"redis://h?command_timeout=2h", "in 'redis://h?command_timeout=2h': command_timeout must be > 0 "
                                       "and <= 1h, got 2h"},
      {"redis://h?connect_timeout=0", "connect_timeout must be > 0"},
      {"redis://h?key_prefix=a%7Bb", "key_prefix must be 1 to 100 printable ASCII"},
      {"redis://h?key_prefix=%zz", "option 'key_prefix' in 'redis://h?key_prefix=%zz' has a malformed"},
      {"redis://h?ssl_cert_reqs=optional", "option 'ssl_cert_reqs' in 'redis://h?ssl_cert_reqs=optional'"
                                           " must be required or none, got 'optional'"},
      {"redis://h?ssl_ca_certs=/ca.pem", "tls.ca_file is set but tls.enabled is false"},
      {"rediss://h?ssl_certfile=/c.pem", "tls.cert_file and tls.key_file must be set together"},
      {"unix://run/redis.sock", "the socket path in 'unix://run/redis.sock' must be absolute"},
      {"unix:///r.sock?ssl_cert_reqs=none", "tls.verify_peer is false but tls.enabled is false"},
      {"redis+sentinel://s1:26379", "the service name in 'redis+sentinel://s1:26379' is missing"},
      {"redis+sentinel://s1//", "the service name"},
      {"redis+sentinel:///m", "the sentinels in 'redis+sentinel:///m' are missing"},
      {"redis+sentinel://s1,,s2/m", "a host in 'redis+sentinel://s1,,s2/m' is empty"},
      {"redis+sentinel://s1:x/m", "port 'x' in 'redis+sentinel://s1:x/m'"},
      {"redis+sentinel://s1/m/x", "db 'x'"},
      {"redis+sentinel://s1/my%20master", "sentinel_master must be 1 to 255 printable ASCII"},
      {"redis+cluster://n1/3", "path '/3' in 'redis+cluster://n1/3' is not empty or /0: Redis "
                               "Cluster has only db 0"},
      {"redis+cluster://n1?db=2", "db must be 0 with cluster_nodes"},
      {"redis+cluster://", "the cluster nodes in 'redis+cluster://' are missing"},
      {"redis://u@h", "the userinfo in 'redis://***@h' has no ':'"},
      {"redis://u%zz:pw@h", "the user in 'redis://u%zz:***@h' has a malformed %-escape"},
      {"redis://h?sentinel_username=w&sentinel_password=x", "sentinel_username needs sentinel_master"},
  };
  for (const Row& row : rows) {
    INFO(row.url);
    CHECK_THAT(ErrorOf(RedisOptionsFromUrl(row.url)), Catch::Contains(row.error));
  }
}

TEST_CASE("RedisOptionsFromUrl: no password reaches an error message") {
  // Each URL is wrong somewhere, and holds the password "Hunter2Secret" (raw or %-escaped) as the
  // data nodes' password, the sentinels' password, or an unknown *pass* option.
  const char* urls[] = {
      "redis://:Hunter2Secret@h:abc/0",
      "redis://app:Hunter2Secret@h/x",
      "redis://Hunter2Secret@h",
      "redis://app:Hunter2%53ecret@h?bogus=1",
      "redis://app:Hunter2Secret%zz@h",
      "redis://app:Hunter2Secret@h?db=1&db=2",
      "rediss://:Hunter2Secret@h?ssl_certfile=/c",
      "redis+sentinel://:Hunter2Secret@s1:99999/m",
      "redis+sentinel://s1/m?sentinel_password=Hunter2Secret&sentinel_username=bad%20user",
      "redis+sentinel://s1/m?sentinel_password=Hunter2Secret&sentinel_password=Hunter2Secret",
      "redis+sentinel://s1/m?sentinel_password=Hunter2Secret%zz",
      "redis://h?password=Hunter2Secret",
      "redis://h?Password=Hunter2Secret&x=1",
      "redis+cluster://:Hunter2Secret@n1/5",
      "unix://:Hunter2Secret@/tmp/r.sock?db=x",
      "unix://:Hunter2Secret@relative",
      "http://:Hunter2Secret@h",
      "redis://:pa/Hunter2Secret@h:abc",
  };
  for (const char* url : urls) {
    INFO(url);
    const std::string error = ErrorOf(RedisOptionsFromUrl(url));
    CHECK(error.find("Hunter2") == std::string::npos);
    CHECK(error.find("Secret") == std::string::npos);
  }
}

TEST_CASE("RedisOptionsFromUrl: control bytes in a URL are escaped in the message") {
  const std::string error = ErrorOf(RedisOptionsFromUrl(std::string("redis://h\n:1\0x", 14)));
  CHECK(error.find('\n') == std::string::npos);
  CHECK(error.find('\0') == std::string::npos);
  CHECK(error.find("\\x0a") != std::string::npos);
}

TEST_CASE("RedisNodesFromString: host[:port] lists, IPv6 in brackets, the default port") {
  const std::vector<RedisNode> nodes =
      Value(sluice::RedisNodesFromString(" s1 , s2:26380,[fd00::3]:1,[::1]", 26379));
  CHECK(Nodes(nodes) == "s1/26379,s2/26380,fd00::3/1,::1/26379");
  CHECK(ErrorOf(sluice::RedisNodesFromString("h:0", 6379)) ==
        "sluice.RedisNodesFromString: port '0' in 'h:0' is not a number 1..65535");
  CHECK_THAT(ErrorOf(sluice::RedisNodesFromString("", 6379)), Catch::Contains("got ''"));
  CHECK_THAT(ErrorOf(sluice::RedisNodesFromString("a,,b", 6379)), Catch::Contains("is empty"));
  CHECK_THAT(ErrorOf(sluice::RedisNodesFromString("h", 0)),
             Catch::Contains("default_port must be 1..65535, got 0"));
}
