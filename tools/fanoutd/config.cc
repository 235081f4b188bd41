// fanoutd's configuration (config.h). One table of options (kOptions, config_options.cc) drives
// both the TOML file and the command line, so a key and its flag share one type, one range and
// one error text.
//
// Each Option names its TOML key path, its flag (if it has one) and its kind: an integer range,
// a number range, a boolean, a string, a list of strings, the log level or the listen address.
// apply_toml() walks the parsed document: a known section ([retry], [timeouts]...) recurses, a
// known key is type- and range-checked then stored, anything else is "unknown option".
// parse_serve_args() first splits the line into flags and values (unknown flags and missing
// values are found before anything is read), applies the --config file, then the other flags in
// their order, then checks what only makes sense on the whole (tls_cert together with tls_key).
//
// Errors read "ORIGIN: KEY: must be RULE (got VALUE)" for the file (VALUE as TOML would write
// it, or "a table", "an array"...) and "--flag: must be RULE (got "TEXT")" for flags.
//
// toml++ is Debian's compiled library, built with exceptions (only its `ex` ABI is exported, so
// TOML_EXCEPTIONS=0 and toml::parse_result's error mode cannot be linked): toml::parse() throws
// toml::parse_error, caught right there and turned into an error value. Nothing else throws
// here but std::bad_alloc.
#include "tools/fanoutd/config.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include <toml++/toml.h>

#include "tools/fanoutd/config_internal.h"

namespace fanout::daemon {
namespace {

using namespace config_detail;

// --- Formatting ---------------------------------------------------------------------------------

std::string format_int(std::int64_t v) {
  return std::to_string(v);
}

// Shortest round-trip form ("1", "0.5", "1e+300").
std::string format_double(double v) {
  std::array<char, 64> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  if (ec != std::errc()) return "?";
  return std::string(buf.data(), end);
}

// A string in double quotes, with quotes, backslashes and control characters escaped.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto u = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += ch;
    }
  }
  out += '"';
  return out;
}

// How a TOML value is shown after "got": scalars as TOML writes them, containers by their kind.
std::string describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return quote(node.as_string()->get());
    case toml::node_type::integer:
      return format_int(node.as_integer()->get());
    case toml::node_type::floating_point: {
      std::string s = format_double(node.as_floating_point()->get());
      // 2.0 prints as "2": keep the point so that a float is seen as one.
      if (s.find_first_not_of("-0123456789") == std::string::npos) s += ".0";
      return s;
    }
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// The rule a value of this kind must follow, as in "must be <rule>".
std::string rule(const Kind& kind) {
  struct Visitor {
    std::string operator()(const IntKind& k) const {
      if (k.hi == kNoMax) return "an integer >= " + format_int(k.lo);
      return "an integer in " + format_int(k.lo) + ".." + format_int(k.hi);
    }
    std::string operator()(const NumberKind& k) const {
      if (std::isinf(k.hi)) return "a number >= " + format_double(k.lo);
      return "a number in [" + format_double(k.lo) + ", " + format_double(k.hi) +
             (k.hi_open ? ")" : "]");
    }
    std::string operator()(const BoolKind&) const { return "true or false"; }
    std::string operator()(const StringKind& k) const {
      return k.non_empty ? "a non-empty string" : "a string";
    }
    std::string operator()(const StringListKind&) const { return "an array of strings"; }
    std::string operator()(const LogLevelKind&) const { return "one of debug, info, warn, error"; }
    std::string operator()(const ListenKind&) const { return "a string"; }
  };
  return std::visit(Visitor{}, kind);
}

std::string must_be(const Kind& kind, std::string_view got) {
  std::string out = "must be " + rule(kind) + " (got ";
  out += got;
  out += ')';
  return out;
}

std::optional<LogLevel> parse_log_level(std::string_view s) {
  if (s == "debug") return LogLevel::kDebug;
  if (s == "info") return LogLevel::kInfo;
  if (s == "warn") return LogLevel::kWarn;
  if (s == "error") return LogLevel::kError;
  return std::nullopt;
}

bool in_range(const NumberKind& k, double v) {
  if (!std::isfinite(v) || v < k.lo) return false;
  return k.hi_open ? v < k.hi : v <= k.hi;
}

