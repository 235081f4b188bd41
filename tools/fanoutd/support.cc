// JSON writing (json_out.h) and logging (log.h) for fanoutd.
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include <simdjson.h>

#include "tools/fanoutd/json_out.h"
#include "tools/fanoutd/log.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {

namespace json {

void append_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  const bool utf8 = simdjson::validate_utf8(s.data(), s.size());
  out.push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c == '\n') {
      out.append("\\n");
    } else if (c == '\t') {
      out.append("\\t");
    } else if (c < 0x20 || c == 0x7F) {
      out.append("\\u00");
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    } else if (c >= 0x80 && !utf8) {
      out.append("\\ufffd");
    } else {
      out.push_back(ch);
    }
  }
  out.push_back('"');
}

std::vector<std::pair<std::size_t, std::string_view>> ndjson_lines(std::string_view text) {
  std::vector<std::pair<std::size_t, std::string_view>> lines;
  std::size_t number = 0;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") != std::string_view::npos) lines.emplace_back(number, line);
  }
  return lines;
}

}  // namespace json

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
