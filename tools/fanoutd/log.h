// fanoutd's logs: one line per record on standard error, logfmt style:
//   ts=2026-11-27T16:10:44.929678Z level=info msg="webhook created" id=7 org_id=42
// Values with spaces, quotes, '=' or control bytes are quoted and escaped. Payloads, bodies and
// API keys are never logged. Any thread: a record is one write(2) of one line.
#pragma once

#include <atomic>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

#include "tools/fanoutd/config.h"

namespace fanout::daemon::log {

struct Field {
  std::string_view key;
  std::string value;
};

void set_level(LogLevel level) noexcept;
[[nodiscard]] bool enabled(LogLevel level) noexcept;
void write(LogLevel level, std::string_view msg, std::initializer_list<Field> fields = {});

inline void debug(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(LogLevel::kDebug)) write(LogLevel::kDebug, m, f);
}
inline void info(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(LogLevel::kInfo)) write(LogLevel::kInfo, m, f);
}
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) {
  if (enabled(LogLevel::kWarn)) write(LogLevel::kWarn, m, f);
}
inline void error(std::string_view m, std::initializer_list<Field> f = {}) {
  write(LogLevel::kError, m, f);
}

}  // namespace fanout::daemon::log