// --- Applying one value -------------------------------------------------------------------------
// Both return the message that follows "NAME: " on error.

// A value from the TOML file. `key` is the option's path (for array element errors).
Status apply_node(Config& config, const Option& option, const toml::node& node, std::string& key) {
  const Kind& kind = option.kind;
  if (const auto* k = std::get_if<IntKind>(&kind)) {
    const auto* v = node.as_integer();
    if (v == nullptr || v->get() < k->lo || v->get() > k->hi)
      return tl::unexpected(must_be(kind, describe(node)));
    k->set(config, v->get());
  } else if (const auto* n = std::get_if<NumberKind>(&kind)) {
    double d = 0;
    if (const auto* i = node.as_integer()) {
      d = static_cast<double>(i->get());
    } else if (const auto* f = node.as_floating_point()) {
      d = f->get();
    } else {
      return tl::unexpected(must_be(kind, describe(node)));
    }
    if (!in_range(*n, d)) return tl::unexpected(must_be(kind, describe(node)));
    n->set(config, d);
  } else if (const auto* b = std::get_if<BoolKind>(&kind)) {
    const auto* v = node.as_boolean();
    if (v == nullptr) return tl::unexpected(must_be(kind, describe(node)));
    b->set(config, v->get());
  } else if (const auto* s = std::get_if<StringKind>(&kind)) {
    const auto* v = node.as_string();
    if (v == nullptr || (s->non_empty && v->get().empty()))
      return tl::unexpected(must_be(kind, describe(node)));
    s->set(config, v->get());
  } else if (const auto* l = std::get_if<StringListKind>(&kind)) {
    const auto* array = node.as_array();
    if (array == nullptr) return tl::unexpected(must_be(kind, describe(node)));
    for (std::size_t i = 0; i < array->size(); ++i) {
      const auto* v = (*array)[i].as_string();
      if (v == nullptr) {
        key += '[' + std::to_string(i) + ']';
        return tl::unexpected(must_be(StringKind{false, nullptr}, describe((*array)[i])));
      }
      l->append(config, v->get());
    }
  } else if (std::holds_alternative<LogLevelKind>(kind)) {
    const auto* v = node.as_string();
    const auto level = v != nullptr ? parse_log_level(v->get()) : std::nullopt;
    if (!level) return tl::unexpected(must_be(kind, describe(node)));
    config.log_level = *level;
  } else if (std::holds_alternative<ListenKind>(kind)) {
    const auto* v = node.as_string();
    if (v == nullptr) return tl::unexpected(must_be(kind, describe(node)));
    auto listen = parse_listen(v->get());
    if (!listen) return tl::unexpected(std::move(listen.error()));
    config.listen_host = std::move(listen->first);
    config.listen_port = listen->second;
  }
  return {};
}

// A value from the command line (never for BoolKind, which takes none).
Status apply_text(Config& config, const Option& option, std::string_view text) {
  const Kind& kind = option.kind;
  if (const auto* k = std::get_if<IntKind>(&kind)) {
    std::int64_t v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || ptr != end || v < k->lo || v > k->hi)
      return tl::unexpected(must_be(kind, quote(text)));
    k->set(config, v);
  } else if (const auto* n = std::get_if<NumberKind>(&kind)) {
    double v = 0;
    const char* end = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(text.data(), end, v);
    if (text.empty() || ec != std::errc() || ptr != end || !in_range(*n, v))
      return tl::unexpected(must_be(kind, quote(text)));
    n->set(config, v);
  } else if (const auto* s = std::get_if<StringKind>(&kind)) {
    if (s->non_empty && text.empty()) return tl::unexpected(must_be(kind, quote(text)));
    s->set(config, std::string(text));
  } else if (const auto* l = std::get_if<StringListKind>(&kind)) {
    l->append(config, std::string(text));
  } else if (std::holds_alternative<LogLevelKind>(kind)) {
    const auto level = parse_log_level(text);
    if (!level) return tl::unexpected(must_be(kind, quote(text)));
    config.log_level = *level;
  } else if (std::holds_alternative<ListenKind>(kind)) {
    auto listen = parse_listen(text);
    if (!listen) return tl::unexpected(std::move(listen.error()));
    config.listen_host = std::move(listen->first);
    config.listen_port = listen->second;
  }
  return {};
}

