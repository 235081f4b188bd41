// This process's resident memory, from /proc/self/statm (its second field, in pages): what
// fanoutd's heap trim gave back (tools/fanoutd/heap_trim.h) and what fanout-load's memory mode
// reports. Header only, like cli.h: two lines of /proc reading need no library.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <system_error>

namespace fanout::proc {

// Resident bytes; 0 when /proc/self/statm cannot be read.
[[nodiscard]] inline std::uint64_t resident_bytes() noexcept {
  const int fd = ::open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n <= 0) return 0;
  const char* end = buf + n;
  const char* p = std::find(static_cast<const char*>(buf), end, ' ');
  if (p == end) return 0;
  std::uint64_t pages = 0;
  if (std::from_chars(p + 1, end, pages).ec != std::errc()) return 0;
  const long page = ::sysconf(_SC_PAGESIZE);
  return page > 0 ? pages * static_cast<std::uint64_t>(page) : 0;
}

}  // namespace fanout::proc
