// fanoutd's logs (log.h).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include "tools/common/json_out.h"
#include "tools/fanoutd/log.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {

namespace log {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7F || c == '"' || c == '=' || c == '\\') return true;
  }
  return false;
}

void append_value(std::string& line, std::string_view v) {
  if (needs_quotes(v)) {
    json::append_string(line, v);
  } else {
    line.append(v);
  }
}

}  // namespace

void set_level(LogLevel level) noexcept {
  g_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

bool enabled(LogLevel level) noexcept {
  return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed);
}

void write(LogLevel level, std::string_view msg, std::initializer_list<Field> fields) {
  std::string line;
  line.reserve(128);
  line.append("ts=").append(format_timestamp(now_unix_us()));
  line.append(" level=").append(to_string(level));
  line.append(" msg=");
  json::append_string(line, msg);
  for (const Field& f : fields) {
    line.push_back(' ');
    line.append(f.key).push_back('=');
    append_value(line, f.value);
  }
  line.push_back('\n');
  // One write(2) per record: lines from several threads never interleave.
  std::size_t off = 0;
  while (off < line.size()) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + off, line.size() - off);
    if (n <= 0) break;
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace log
}  // namespace fanout::daemon
