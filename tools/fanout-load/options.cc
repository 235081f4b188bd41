// fanout-load's command line: argv to Options (options.h), through tools/common/cli.h.
#include "tools/fanout-load/options.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <optional>
#include <set>
#include <string_view>

#include "routing/catalogue.h"
#include "tools/common/cli.h"
#include "transport/address_guard.h"

namespace fanout::load {

const char* const kUsage =
    "usage: fanout-load --url URL [--events N | --duration S] [--rate R] [--orgs K] [--types T]\n"
    "                   [--payload-bytes B] [--event-id ID] [--conns C] [--streams M]\n"
    "                   [--workers W] [--sign-key FILE | --sign] [--signing-threads N]\n"
    "                   [--retry-base-ms MS] [--max-retries N]\n"
    "                   [--insecure] [--allow-subnet CIDR]... [--http1] [--json] [--quiet]\n"
    "       fanout-load --ingest http://HOST:PORT --key INGEST_KEY [--events N | --duration S]\n"
    "                   [--rate R] [--orgs K] [--types T] [--payload-bytes B] [--event-id ID]\n"
    "                   [--batch N]\n"
    "                   [--conns C] [--streams M] [--http1] [--insecure] [--json] [--quiet]\n"
    "  --events N          events to publish (default 100000 when --duration is not given)\n"
    "  --duration S        publish for S seconds instead, then wait for the outcomes\n"
    "  --duration-max S    hard cap on the whole run: stop and report after S s (default 600)\n"
    "  --rate R            publish R events/s (default: as fast as the window allows)\n"
    "  --orgs K            organisations (default 10000)\n"
    "  --types T           event types per organisation, 1..6 (default 1)\n"
    "  --payload-bytes B   payload size in bytes (default 564: a 602 B delivery body)\n"
    "  --event-id ID       give every event this id, the same for all (default: none; the\n"
    "                      engine gives each its own)\n"
    "  --conns C           connections per origin (default 1)\n"
    "  --streams M         HTTP/2 streams per connection (default 100; --ingest: 1)\n"
    "  --workers W         engine workers (default 1)\n"
    "  --window N          events accepted and not final, at most (default 2 x W x C x M)\n"
    "  --sign-key FILE     sign with this PKCS#8 PEM Ed25519 key (openssl genpkey)\n"
    "  --sign              sign with a fresh key\n"
    "  --signing-threads N sign on N threads of their own, not on the workers (default 0)\n"
    "  --retry-base-ms MS  first retry delay (default 1000; then x3, jitter 20%)\n"
    "  --max-retries N     retries after the first attempt (default 5)\n"
    "  --insecure          skip TLS verification; allows 127.0.0.0/8 and ::1 (implied by\n"
    "                      http:// URLs)\n"
    "  --allow-subnet CIDR address-guard exception (repeatable)\n"
    "  --ca FILE           extra trust anchors (PEM) for https://\n"
    "  --http1             HTTP/1.1 only (no h2c, no h2 in ALPN)\n"
    "  --ingest URL        post to a running fanoutd's /v2/events instead (needs --key)\n"
    "  --key KEY           the INGEST API key (--ingest)\n"
    "  --batch N           events per ingest request, 1..10000 (default 500)\n"
    "  --json              print one JSON object at the end, no progress lines\n"
    "  --quiet             no progress lines on stderr\n"
    "  --print-body        print the delivery body the options give, and exit\n"
    "  --sign-rate-only    Ed25519 signatures/s of that body on this thread, no engine\n"
    "  --waiting-retries   memory per waiting retry (the URL must answer 503)\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "fanout-load: %s\n(fanout-load --help prints the usage)\n", message.c_str());
  std::exit(2);
}

