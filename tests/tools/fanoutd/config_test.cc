// Tests of tools/fanoutd/config.cc: the README's defaults, every TOML key mapped to its field,
// type and range errors (exact texts, range boundaries of every integer key), unknown keys and
// tables, parse errors with their line, and files. The serve command line and parse_listen():
// serve_args_test.cc. TOML files are written into a mkdtemp directory removed at the end.
#include "tools/fanoutd/config.h"

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "tests/tools/fanoutd/config_support.h"

namespace fanout::daemon {
namespace {

// --- Defaults -----------------------------------------------------------------------------------

void expect_readme_defaults(const Config& c) {
  EXPECT_EQ(c.listen_host, "127.0.0.1");
  EXPECT_EQ(c.listen_port, 8080);
  EXPECT_EQ(c.data_dir, std::filesystem::path("fanoutd-data"));
  EXPECT_EQ(c.tls_cert, "");
  EXPECT_EQ(c.tls_key, "");
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.drain_timeout_ms, 10'000u);
  EXPECT_EQ(c.engine.workers, 0u);
  EXPECT_EQ(c.engine.max_in_flight, 1'000'000u);
  EXPECT_EQ(c.engine.max_event_bytes, 262'144u);
  EXPECT_FALSE(c.engine.insecure);
  EXPECT_EQ(c.engine.ca_file, "");
  EXPECT_TRUE(c.engine.allow_subnets.empty());
  EXPECT_TRUE(c.engine.extra_event_types.empty());
  EXPECT_EQ(c.engine.retry.max_retries, 5u);
  EXPECT_EQ(c.engine.retry.base_ms, 30'000u);
  EXPECT_EQ(c.engine.retry.factor, 3.0);
  EXPECT_EQ(c.engine.retry.cap_ms, 3'600'000u);
  EXPECT_EQ(c.engine.retry.jitter, 0.2);
  EXPECT_FALSE(c.engine.retry.retry_429);
  EXPECT_EQ(c.engine.connect_timeout_ms, 5'000u);
  EXPECT_EQ(c.engine.response_timeout_ms, 10'000u);
  EXPECT_EQ(c.engine.idle_timeout_ms, 60'000u);
  EXPECT_EQ(c.engine.max_connections_per_origin, 8u);
  EXPECT_EQ(c.engine.max_streams_per_connection, 256u);
  EXPECT_EQ(c.engine.max_pending_per_origin, 65'536u);
  EXPECT_EQ(c.api_rate_limit_per_minute, 300u);
  EXPECT_EQ(c.api_max_body_bytes, 1'048'576u);
  EXPECT_EQ(c.api_idle_timeout_ms, 60'000u);
  EXPECT_EQ(c.api_request_timeout_ms, 30'000u);
  EXPECT_EQ(c.api_write_timeout_ms, 30'000u);
  EXPECT_EQ(c.api_max_unsent_output_bytes, 1024u * 1024);
  EXPECT_EQ(c.api_max_connections, 1024u);
  EXPECT_EQ(c.fd_reserve, 1024u);
  EXPECT_EQ(c.ingest_max_body_bytes, 16'777'216u);
  EXPECT_EQ(c.ingest_max_events, 10'000u);
  EXPECT_EQ(c.ingest_retry_after_s, 1u);
  EXPECT_EQ(c.engine.signing_key_pem, "");
  EXPECT_EQ(c.standard_webhooks, "off");
  EXPECT_EQ(c.engine.standard_webhooks, routing::WebhookSigning::kOff);
  EXPECT_EQ(c.engine.signing_threads, 0u);
  EXPECT_TRUE(c.engine.partoo_signature);
}

TEST(ConfigDefaults, MatchTheReadmeTable) {
  expect_readme_defaults(Config{});
}

TEST(ConfigDefaults, EmptyCommandLineAndEmptyFileKeepThem) {
  auto c = parse_args({});
  ASSERT_TRUE(c) << c.error();
  expect_readme_defaults(*c);
  auto t = from_toml("# nothing but a comment\n");
  ASSERT_TRUE(t) << t.error();
  expect_readme_defaults(*t);
}

TEST(ConfigDefaults, LogLevelNames) {
  EXPECT_EQ(to_string(LogLevel::kDebug), "debug");
  EXPECT_EQ(to_string(LogLevel::kInfo), "info");
  EXPECT_EQ(to_string(LogLevel::kWarn), "warn");
  EXPECT_EQ(to_string(LogLevel::kError), "error");
}

// --- TOML: every key ----------------------------------------------------------------------------

TEST(ConfigToml, EveryKeyMapsToItsField) {
  auto c = from_toml(R"(
listen = "[::1]:9000"
data = "/var/lib/fanoutd"
tls_cert = "cert.pem"
tls_key = "key.pem"
log_level = "debug"
drain_timeout_ms = 2500
workers = 3
max_in_flight = 5000
max_event_bytes = 4096
insecure = true
ca_file = "ca.pem"
allow_subnets = ["10.0.0.0/8", "::1/128"]
event_types = ["order_created", "order_paid"]

[retry]
max_retries = 7
base_ms = 1500
factor = 2.5
cap_ms = 99000
jitter = 0.5
retry_429 = true

[timeouts]
connect_ms = 111
response_ms = 222
idle_ms = 333

[limits]
max_connections_per_origin = 16
max_streams_per_connection = 100
max_pending_per_origin = 1234

[api]
rate_limit_per_minute = 60
max_body_bytes = 2048
idle_timeout_ms = 0
request_timeout_ms = 1234

[ingest]
max_body_bytes = 4096
max_events = 50
retry_after_s = 7
)");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->listen_host, "::1");
  EXPECT_EQ(c->listen_port, 9000);
  EXPECT_EQ(c->data_dir, std::filesystem::path("/var/lib/fanoutd"));
  EXPECT_EQ(c->tls_cert, "cert.pem");
  EXPECT_EQ(c->tls_key, "key.pem");
  EXPECT_EQ(c->log_level, LogLevel::kDebug);
  EXPECT_EQ(c->drain_timeout_ms, 2500u);
  EXPECT_EQ(c->engine.workers, 3u);
  EXPECT_EQ(c->engine.max_in_flight, 5000u);
  EXPECT_EQ(c->engine.max_event_bytes, 4096u);
  EXPECT_TRUE(c->engine.insecure);
  EXPECT_EQ(c->engine.ca_file, "ca.pem");
  EXPECT_EQ(c->engine.allow_subnets, (std::vector<std::string>{"10.0.0.0/8", "::1/128"}));
  EXPECT_EQ(c->engine.extra_event_types, (std::vector<std::string>{"order_created", "order_paid"}));
  EXPECT_EQ(c->engine.retry.max_retries, 7u);
  EXPECT_EQ(c->engine.retry.base_ms, 1500u);
  EXPECT_EQ(c->engine.retry.factor, 2.5);
  EXPECT_EQ(c->engine.retry.cap_ms, 99'000u);
  EXPECT_EQ(c->engine.retry.jitter, 0.5);
  EXPECT_TRUE(c->engine.retry.retry_429);
  EXPECT_EQ(c->engine.connect_timeout_ms, 111u);
  EXPECT_EQ(c->engine.response_timeout_ms, 222u);
  EXPECT_EQ(c->engine.idle_timeout_ms, 333u);
  EXPECT_EQ(c->engine.max_connections_per_origin, 16u);
  EXPECT_EQ(c->engine.max_streams_per_connection, 100u);
  EXPECT_EQ(c->engine.max_pending_per_origin, 1234u);
  EXPECT_EQ(c->api_rate_limit_per_minute, 60u);
  EXPECT_EQ(c->api_max_body_bytes, 2048u);
  EXPECT_EQ(c->api_idle_timeout_ms, 0u);
  EXPECT_EQ(c->api_request_timeout_ms, 1234u);
  EXPECT_EQ(c->ingest_max_body_bytes, 4096u);
  EXPECT_EQ(c->ingest_max_events, 50u);
  EXPECT_EQ(c->ingest_retry_after_s, 7u);
}

TEST(ConfigToml, OtherValuesOfTheSameKeys) {
  auto c = from_toml(
      "listen = \"0.0.0.0:0\"\nlog_level = \"warn\"\ninsecure = false\n"
      "retry.factor = 2\nretry.retry_429 = false\ntimeouts.idle_ms = 9\n");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->listen_host, "0.0.0.0");
  EXPECT_EQ(c->listen_port, 0);
  EXPECT_EQ(c->log_level, LogLevel::kWarn);
  EXPECT_FALSE(c->engine.insecure);
  EXPECT_EQ(c->engine.retry.factor, 2.0);  // an integer is a number too
  EXPECT_EQ(c->engine.idle_timeout_ms, 9u);
  EXPECT_EQ(from_toml("log_level = \"error\"")->log_level, LogLevel::kError);
  EXPECT_EQ(from_toml("log_level = \"info\"")->log_level, LogLevel::kInfo);
}

TEST(ConfigToml, ListsAppendToWhatTheConfigHolds) {
  Config c;
  c.engine.allow_subnets = {"192.168.0.0/16"};
  ASSERT_TRUE(apply_toml(c, "allow_subnets = [\"10.0.0.0/8\"]\nevent_types = []", "t.toml"));
  EXPECT_EQ(c.engine.allow_subnets, (std::vector<std::string>{"192.168.0.0/16", "10.0.0.0/8"}));
  EXPECT_TRUE(c.engine.extra_event_types.empty());
}

// --- TOML: type errors --------------------------------------------------------------------------

TEST(ConfigToml, TypeErrorsNameTheKeyTheRuleAndTheValue) {
  EXPECT_EQ(toml_error("workers = \"4\""),
            "t.toml: workers: must be an integer in 0..1024 (got \"4\")");
  EXPECT_EQ(toml_error("workers = 2.0"),
            "t.toml: workers: must be an integer in 0..1024 (got 2.0)");
  EXPECT_EQ(toml_error("max_in_flight = true"),
            "t.toml: max_in_flight: must be an integer in 1..1000000000 (got true)");
  EXPECT_EQ(toml_error("insecure = 1"), "t.toml: insecure: must be true or false (got 1)");
  EXPECT_EQ(toml_error("insecure = \"yes\""),
            "t.toml: insecure: must be true or false (got \"yes\")");
  EXPECT_EQ(toml_error("data = 5"), "t.toml: data: must be a non-empty string (got 5)");
  EXPECT_EQ(toml_error("data = \"\""), "t.toml: data: must be a non-empty string (got \"\")");
  EXPECT_EQ(toml_error("tls_cert = []"), "t.toml: tls_cert: must be a string (got an array)");
  EXPECT_EQ(toml_error("tls_key = 1.5"), "t.toml: tls_key: must be a string (got 1.5)");
  EXPECT_EQ(toml_error("ca_file = 1979-05-27"), "t.toml: ca_file: must be a string (got a date)");
  EXPECT_EQ(toml_error("listen = 8080"), "t.toml: listen: must be a string (got 8080)");
  EXPECT_EQ(toml_error("[listen]\nport = 1"), "t.toml: listen: must be a string (got a table)");
  EXPECT_EQ(toml_error("log_level = \"verbose\""),
            "t.toml: log_level: must be one of debug, info, warn, error (got \"verbose\")");
  EXPECT_EQ(toml_error("log_level = 1"),
            "t.toml: log_level: must be one of debug, info, warn, error (got 1)");
  EXPECT_EQ(toml_error("allow_subnets = \"10.0.0.0/8\""),
            "t.toml: allow_subnets: must be an array of strings (got \"10.0.0.0/8\")");
  EXPECT_EQ(toml_error("allow_subnets = [\"10.0.0.0/8\", 5]"),
            "t.toml: allow_subnets[1]: must be a string (got 5)");
  EXPECT_EQ(toml_error("event_types = [[\"a\"]]"),
            "t.toml: event_types[0]: must be a string (got an array)");
  EXPECT_EQ(toml_error("retry = 5"), "t.toml: retry: must be a table (got 5)");
  EXPECT_EQ(toml_error("[retry]\nfactor = \"2\""),
            "t.toml: retry.factor: must be a number >= 1 (got \"2\")");
  EXPECT_EQ(toml_error("[retry]\nretry_429 = \"no\""),
            "t.toml: retry.retry_429: must be true or false (got \"no\")");
  EXPECT_EQ(toml_error("[timeouts]\nconnect_ms = 1.0"),
            "t.toml: timeouts.connect_ms: must be an integer in 1..3600000 (got 1.0)");
  EXPECT_EQ(toml_error("[ingest]\nmax_events = {a = 1}"),
            "t.toml: ingest.max_events: must be an integer in 1..1000000 (got a table)");
  EXPECT_EQ(toml_error("listen = \"a\\\"b\""),
            "t.toml: listen: expected HOST:PORT with a numeric IPv4 or [IPv6] address "
            "(got \"a\\\"b\")");
}

// --- TOML: ranges -------------------------------------------------------------------------------

struct IntRange {
  std::string_view key;  // dotted path
  std::int64_t lo;
  std::int64_t hi;
};

std::string int_rule(const IntRange& r) {
  if (r.hi == std::numeric_limits<std::int64_t>::max())
    return "must be an integer >= " + std::to_string(r.lo);
  return "must be an integer in " + std::to_string(r.lo) + ".." + std::to_string(r.hi);
}

constexpr std::int64_t kMiB = 1024 * 1024;
constexpr IntRange kIntRanges[] = {
    {"drain_timeout_ms", 0, 3'600'000},
    {"workers", 0, 1024},
    {"max_in_flight", 1, 1'000'000'000},
    {"max_event_bytes", 64, 64 * kMiB},
    {"retry.max_retries", 0, 20},
    {"retry.base_ms", 1, 86'400'000},
    {"retry.cap_ms", 1, std::numeric_limits<std::int64_t>::max()},
    {"timeouts.connect_ms", 1, 3'600'000},
    {"timeouts.response_ms", 1, 3'600'000},
    {"timeouts.idle_ms", 1, 3'600'000},
    {"limits.max_connections_per_origin", 1, 1024},
    {"limits.max_streams_per_connection", 1, 65'535},
    {"limits.max_pending_per_origin", 1, 10'000'000},
    {"api.rate_limit_per_minute", 1, 1'000'000},
    {"api.max_body_bytes", 1024, 64 * kMiB},
    {"api.idle_timeout_ms", 0, 3'600'000},
    {"api.request_timeout_ms", 0, 3'600'000},
    {"api.write_timeout_ms", 0, 3'600'000},
    {"api.max_unsent_output_bytes", 64 * 1024, 1024 * kMiB},
    {"api.max_connections", 1, 1'000'000},
    {"fd_reserve", 64, 1'000'000},
    {"ingest.max_body_bytes", 1024, 1024 * kMiB},
    {"ingest.max_events", 1, 1'000'000},
    {"ingest.retry_after_s", 1, 3600},
    {"api.tryout_rate_limit_per_minute", 1, 1'000'000},
    {"api.failed_auth_per_minute", 1, 1'000'000},
    {"source.redis.batch", 1, 100'000},
    {"source.redis.block_ms", 1, 60'000},
    {"source.redis.max_in_flight", 1, 1'000'000'000},
    {"source.redis.takeover_ms", 600, 86'400'000},
};

TEST(ConfigToml, EveryIntegerKeyAcceptsItsBoundsAndRefusesPastThem) {
  for (const IntRange& r : kIntRanges) {
    SCOPED_TRACE(r.key);
    const std::string key(r.key);
    EXPECT_EQ(toml_error(key + " = " + std::to_string(r.lo)), "");
    EXPECT_EQ(toml_error(key + " = " + std::to_string(r.hi)), "");
    EXPECT_EQ(toml_error(key + " = " + std::to_string(r.lo - 1)),
              "t.toml: " + key + ": " + int_rule(r) + " (got " + std::to_string(r.lo - 1) + ")");
    if (r.hi < std::numeric_limits<std::int64_t>::max()) {
      EXPECT_EQ(toml_error(key + " = " + std::to_string(r.hi + 1)),
                "t.toml: " + key + ": " + int_rule(r) + " (got " + std::to_string(r.hi + 1) + ")");
    }
  }
}

TEST(ConfigToml, BoundsReachTheFields) {
  auto c = from_toml(
      "max_event_bytes = 67108864\ningest.max_body_bytes = 1073741824\n"
      "retry.cap_ms = 9223372036854775807\nlimits.max_streams_per_connection = 65535\n");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.max_event_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(c->ingest_max_body_bytes, 1024u * 1024 * 1024);
  EXPECT_EQ(c->engine.retry.cap_ms, 9'223'372'036'854'775'807u);
  EXPECT_EQ(c->engine.max_streams_per_connection, 65'535u);
}

TEST(ConfigToml, NumberRanges) {
  EXPECT_EQ(toml_error("retry.factor = 1"), "");
  EXPECT_EQ(toml_error("retry.factor = 1.0"), "");
  EXPECT_EQ(toml_error("retry.factor = 1e6"), "");
  EXPECT_EQ(toml_error("retry.factor = 0.5"),
            "t.toml: retry.factor: must be a number >= 1 (got 0.5)");
  EXPECT_EQ(toml_error("retry.factor = 0"), "t.toml: retry.factor: must be a number >= 1 (got 0)");
  EXPECT_EQ(toml_error("retry.factor = inf"),
            "t.toml: retry.factor: must be a number >= 1 (got inf)");
  EXPECT_EQ(toml_error("retry.factor = nan"),
            "t.toml: retry.factor: must be a number >= 1 (got nan)");
  EXPECT_EQ(toml_error("retry.jitter = 0"), "");
  EXPECT_EQ(toml_error("retry.jitter = 0.0"), "");
  EXPECT_EQ(toml_error("retry.jitter = 0.999"), "");
  EXPECT_EQ(toml_error("retry.jitter = 1.0"),
            "t.toml: retry.jitter: must be a number in [0, 1) (got 1.0)");
  EXPECT_EQ(toml_error("retry.jitter = 1"),
            "t.toml: retry.jitter: must be a number in [0, 1) (got 1)");
  EXPECT_EQ(toml_error("retry.jitter = -0.1"),
            "t.toml: retry.jitter: must be a number in [0, 1) (got -0.1)");
  EXPECT_EQ(from_toml("retry.jitter = 0.999")->engine.retry.jitter, 0.999);
}

// --- TOML: unknown keys, parse errors, files ----------------------------------------------------

TEST(ConfigToml, UnknownKeysAndTablesAreErrors) {
  EXPECT_EQ(toml_error("colour = 1"), "t.toml: colour: unknown option");
  EXPECT_EQ(toml_error("workers = 1\nWorkers = 2"), "t.toml: Workers: unknown option");
  EXPECT_EQ(toml_error("[retry]\ntries = 3"), "t.toml: retry.tries: unknown option");
  EXPECT_EQ(toml_error("[retry.backoff]\nx = 1"), "t.toml: retry.backoff: unknown option");
  EXPECT_EQ(toml_error("[server]\nlisten = \"127.0.0.1:1\""), "t.toml: server: unknown option");
  EXPECT_EQ(toml_error("[server]"), "t.toml: server: unknown option");
  EXPECT_EQ(toml_error("[[retry]]\nmax_retries = 1"),
            "t.toml: retry: must be a table (got an array)");
  // A key of one section is unknown in another, and at the top.
  EXPECT_EQ(toml_error("[api]\nmax_events = 3"), "t.toml: api.max_events: unknown option");
  EXPECT_EQ(toml_error("max_retries = 3"), "t.toml: max_retries: unknown option");
  EXPECT_EQ(toml_error("[limits]\nlimits = 3"), "t.toml: limits.limits: unknown option");
}

TEST(ConfigRedis, OffByDefaultOnWithAUrlFromTheTableOrTheFlags) {
  auto c = parse_args({});
  ASSERT_TRUE(c) << c.error();
  EXPECT_TRUE(c->redis.url.empty());
  EXPECT_EQ(c->redis.stream, "fanout:events");
  EXPECT_EQ(c->redis.group, "fanout");
  EXPECT_EQ(c->redis.takeover_ms, 30'000u);
  c = from_toml(
      "[source.redis]\nurl = \"redis://127.0.0.1:6379/1\"\nstream = \"s\"\ngroup = \"g\"\n"
      "consumer = \"c\"\nstart_id = \"$\"\nbatch = 50\nblock_ms = 20\nmax_in_flight = 7\n"
      "takeover_ms = 1000\n");
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->redis.url, "redis://127.0.0.1:6379/1");
  EXPECT_EQ(c->redis.stream, "s");
  EXPECT_EQ(c->redis.group, "g");
  EXPECT_EQ(c->redis.consumer, "c");
  EXPECT_EQ(c->redis.start_id, "$");
  EXPECT_EQ(c->redis.batch, 50u);
  EXPECT_EQ(c->redis.block_ms, 20u);
  EXPECT_EQ(c->redis.max_in_flight, 7u);
  EXPECT_EQ(c->redis.takeover_ms, 1000u);
  c = parse_args({"--redis-url", "redis://h:1", "--redis-stream=x", "--redis-group", "y",
                  "--redis-consumer", "z"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->redis.url, "redis://h:1");
  EXPECT_EQ(c->redis.stream, "x");
  EXPECT_EQ(c->redis.group, "y");
  EXPECT_EQ(c->redis.consumer, "z");
}

TEST(ConfigRedis, BadValuesNameTheKeyAndTheRule) {
  EXPECT_NE(args_error({"--redis-url", "http://h"}).find("source.redis.url (--redis-url)"),
            std::string::npos);
  EXPECT_NE(args_error({"--redis-url", "redis://h:99999"}).find("port must be 1..65535"),
            std::string::npos);
  EXPECT_EQ(toml_error("[source.redis]\ncolour = 1"),
            "t.toml: source.redis.colour: unknown option");
  EXPECT_EQ(toml_error("[source]\nredis = 1"), "t.toml: source.redis: must be a table (got 1)");
}

TEST(ConfigPorts, DefaultAndRangesAndErrors) {
  const std::vector<std::string> none;
  EXPECT_TRUE(port_allowed(none, 443));
  EXPECT_TRUE(port_allowed(none, 80));
  EXPECT_TRUE(port_allowed(none, 1024));
  EXPECT_FALSE(port_allowed(none, 22));
  EXPECT_FALSE(port_allowed(none, 1023));
  auto c = parse_args({"--allowed-port", "443", "--allowed-port=8000-8999"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_TRUE(port_allowed(c->allowed_ports, 443));
  EXPECT_TRUE(port_allowed(c->allowed_ports, 8500));
  EXPECT_FALSE(port_allowed(c->allowed_ports, 80));
  EXPECT_FALSE(port_allowed(c->allowed_ports, 9000));
  c = from_toml("allowed_ports = [\"1-65535\"]");
  ASSERT_TRUE(c) << c.error();
  EXPECT_TRUE(port_allowed(c->allowed_ports, 22));
  for (const char* bad : {"0", "65536", "9-8", "a", "1-", "-5", ""}) {
    EXPECT_NE(args_error({"--allowed-port", bad}).find("must be a port N or a range A-B"),
              std::string::npos)
        << bad;
  }
}

TEST(ConfigToml, ParseErrorsGiveOriginLineAndColumn) {
  const std::string e = toml_error("workers = 2\n\nlisten = = \"127.0.0.1:1\"\n");
  EXPECT_EQ(e.rfind("t.toml:3:", 0), 0u) << e;
  EXPECT_GT(e.size(), std::string_view("t.toml:3:10: ").size()) << e;  // toml++'s description
  const std::string dup = toml_error("workers = 2\nworkers = 3\n");
  EXPECT_EQ(dup.rfind("t.toml:2:", 0), 0u) << dup;
  const std::string unterminated = toml_error("data = \"abc\n");
  EXPECT_EQ(unterminated.rfind("t.toml:1:", 0), 0u) << unterminated;
}

TEST(ConfigToml, FileErrorsNameThePath) {
  ConfigDir dir;
  ASSERT_FALSE(dir.path().empty());
  Config c;
  const std::string missing = (dir.path() / "missing.toml").string();
  auto s = apply_toml_file(c, missing);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error(), missing + ": No such file or directory");

  auto d = apply_toml_file(c, dir.path());
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error(), dir.path().string() + ": Is a directory");

  const std::string bad = dir.write("bad.toml", "workers = 1\nworkers = \n");
  auto p = apply_toml_file(c, bad);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().rfind(bad + ":2:", 0), 0u) << p.error();

  const std::string range = dir.write("range.toml", "[limits]\nmax_connections_per_origin = 0\n");
  auto r = apply_toml_file(c, range);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), range +
                           ": limits.max_connections_per_origin: must be an integer in "
                           "1..1024 (got 0)");

  const std::string good = dir.write("good.toml", "workers = 6\n");
  ASSERT_TRUE(apply_toml_file(c, good));
  EXPECT_EQ(c.engine.workers, 6u);
}

}  // namespace
}  // namespace fanout::daemon
