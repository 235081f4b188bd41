// fanout-sink's command line: argv to Options (options.h), through tools/common/cli.h.
#include "tools/fanout-sink/options.h"

#include <arpa/inet.h>

#include <cerrno>
#include <cstdlib>

#include "tools/common/cli.h"

namespace fanout::sink {

const char* const kUsage =
    "usage: fanout-sink --listen HOST:PORT [options]\n"
    "  --listen HOST:PORT        numeric address; PORT 0 picks one (printed on stdout)\n"
    "  --tls-cert FILE --tls-key FILE\n"
    "                            serve TLS (ALPN h2, http/1.1) instead of h2c + HTTP/1.1\n"
    "  --status-mix S:W,...      answer status S with weight W (default 200:1)\n"
    "  --delay-ms N              answer (or reset) N ms after the request (default 0)\n"
    "  --blackhole               never answer\n"
    "  --reset-rate P            fraction 0..1 of requests reset (HTTP/2 RST_STREAM,\n"
    "                            HTTP/1.1 connection close)\n"
    "  --plan SPEC               answer by a fixed plan per event instead of drawing:\n"
    "                            plans separated by ';', each a ','-separated list of steps\n"
    "                            for attempts 1, 2, ... (later attempts repeat the last).\n"
    "                            A step is a status (200..599), 'reset', or\n"
    "                            'slow:MS:STATUS'. The plan of an event is FNV-1a 64 of its\n"
    "                            X-Partoo-Event-Id modulo the number of plans; the attempt\n"
    "                            is X-Partoo-Attempt (missing or bad: 1). Example:\n"
    "                            --plan '503,503,200;reset,200;slow:2000:200;404'\n"
    "                            Not with --status-mix, --reset-rate or --blackhole.\n"
    "  --goaway-every N          GOAWAY after every Nth request on a connection\n"
    "  --record FILE             append one JSON line per request (flushed each loop turn)\n"
    "  --print                   print one line per request on stdout (event id, attempt,\n"
    "                            body up to 300 bytes)\n"
    "  --seed N                  seed of the status and reset draws (default 1)\n"
    "  --max-body BYTES          largest request body accepted (default 8388608)\n"
    "  --json                    print the final summary as JSON\n"
    "  --quiet                   no live rate line on stderr\n"
    "  --help                    this text\n";

namespace {

template <class T>
bool parse_uint(std::string_view s, T& out) {
  return cli::parse_number(s, out);
}

bool parse_fraction(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = std::strtod(s.c_str(), &end);
  return errno == 0 && end == s.c_str() + s.size() && out >= 0.0 && out <= 1.0;
}

// "200:90,500:5,404:5"
bool parse_mix(std::string_view s, std::vector<std::pair<int, std::uint64_t>>& out,
               std::string& err) {
  out.clear();
  std::uint64_t total = 0;
  while (!s.empty()) {
    const std::size_t comma = s.find(',');
    const std::string_view item = s.substr(0, comma);
    s = comma == std::string_view::npos ? std::string_view() : s.substr(comma + 1);
    const std::size_t colon = item.find(':');
    int status = 0;
    std::uint64_t weight = 0;
    if (colon == std::string_view::npos || !parse_uint(item.substr(0, colon), status) ||
        !parse_uint(item.substr(colon + 1), weight)) {
      err = "--status-mix: '" + std::string(item) + "' is not STATUS:WEIGHT";
      return false;
    }
    if (status < 200 || status > 599) {
      err = "--status-mix: status " + std::to_string(status) + " is outside 200..599";
      return false;
    }
    if (weight == 0) continue;
    out.emplace_back(status, weight);
    total += weight;
  }
  if (total == 0) {
    err = "--status-mix: no status has a positive weight";
    return false;
  }
  return true;
}

// One --plan step: "503", "reset" or "slow:MS:STATUS".
bool parse_plan_step(std::string_view item, PlanStep& step, std::string& err) {
  auto status_ok = [&](std::string_view text, int& status) {
    if (!parse_uint(text, status)) return false;
    if (status < 200 || status > 599) {
      err = "--plan: status " + std::string(text) + " in '" + std::string(item) +
            "' is outside 200..599";
      if (status >= 100 && status < 200) err += " (a 1xx is not a final answer)";
      return false;
    }
    return true;
  };
  step = PlanStep{};
  if (item == "reset") {
    step.status = 0;
    return true;
  }
  if (item.starts_with("slow:")) {
    const std::string_view rest = item.substr(5);
    const std::size_t colon = rest.find(':');
    if (colon == std::string_view::npos || !parse_uint(rest.substr(0, colon), step.delay_ms)) {
      err = "--plan: '" + std::string(item) +
            "' is not slow:MS:STATUS (MS a number of milliseconds below 2^32)";
      return false;
    }
    step.slow = true;
    if (!status_ok(rest.substr(colon + 1), step.status)) {
      if (err.empty()) {
        err = "--plan: '" + std::string(item) + "' is not slow:MS:STATUS (STATUS a number)";
      }
      return false;
    }
    return true;
  }
  if (!status_ok(item, step.status)) {
    if (err.empty()) {
      err = "--plan: '" + std::string(item) + "' is not a status, reset or slow:MS:STATUS";
    }
    return false;
  }
  return true;
}

// "503,503,200;reset,200;slow:2000:200"
bool parse_plans(std::string_view s, std::vector<Plan>& out, std::string& err) {
  out.clear();
  err.clear();
  std::size_t index = 0;
  for (;;) {
    ++index;
    const std::size_t semi = s.find(';');
    std::string_view text = s.substr(0, semi);
    if (text.empty()) {
      err = "--plan: plan " + std::to_string(index) + " is empty";
      return false;
    }
    Plan& plan = out.emplace_back();
    for (;;) {
      const std::size_t comma = text.find(',');
      const std::string_view item = text.substr(0, comma);
      if (item.empty()) {
        err = "--plan: plan " + std::to_string(index) + " has an empty step";
        return false;
      }
      if (!parse_plan_step(item, plan.emplace_back(), err)) return false;
      if (comma == std::string_view::npos) break;
      text = text.substr(comma + 1);
    }
    if (semi == std::string_view::npos) return true;
    s = s.substr(semi + 1);
  }
}

bool parse_listen(std::string_view s, Options& o, std::string& err) {
  const std::size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) {
    err = "--listen: expected HOST:PORT, got '" + std::string(s) + "'";
    return false;
  }
  std::string_view host = s.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (!parse_uint(s.substr(colon + 1), o.port)) {
    err = "--listen: bad port in '" + std::string(s) + "'";
    return false;
  }
  o.host = std::string(host);
  unsigned char buf[16];
  if (inet_pton(AF_INET, o.host.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, o.host.c_str(), buf) != 1) {
    err = "--listen: '" + o.host + "' is not a numeric IPv4 or IPv6 address";
    return false;
  }
  return true;
}

// The value of the current option, into `out`; false with `err` set when there is none.
bool need(cli::Args& args, std::string& out, std::string& err) {
  const std::optional<std::string_view> v = args.value();
  if (!v) {
    err = std::string(args.name()) + " needs a value";
    return false;
  }
  out = std::string(*v);
  return true;
}

// A flag (an option without a value): false with `err` set when written --flag=value.
bool flag(const cli::Args& args, std::string& err) {
  if (args.has_inline_value()) err = std::string(args.name()) + " takes no value";
  return !args.has_inline_value();
}

// A numeric option's value: false with `err` set ("--NAME: 'V' is not WHAT").
template <class T>
bool need_uint(cli::Args& args, T& out, const char* what, std::string& err) {
  std::string v;
  if (!need(args, v, err)) return false;
  if (!parse_uint(v, out)) {
    err = std::string(args.name()) + ": '" + v + "' is not " + what;
    return false;
  }
  return true;
}

// One option; false with `err` set (empty: --help).
bool parse_option(cli::Args& args, Options& o, bool& have_listen, std::string& err) {
  const std::string_view arg = args.name();
  std::string v;
  if (arg == "--help" || arg == "-h") {
    err.clear();
    return false;
  } else if (arg == "--listen") {
    if (!need(args, v, err) || !parse_listen(v, o, err)) return false;
    have_listen = true;
  } else if (arg == "--tls-cert") {
    return need(args, o.tls_cert, err);
  } else if (arg == "--tls-key") {
    return need(args, o.tls_key, err);
  } else if (arg == "--status-mix") {
    if (!need(args, v, err) || !parse_mix(v, o.mix, err)) return false;
    o.have_mix = true;
  } else if (arg == "--plan") {
    return need(args, v, err) && parse_plans(v, o.plans, err);
  } else if (arg == "--delay-ms") {
    return need_uint(args, o.delay_ms, "a number of milliseconds", err);
  } else if (arg == "--blackhole") {
    o.blackhole = true;
    return flag(args, err);
  } else if (arg == "--reset-rate") {
    if (!need(args, v, err)) return false;
    if (!parse_fraction(v, o.reset_rate)) {
      err = "--reset-rate: '" + v + "' is not a fraction between 0 and 1";
      return false;
    }
    o.have_reset_rate = true;
  } else if (arg == "--goaway-every") {
    if (!need(args, v, err)) return false;
    if (!parse_uint(v, o.goaway_every) || o.goaway_every == 0) {
      err = "--goaway-every: '" + v + "' is not a positive count";
      return false;
    }
  } else if (arg == "--record") {
    return need(args, o.record, err);
  } else if (arg == "--seed") {
    return need_uint(args, o.seed, "an unsigned integer", err);
  } else if (arg == "--max-body") {
    return need_uint(args, o.max_body, "a byte count", err);
  } else if (arg == "--print") {
    o.print = true;
    return flag(args, err);
  } else if (arg == "--json") {
    o.json = true;
    return flag(args, err);
  } else if (arg == "--quiet") {
    o.quiet = true;
    return flag(args, err);
  } else {
    err = "unknown option '" + std::string(arg) + "'";
    return false;
  }
  return true;
}

// What no single option shows: a missing --listen, half a certificate, --plan beside a draw.
bool check(const Options& o, bool have_listen, std::string& err) {
  if (!have_listen) {
    err = "--listen HOST:PORT is required";
    return false;
  }
  if (o.tls_cert.empty() != o.tls_key.empty()) {
    err = "--tls-cert and --tls-key go together";
    return false;
  }
  if (!o.plans.empty()) {
    const char* other = o.have_mix          ? "--status-mix"
                        : o.have_reset_rate ? "--reset-rate"
                        : o.blackhole       ? "--blackhole"
                                            : nullptr;
    if (other != nullptr) {
      err = std::string("--plan and ") + other +
            " cannot be used together (the plan decides every answer)";
      return false;
    }
  }
  return true;
}

}  // namespace

std::optional<Options> parse_args(int argc, char** argv, std::string& err) {
  Options o;
  bool have_listen = false;
  cli::Args args(argc, argv, /*inline_values=*/true);
  while (args.next()) {
    if (!parse_option(args, o, have_listen, err)) return std::nullopt;
  }
  if (!check(o, have_listen, err)) return std::nullopt;
  return o;
}

}  // namespace fanout::sink
