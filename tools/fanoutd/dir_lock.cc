// DirLock (dir_lock.h). The pid is written after the lock is taken, so a reader that finds
// the lock held reads the holder's pid (or, in a short window, an empty file).
#include "tools/fanoutd/dir_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>

namespace fanout::daemon {
namespace {

std::string holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
  if (n <= 0) return {};
  std::string pid(buf, static_cast<std::size_t>(n));
  while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
  return pid;
}

}  // namespace

tl::expected<std::unique_ptr<DirLock>, std::string> DirLock::acquire(
    const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return tl::unexpected("journal directory " + dir.string() + ": " + ec.message());
  const std::filesystem::path file = dir / "journal.lock";
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return tl::unexpected(file.string() + ": " + std::strerror(errno));
  int rc = 0;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    std::string message;
    if (err == EWOULDBLOCK) {
      const std::string pid = holder_pid(fd);
      message = "journal directory " + dir.string() + " is in use by another fanoutd" +
                (pid.empty() ? std::string() : " (pid " + pid + ")") +
                ": instances may share --data but not a journal; give each instance its own "
                "--journal-dir (durability.dir)";
    } else {
      message = "locking " + file.string() + ": " + std::strerror(err);
    }
    ::close(fd);
    return tl::unexpected(std::move(message));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  // Best effort: the pid only improves another instance's error message.
  if (::ftruncate(fd, 0) == 0) {
    (void)!::pwrite(fd, pid.data(), pid.size(), 0);
  }
  return std::unique_ptr<DirLock>(new DirLock(fd));
}

DirLock::~DirLock() {
  ::close(fd_);
}

}  // namespace fanout::daemon
