// The fanoutd configuration tests' helpers (config_test.cc, serve_args_test.cc): the serve
// command line and a TOML text applied to a Config, each with its error alone, and a temporary
// directory for TOML files.
#pragma once

#include <filesystem>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/temp_dir.h"
#include "tools/fanoutd/config.h"

namespace fanout::daemon {

using Args = std::initializer_list<std::string_view>;

inline tl::expected<Config, std::string> parse_args(Args args) {
  const std::vector<std::string_view> v(args);
  return parse_serve_args(v);
}

// The error of parse_serve_args, or "" when it succeeded.
inline std::string args_error(Args args) {
  auto c = parse_args(args);
  return c ? std::string() : c.error();
}

inline tl::expected<Config, std::string> from_toml(std::string_view text) {
  Config config;
  if (auto s = apply_toml(config, text, "t.toml"); !s) return tl::unexpected(s.error());
  return config;
}

// The error of apply_toml, or "" when it succeeded.
inline std::string toml_error(std::string_view text) {
  auto c = from_toml(text);
  return c ? std::string() : c.error();
}

// A directory for one test's TOML files (tests/support/temp_dir.h), removed at the end.
class ConfigDir : public fanout::testing::TempDir {
 public:
  ConfigDir() : TempDir("fanoutd_config_test") {}
  // Writes `text` to the file `name` in the directory; its path.
  [[nodiscard]] std::string write(const std::string& name, std::string_view text) const {
    const std::filesystem::path file = path() / name;
    fanout::testing::write_file(file, text);
    return file.string();
  }
};

}  // namespace fanout::daemon
