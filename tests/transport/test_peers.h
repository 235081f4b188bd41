// Helpers for tests that talk to real peers nobody here wrote (nghttpd, nginx): a scratch
// directory, a test CA with server certificates (made by the openssl command-line tool), ports
// that no other process can take (a held closed port, or the port a peer bound itself, read from
// /proc), and child processes killed when the helper goes.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fanout::testing {

// A fresh directory under $TMPDIR, removed with its content on destruction.
class ScratchDir {
 public:
  ScratchDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp != nullptr ? tmp : "/tmp") + "/fanout-test-XXXXXX";
    path_ = mkdtemp(tmpl.data()) != nullptr ? tmpl : std::string();
  }
  ~ScratchDir() {
    if (!path_.empty()) run("rm -rf '" + path_ + "'");
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  [[nodiscard]] const std::string& path() const { return path_; }
  [[nodiscard]] std::string file(const std::string& name) const { return path_ + "/" + name; }
  void write(const std::string& name, const std::string& content) const {
    std::ofstream(file(name), std::ios::binary) << content;
  }
  static int run(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

 private:
  std::string path_;
};

// A test CA and certificates signed by it, written into `dir`:
//   ca.pem                       the CA certificate (give it to the client as ca_file)
//   server.pem / server.key      for DNS:localhost and IP:127.0.0.1
//   wrong.pem / wrong.key        for DNS:wrong.example only
// Returns false when the openssl tool failed.
inline bool make_test_pki(const ScratchDir& dir) {
  const std::string d = dir.path();
  auto ok = [](const std::string& cmd) { return ScratchDir::run(cmd) == 0; };
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
  if (!ok("openssl req -x509 " + key + " -keyout " + d + "/ca.key -out " + d +
          "/ca.pem -days 2 -subj /CN=fanout-test-ca")) {
    return false;
  }
  for (const auto& [name, san] :
       {std::pair<std::string, std::string>{"server", "DNS:localhost,IP:127.0.0.1"},
        {"wrong", "DNS:wrong.example"}}) {
    dir.write(name + ".ext", "subjectAltName=" + san + "\n");
    if (!ok("openssl req " + key + " -keyout " + d + "/" + name + ".key -out " + d + "/" + name +
            ".csr -subj /CN=" + name) ||
        !ok("openssl x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/ca.pem -CAkey " + d +
            "/ca.key -CAcreateserial -days 2 -out " + d + "/" + name + ".pem -extfile " + d + "/" +
            name + ".ext")) {
      return false;
    }
  }
  return true;
}

// A TCP port on 127.0.0.1 held for the object's lifetime: bound, so no other process can take
// it, and not listening, so a connection to it is refused. For "nothing listens there" tests
// (a port picked free, released and handed on could be taken by a concurrent test).
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
      port_ = ntohs(a.sin_port);
    }
  }
  ~ClosedPort() {
    if (fd_ >= 0) close(fd_);
  }
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// The TCP ports process `pid` listens on: the LISTEN rows of /proc/net/tcp whose socket inode is
// one of /proc/PID/fd. A peer that bound port 0 itself is found this way (nghttpd cannot report
// it), and so is a peer given a candidate port: the port is its own, not another process's.
inline std::vector<std::uint16_t> listening_ports_of(pid_t pid) {
  std::vector<std::string> inodes;
  const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
  if (DIR* d = opendir(fd_dir.c_str()); d != nullptr) {
    while (const dirent* e = readdir(d)) {
      char target[64] = {};
      const std::string link = fd_dir + "/" + e->d_name;
      const ssize_t n = readlink(link.c_str(), target, sizeof target - 1);
      const std::string t(target, n > 0 ? static_cast<std::size_t>(n) : 0);
      if (t.rfind("socket:[", 0) == 0) inodes.push_back(t.substr(8, t.size() - 9));
    }
    closedir(d);
  }
  std::vector<std::uint16_t> ports;
  std::ifstream tcp("/proc/net/tcp");
  std::string line;
  std::getline(tcp, line);  // the column names
  while (std::getline(tcp, line)) {
    // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
    std::istringstream in(line);
    std::string sl, local, remote, st, queues, timer, retr, uid, timeout, inode;
    in >> sl >> local >> remote >> st >> queues >> timer >> retr >> uid >> timeout >> inode;
    if (st != "0A") continue;  // TCP_LISTEN
    for (const auto& i : inodes) {
      if (i == inode) {
        ports.push_back(
            static_cast<std::uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16)));
      }
    }
  }
  return ports;
}

// Polls until process `pid` listens on at least `count` TCP ports and returns them; empty when
// the process ends first (it could not bind) or after `limit` (a failure, not a timing check).
inline std::vector<std::uint16_t> wait_listening(
    pid_t pid, std::size_t count = 1, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pid <= 0 || waitpid(pid, nullptr, WNOHANG) != 0) return {};
    auto ports = listening_ports_of(pid);
    if (ports.size() >= count) return ports;
    std::this_thread::yield();
  }
  return {};
}

// A port that was free a moment ago (bound to port 0, then released): only a candidate, for a
// peer that cannot bind port 0 itself (nginx). Whoever uses it must check through
// wait_listening() that the peer got it, and try another when the peer could not bind.
inline std::uint16_t candidate_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// True once something accepts TCP connections on 127.0.0.1:port; false after `limit`.
// Polls with a yield between attempts (a refused loopback connect returns at once).
inline bool wait_accepting(std::uint16_t port,
                           std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int rc = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    close(fd);
    if (rc == 0) return true;
    std::this_thread::yield();
  }
  return false;
}

// A child process killed (SIGTERM, then reaped) when this object goes.
class Child {
 public:
  Child() = default;
  explicit Child(const std::vector<std::string>& argv) {
    pid_ = fork();
    if (pid_ == 0) {
      // Die with the test process, even when it is killed before its destructors run.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      // Peers' chatter stays out of the test log.
      std::freopen("/dev/null", "w", stdout);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Child() { stop(); }
  Child(Child&& o) noexcept : pid_(o.pid_) { o.pid_ = -1; }
  Child& operator=(Child&& o) noexcept {
    stop();
    pid_ = o.pid_;
    o.pid_ = -1;
    return *this;
  }
  [[nodiscard]] bool running() const { return pid_ > 0 && kill(pid_, 0) == 0; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

}  // namespace fanout::testing
