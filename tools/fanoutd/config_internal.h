// The table of fanoutd's options (config_options.cc), shared with the code that applies it
// (config.cc): one Option per TOML key, with its flag and its kind (type, range, setter).
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <variant>

#include <tl/expected.hpp>

#include "tools/fanoutd/config.h"

namespace fanout::daemon::config_detail {

using Status = tl::expected<void, std::string>;

constexpr std::int64_t kNoMax = std::numeric_limits<std::int64_t>::max();
constexpr double kInf = std::numeric_limits<double>::infinity();
constexpr std::int64_t kKiB = 1024;
constexpr std::int64_t kMiB = 1024 * kKiB;
constexpr std::int64_t kGiB = 1024 * kMiB;

struct IntKind {  // an integer in [lo, hi] (hi == kNoMax: no upper bound)
  std::int64_t lo;
  std::int64_t hi;
  void (*set)(Config&, std::int64_t);
};
struct NumberKind {  // a finite number (integers accepted) in [lo, hi] or [lo, hi)
  double lo;
  double hi;  // kInf: no upper bound
  bool hi_open;
  void (*set)(Config&, double);
};
struct BoolKind {  // as a flag: present means true, it takes no value
  void (*set)(Config&, bool);
};
struct StringKind {
  bool non_empty;
  void (*set)(Config&, std::string);
};
struct StringListKind {  // TOML array of strings, or a repeatable flag; both append
  void (*append)(Config&, std::string);
};
struct LogLevelKind {};
struct ListenKind {};

using Kind = std::variant<IntKind, NumberKind, BoolKind, StringKind, StringListKind, LogLevelKind,
                          ListenKind>;

struct Option {
  std::string_view key;   // TOML key path, e.g. "retry.base_ms"
  std::string_view flag;  // "--workers", or empty when there is none
  Kind kind;
};

// The option with this TOML key path, or this flag ("--workers"); nullptr when there is none.
const Option* find_by_key(std::string_view key);
const Option* find_by_flag(std::string_view flag);
// Whether `key` is a table that holds options ([retry], [source.redis]...).
bool is_section(std::string_view key);

}  // namespace fanout::daemon::config_detail
