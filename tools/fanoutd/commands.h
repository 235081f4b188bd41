// fanoutd's commands (main.cc dispatches to them) and the flag parsing they share.
#pragma once

#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

namespace fanout::daemon {

extern const char* const kUsage;

// Prints "fanoutd: MESSAGE" and the usage on stderr; returns 2 (the exit status).
int usage_error(const std::string& message);

// "--name value" or "--name=value" flags after a subcommand; positional words kept in order.
struct Flags {
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> positional;
  [[nodiscard]] const std::string* get(std::string_view name) const {
    const std::string* found = nullptr;
    for (const auto& [n, v] : named) {
      if (n == name) found = &v;
    }
    return found;
  }
};

// `known` flags take a value; `switches` take none (present: value "true").
tl::expected<Flags, std::string> parse_flags(std::span<char*> args,
                                             std::initializer_list<std::string_view> known,
                                             std::initializer_list<std::string_view> switches = {});

// The commands: ARGS are the words after the command's name; each returns the exit status.
int cmd_serve(std::span<char*> args);    // cmd_serve.cc
int cmd_apikey(std::span<char*> args);   // cmd_apikey.cc
int cmd_keys(std::span<char*> args);     // cmd_apikey.cc
int cmd_publish(std::span<char*> args);  // cmd_publish.cc

}  // namespace fanout::daemon
