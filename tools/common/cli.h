// Command-line walking shared by fanout-sink, fanout-load and fanout-client-bench
// (bench/transport/client_bench.cc): each program keeps its own options, checks and messages;
// this is the part they all repeated. Header only, so that bench/ needs no library for it.
//
//   fanout::cli::Args args(argc, argv);
//   while (args.next()) {
//     if (args.is("--count")) {
//       const auto v = args.value();  // nullopt: the option was the last argument
//       std::uint32_t n;
//       if (!v || !fanout::cli::parse_integer(*v, n)) ...
//     }
//   }
//
// With `inline_values`, "--name=value" is read as "--name value" (fanout-sink's command line);
// without, "--name=value" is an option of that whole name, which the program does not know.
#pragma once

#include <charconv>
#include <optional>
#include <string_view>
#include <system_error>

namespace fanout::cli {

class Args {
 public:
  Args(int argc, char** argv, bool inline_values = false)
      : argc_(argc), argv_(argv), inline_values_(inline_values) {}

  // Moves to the next option; false once every argument was read.
  bool next() {
    if (++i_ >= argc_) return false;
    name_ = argv_[i_];
    inline_.reset();
    if (inline_values_ && name_.starts_with("--")) {
      if (const std::size_t eq = name_.find('='); eq != std::string_view::npos) {
        inline_ = name_.substr(eq + 1);
        name_ = name_.substr(0, eq);
      }
    }
    return true;
  }

  // The current option's name (without its inline "=value").
  [[nodiscard]] std::string_view name() const { return name_; }
  [[nodiscard]] bool is(std::string_view n) const { return name_ == n; }

  // The current option's value: its inline "=value", else the next argument (consumed);
  // nullopt when there is none.
  std::optional<std::string_view> value() {
    if (inline_) return inline_;
    if (i_ + 1 >= argc_) return std::nullopt;
    return std::string_view(argv_[++i_]);
  }

  // True when the current option was written "--name=value" (a flag must not be).
  [[nodiscard]] bool has_inline_value() const { return inline_.has_value(); }

 private:
  int argc_;
  char** argv_;
  bool inline_values_;
  int i_ = 0;
  std::string_view name_;
  std::optional<std::string_view> inline_;
};

// The whole of `s` as a number (std::from_chars: no sign for unsigned types, no blanks, no
// trailing bytes); false otherwise, `out` then unspecified.
template <class T>
bool parse_number(std::string_view s, T& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace fanout::cli