// --- TOML ---------------------------------------------------------------------------------------

// Applies every key of `table`, whose path is `prefix` ("" for the root).
Status apply_table(Config& config, const toml::table& table, const std::string& prefix,
                   std::string_view origin) {
  for (const auto& [name, node] : table) {
    std::string key =
        prefix.empty() ? std::string(name.str()) : prefix + "." + std::string(name.str());
    auto fail = [&](std::string_view message) {
      std::string out(origin);
      out += ": ";
      out += key;
      out += ": ";
      out += message;
      return tl::unexpected(std::move(out));
    };
    if (is_section(key)) {
      const auto* sub = node.as_table();
      if (sub == nullptr) return fail("must be a table (got " + describe(node) + ")");
      if (auto s = apply_table(config, *sub, key, origin); !s) return s;
      continue;
    }
    const Option* option = find_by_key(key);
    if (option == nullptr) return fail("unknown option");
    if (auto s = apply_node(config, *option, node, key); !s) return fail(s.error());
  }
  return {};
}

// What can only be checked once every source has been applied.
Status validate(const Config& config) {
  if (config.tls_cert.empty() != config.tls_key.empty())
    return tl::unexpected(
        std::string("tls_cert and tls_key (--tls-cert, --tls-key) must be given together"));
  for (const std::string& p : config.allowed_ports) {
    if (!parse_port_range(p)) {
      return tl::unexpected("allowed_ports (--allowed-port): \"" + p +
                            "\" must be a port N or a range A-B, within 1-65535, A <= B");
    }
  }
  if (const auto s = routing::parse_webhook_signing(config.standard_webhooks);
      !s || *s == routing::WebhookSigning::kDefault) {
    return tl::unexpected(
        "signing.standard_webhooks (--standard-webhooks): must be \"off\", "
        "\"v1a\", \"v1\" or \"both\" (got " +
        quote(config.standard_webhooks) + ")");
  }
  if (!config.redis.url.empty()) {
    if (auto ep = source::parse_redis_url(config.redis.url); !ep) {
      return tl::unexpected("source.redis.url (--redis-url): " + ep.error());
    }
    if (config.redis.start_id != "0" && config.redis.start_id != "$") {
      return tl::unexpected(std::string("source.redis.start_id: must be \"0\" or \"$\""));
    }
  }
  return {};
}

// --- Listen address -----------------------------------------------------------------------------

bool is_ipv4(std::string_view s) {
  in_addr a{};
  return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}

bool is_ipv6(std::string_view s) {
  in6_addr a{};
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

}  // namespace

std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
  }
  return "unknown";
}

std::optional<std::pair<std::uint16_t, std::uint16_t>> parse_port_range(std::string_view s) {
  const auto number = [](std::string_view t) -> std::optional<std::uint16_t> {
    unsigned v = 0;
    const auto r = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || r.ec != std::errc() || r.ptr != t.data() + t.size() || v < 1 || v > 65535) {
      return std::nullopt;
    }
    return static_cast<std::uint16_t>(v);
  };
  const std::size_t dash = s.find('-');
  const auto lo = number(s.substr(0, dash));
  const auto hi = dash == std::string_view::npos ? lo : number(s.substr(dash + 1));
  if (!lo || !hi || *lo > *hi) return std::nullopt;
  return std::pair{*lo, *hi};
}

bool port_allowed(const std::vector<std::string>& ranges, std::uint16_t port) {
  if (ranges.empty()) return port == 80 || port == 443 || port >= 1024;
  for (const std::string& r : ranges) {
    const auto range = parse_port_range(r);
    if (range && port >= range->first && port <= range->second) return true;
  }
  return false;
}

