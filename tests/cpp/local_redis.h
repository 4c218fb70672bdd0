// A redis-server for tests: started on a free loopback port, killed (or paused) on demand,
// restartable on the same port, stopped when the object goes away.
#ifndef SLUICE_TESTS_CPP_LOCAL_REDIS_H_
#define SLUICE_TESTS_CPP_LOCAL_REDIS_H_

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include <hiredis/hiredis.h>

class LocalRedis {
 public:
  // `extra_args` go to redis-server after sluice's own (e.g. "--unixsocket", path). A
  // `config_file` goes first, where redis-server wants it (a Sentinel needs one to run).
  // `port` 0 picks a free one.
  explicit LocalRedis(std::vector<std::string> extra_args = {}, std::string config_file = {},
                      int port = 0)
      : port_(port != 0 ? port : FreePort()),
        extra_args_(std::move(extra_args)),
        config_file_(std::move(config_file)) {
    Start();
  }
  ~LocalRedis() { Kill(); }
  int port() const { return port_; }

  // Starts redis-server (again) on the same port and waits until it answers PING.
  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      // A test that crashes never runs Kill(): the kernel stops the server when the starting
      // thread dies (so start it from a thread that outlives it, as every test does).
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      const std::string port = std::to_string(port_);
      const int null_fd = open("/dev/null", O_WRONLY);
      dup2(null_fd, 1);
      dup2(null_fd, 2);
      std::vector<const char*> argv = {"redis-server"};
      if (!config_file_.empty()) argv.push_back(config_file_.c_str());
      for (const char* arg : {"--port", port.c_str(), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--loglevel", "warning"}) {
        argv.push_back(arg);
      }
      for (const std::string& arg : extra_args_) argv.push_back(arg.c_str());
      argv.push_back(nullptr);
      execvp("redis-server", const_cast<char* const*>(argv.data()));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Ping()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }
  // Starts it again after Kill(), on the same port (and with the same data directory, if the
  // arguments name one).
  bool Restart() {
    Kill();
    return Start();
  }
  void Pause() { kill(pid_, SIGSTOP); }
  void Resume() { kill(pid_, SIGCONT); }

  // Whether it answers at all.
  bool Ping() const {
    timeval tv{0, 200000};
    redisContext* c = redisConnectWithTimeout("127.0.0.1", port_, tv);
    bool ok = false;
    if (c != nullptr && !c->err) {
      // Any reply will do: a server with requirepass answers NOAUTH, and it is up.
      auto* r = static_cast<redisReply*>(redisCommand(c, "PING"));
      ok = r != nullptr;
      if (r != nullptr) freeReplyObject(r);
    }
    if (c != nullptr) redisFree(c);
    return ok;
  }

  // A loopback TCP port nobody listens on now.
  static int FreePort() {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
    close(s);
    return ntohs(a.sin_port);
  }

 private:
  int port_;
  std::vector<std::string> extra_args_;
  std::string config_file_;
  pid_t pid_ = -1;
};

#endif  // SLUICE_TESTS_CPP_LOCAL_REDIS_H_