namespace {

template <class T>
T integer_arg(std::string_view name, std::string_view text, T min, T max) {
  T v{};
  if (!cli::parse_number(text, v) || v < min || v > max) {
    usage_error(std::string(name) + " wants an integer in " + std::to_string(min) + ".." +
                std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  return v;
}

double seconds_arg(std::string_view name, std::string_view text) {
  double v = 0;
  if (!cli::parse_number(text, v) || !(v > 0) || !std::isfinite(v)) {
    usage_error(std::string(name) + " wants a positive number, got '" + std::string(text) + "'");
  }
  return v;
}

// The current option's value; a usage error when it has none.
std::string_view value_of(cli::Args& args) {
  const std::optional<std::string_view> v = args.value();
  if (!v) usage_error(std::string(args.name()) + " needs a value");
  return *v;
}

// The options that take a number.
bool parse_numeric(cli::Args& args, Options& o) {
  const std::string_view arg = args.name();
  if (arg == "--events") {
    o.events = integer_arg<std::uint64_t>(arg, value_of(args), 1, std::uint64_t{1} << 48);
  } else if (arg == "--duration") {
    o.duration_s = seconds_arg(arg, value_of(args));
  } else if (arg == "--duration-max") {
    o.duration_max_s = seconds_arg(arg, value_of(args));
  } else if (arg == "--rate") {
    o.rate = seconds_arg(arg, value_of(args));
  } else if (arg == "--orgs") {
    o.orgs = integer_arg<std::uint32_t>(arg, value_of(args), 1, 10'000'000);
  } else if (arg == "--types") {
    o.types = integer_arg<std::uint32_t>(
        arg, value_of(args), 1,
        static_cast<std::uint32_t>(fanout::routing::EventCatalogue().size()));
  } else if (arg == "--payload-bytes") {
    o.payload_bytes = integer_arg<std::size_t>(arg, value_of(args), 2, 16 << 20);
  } else if (arg == "--conns") {
    o.conns = integer_arg<std::uint32_t>(arg, value_of(args), 1, 10'000);
  } else if (arg == "--streams") {
    o.streams = integer_arg<std::uint32_t>(arg, value_of(args), 1, 1'000'000);
  } else if (arg == "--workers") {
    o.workers = integer_arg<unsigned>(arg, value_of(args), 1, 256);
  } else if (arg == "--signing-threads") {
    o.signing_threads = integer_arg<unsigned>(arg, value_of(args), 0, 256);
  } else if (arg == "--window") {
    o.window = integer_arg<std::uint64_t>(arg, value_of(args), 1, 100'000'000);
  } else if (arg == "--retry-base-ms") {
    o.retry_base_ms = integer_arg<std::uint64_t>(arg, value_of(args), 0, 3'600'000);
  } else if (arg == "--max-retries") {
    o.max_retries = integer_arg<std::uint32_t>(arg, value_of(args), 0, 100);
  } else if (arg == "--batch") {
    o.batch = integer_arg<std::size_t>(arg, value_of(args), 1, 10'000);
  } else {
    return false;
  }
  return true;
}

// The other options (a usage error for an unknown one).
void parse_option(cli::Args& args, Options& o) {
  const std::string_view arg = args.name();
  if (parse_numeric(args, o)) return;
  if (arg == "--url") {
    o.url = value_of(args);
  } else if (arg == "--ingest") {
    o.ingest = value_of(args);
  } else if (arg == "--key") {
    o.key = value_of(args);
    if (o.key.empty()) usage_error("--key wants the INGEST key");
  } else if (arg == "--sign-key") {
    o.sign_key_file = value_of(args);
  } else if (arg == "--sign") {
    o.sign = true;
  } else if (arg == "--insecure") {
    o.insecure = true;
  } else if (arg == "--allow-subnet") {
    const std::string_view cidr = value_of(args);
    if (!fanout::transport::Subnet::parse(cidr)) {
      usage_error("--allow-subnet wants a CIDR such as 10.0.0.0/8, got '" + std::string(cidr) +
                  "'");
    }
    o.allow_subnets.emplace_back(cidr);
  } else if (arg == "--event-id") {
    o.event_id = value_of(args);
    // The engine's rule for an event's id (routing/envelope.h), less '"' and '\\' so that it
    // goes into the envelope as it is.
    const bool fits = !o.event_id.empty() && o.event_id.size() <= 128 &&
                      std::all_of(o.event_id.begin(), o.event_id.end(), [](char c) {
                        return c >= 0x21 && c <= 0x7E && c != '"' && c != '\\';
                      });
    if (!fits) {
      usage_error(
          "--event-id wants 1 to 128 printable ASCII characters other than '\"' and "
          "'\\', got '" +
          o.event_id + "'");
    }
  } else if (arg == "--ca") {
    o.ca_file = value_of(args);
  } else if (arg == "--http1") {
    o.http1 = true;
  } else if (arg == "--json") {
    o.json = true;
  } else if (arg == "--quiet") {
    o.quiet = true;
  } else if (arg == "--print-body") {
    o.print_body = true;
  } else if (arg == "--sign-rate-only") {
    o.sign_rate_only = true;
  } else if (arg == "--waiting-retries") {
    o.waiting_retries = true;
  } else if (arg == "--help" || arg == "-h") {
    std::fputs(kUsage, stdout);
    std::exit(0);
  } else {
    usage_error("unknown option '" + std::string(arg) + "'");
  }
}

// Options that belong to one mode only, and the modes' defaults.
void check_modes(Options& o, const std::set<std::string, std::less<>>& given) {
  auto refuse = [&](std::initializer_list<const char*> names, const char* where) {
    for (const char* n : names) {
      if (given.contains(n)) usage_error(std::string(n) + " cannot be used " + where);
    }
  };
  if (given.contains("--events") && given.contains("--duration")) {
    usage_error("--events and --duration exclude each other");
  }
  if (o.sign && !o.sign_key_file.empty()) usage_error("--sign and --sign-key exclude each other");
  if (o.signing_threads != 0 && !o.sign && o.sign_key_file.empty()) {
    usage_error("--signing-threads needs --sign or --sign-key");
  }
  if (o.duration_s >= o.duration_max_s) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", o.duration_max_s);
    usage_error(std::string("--duration must be shorter than --duration-max (") + limit + " s)");
  }
  if (o.print_body || o.sign_rate_only) {
    refuse({"--url", "--ingest", "--key", "--duration", "--waiting-retries"},
           o.print_body ? "with --print-body" : "with --sign-rate-only");
    return;
  }
  if (!o.ingest.empty()) {
    refuse({"--url", "--workers", "--window", "--sign", "--sign-key", "--signing-threads",
            "--retry-base-ms", "--max-retries", "--allow-subnet", "--waiting-retries"},
           "with --ingest");
    if (o.key.empty()) usage_error("--ingest needs --key INGEST_KEY");
    if (o.streams == 0) o.streams = 1;
    return;
  }
  refuse({"--key", "--batch"}, "without --ingest");
  if (o.url.empty()) usage_error("--url URL (or --ingest URL) is required");
  if (o.waiting_retries) refuse({"--duration", "--rate"}, "with --waiting-retries");
  if (o.streams == 0) o.streams = 100;
  if (o.window == 0) {
    o.window = 2 * std::uint64_t{o.workers} * std::uint64_t{o.conns} * std::uint64_t{o.streams};
  }
}

}  // namespace

Options parse_args(int argc, char** argv) {
  Options o;
  std::set<std::string, std::less<>> given;
  cli::Args args(argc, argv);
  while (args.next()) {
    given.emplace(args.name());
    parse_option(args, o);
  }
  check_modes(o, given);
  return o;
}

}  // namespace fanout::load