tl::expected<std::pair<std::string, std::uint16_t>, std::string> parse_listen(std::string_view s) {
  const std::string got = " (got " + quote(s) + ")";
  auto general = [&] {
    return tl::unexpected("expected HOST:PORT with a numeric IPv4 or [IPv6] address" + got);
  };
  std::string_view host;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos) return general();
    host = s.substr(1, close - 1);
    if (!is_ipv6(host)) return general();
    const std::string_view rest = s.substr(close + 1);
    if (rest.empty()) return tl::unexpected("missing :PORT after the address" + got);
    if (rest.front() != ':') return general();
    port = rest.substr(1);
  } else {
    if (is_ipv4(s)) return tl::unexpected("missing :PORT after the address" + got);
    const auto colon = s.rfind(':');
    if (is_ipv6(s) ||
        (colon != std::string_view::npos && s.substr(0, colon).find(':') != std::string_view::npos))
      return tl::unexpected("an IPv6 address must be in brackets, as in [::1]:8080" + got);
    if (colon == std::string_view::npos) return general();
    host = s.substr(0, colon);
    if (!is_ipv4(host)) return general();
    port = s.substr(colon + 1);
  }
  // Decimal digits only (no sign, no spaces), at most 65535.
  unsigned value = 0;
  const char* end = port.data() + port.size();
  auto [ptr, ec] = std::from_chars(port.data(), end, value);
  if (port.empty() || port.size() > 5 || port.front() < '0' || port.front() > '9' ||
      ec != std::errc() || ptr != end || value > 65'535)
    return tl::unexpected("the port must be a decimal integer in 0..65535" + got);
  return std::pair{std::string(host), static_cast<std::uint16_t>(value)};
}

tl::expected<void, std::string> apply_toml(Config& config, std::string_view toml,
                                           std::string_view origin) {
  toml::table table;
  try {
    table = toml::parse(toml, std::string(origin));
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return tl::unexpected(std::string(origin) + ":" + std::to_string(where.line) + ":" +
                          std::to_string(where.column) + ": " + std::string(e.description()));
  }
  return apply_table(config, table, "", origin);
}

tl::expected<void, std::string> apply_toml_file(Config& config, const std::filesystem::path& file) {
  auto fail = [&](int err) {
    return tl::unexpected(file.string() + ": " + std::generic_category().message(err));
  };
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (f == nullptr) return fail(errno);
  std::string text;
  std::array<char, 64 * 1024> buf{};
  std::size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), f)) > 0) text.append(buf.data(), n);
  const int err = std::ferror(f) != 0 ? errno : 0;
  std::fclose(f);
  if (err != 0) return fail(err);
  return apply_toml(config, text, file.string());
}

tl::expected<Config, std::string> parse_serve_args(std::span<const std::string_view> args) {
  // Pass 1: split into (option, value) pairs; find --config.
  struct Flag {
    const Option* option;
    std::string_view name;
    std::string_view value;
  };
  std::vector<Flag> flags;
  std::optional<std::string_view> config_file;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (!arg.starts_with("--")) return tl::unexpected("unexpected argument " + quote(arg));
    const auto eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    const Option* option = name == "--config" ? nullptr : find_by_flag(name);
    if (option == nullptr && name != "--config")
      return tl::unexpected(std::string(name) + ": unknown flag");
    if (option != nullptr && std::holds_alternative<BoolKind>(option->kind)) {
      if (eq != std::string_view::npos)
        return tl::unexpected(std::string(name) + ": takes no value");
      flags.push_back({option, name, {}});
      continue;
    }
    std::string_view value;
    if (eq != std::string_view::npos) {
      value = arg.substr(eq + 1);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      // A following "--..." is the next flag, not a value (write --data=--odd for that).
      value = args[++i];
    } else {
      return tl::unexpected(std::string(name) + ": missing value");
    }
    if (option == nullptr) {
      if (config_file) return tl::unexpected(std::string("--config: given more than once"));
      config_file = value;
    } else {
      flags.push_back({option, name, value});
    }
  }

  // Pass 2: defaults, the file, then the flags in their order.
  Config config;
  if (config_file) {
    if (config_file->empty())
      return tl::unexpected(std::string("--config: must be a non-empty string (got \"\")"));
    if (auto s = apply_toml_file(config, std::filesystem::path(*config_file)); !s)
      return tl::unexpected(std::move(s.error()));
  }
  for (const Flag& flag : flags) {
    if (const auto* b = std::get_if<BoolKind>(&flag.option->kind)) {
      b->set(config, true);
      continue;
    }
    if (auto s = apply_text(config, *flag.option, flag.value); !s)
      return tl::unexpected(std::string(flag.name) + ": " + s.error());
  }
  if (auto s = validate(config); !s) return tl::unexpected(std::move(s.error()));
  return config;
}

}  // namespace fanout::daemon
