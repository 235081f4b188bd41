// Tests of tools/fanoutd/config.cc: the README's defaults, every TOML key mapped to its field,
// type and range errors (exact texts, range boundaries of every integer key), unknown keys and
// tables, parse errors with their line, the `serve` command line (file then flags, whatever the
// order; --allow-subnet appending; --flag=value; missing values; unknown flags) and
// parse_listen(). TOML files are written into a mkdtemp directory removed at the end.
#include "tools/fanoutd/config.h"

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <gtest/gtest.h>

namespace fanout::daemon {
namespace {

using Args = std::initializer_list<std::string_view>;

tl::expected<Config, std::string> parse_args(Args args) {
  const std::vector<std::string_view> v(args);
  return parse_serve_args(v);
}

// The error of parse_serve_args, or "" when it succeeded.
std::string args_error(Args args) {
  auto c = parse_args(args);
  return c ? std::string() : c.error();
}

tl::expected<Config, std::string> from_toml(std::string_view text) {
  Config config;
  if (auto s = apply_toml(config, text, "t.toml"); !s) return tl::unexpected(s.error());
  return config;
}

// The error of apply_toml, or "" when it succeeded.
std::string toml_error(std::string_view text) {
  auto c = from_toml(text);
  return c ? std::string() : c.error();
}

// A directory made by mkdtemp, removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fanoutd_config_test.XXXXXX");
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  std::string write(const std::string& name, std::string_view text) const {
    const std::filesystem::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << text;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

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
  TempDir dir;
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

// --- The serve command line ---------------------------------------------------------------------

TEST(ServeArgs, EveryFlagInBothForms) {
  auto c =
      parse_args({"--listen", "127.0.0.2:81", "--data", "d1", "--insecure", "--allow-subnet",
                  "127.0.0.1/32", "--workers", "4", "--ca-file", "ca.pem", "--tls-cert", "c.pem",
                  "--tls-key", "k.pem", "--log-level", "error", "--drain-timeout-ms", "0"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->listen_host, "127.0.0.2");
  EXPECT_EQ(c->listen_port, 81);
  EXPECT_EQ(c->data_dir, std::filesystem::path("d1"));
  EXPECT_TRUE(c->engine.insecure);
  EXPECT_EQ(c->engine.allow_subnets, std::vector<std::string>{"127.0.0.1/32"});
  EXPECT_EQ(c->engine.workers, 4u);
  EXPECT_EQ(c->engine.ca_file, "ca.pem");
  EXPECT_EQ(c->tls_cert, "c.pem");
  EXPECT_EQ(c->tls_key, "k.pem");
  EXPECT_EQ(c->log_level, LogLevel::kError);
  EXPECT_EQ(c->drain_timeout_ms, 0u);

  auto e = parse_args({"--listen=[::1]:0", "--data=d2", "--allow-subnet=::1/128", "--workers=1024",
                       "--ca-file=x.pem", "--tls-cert=c2.pem", "--tls-key=k2.pem",
                       "--log-level=debug", "--drain-timeout-ms=3600000"});
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e->listen_host, "::1");
  EXPECT_EQ(e->listen_port, 0);
  EXPECT_EQ(e->data_dir, std::filesystem::path("d2"));
  EXPECT_FALSE(e->engine.insecure);
  EXPECT_EQ(e->engine.allow_subnets, std::vector<std::string>{"::1/128"});
  EXPECT_EQ(e->engine.workers, 1024u);
  EXPECT_EQ(e->engine.ca_file, "x.pem");
  EXPECT_EQ(e->tls_cert, "c2.pem");
  EXPECT_EQ(e->tls_key, "k2.pem");
  EXPECT_EQ(e->log_level, LogLevel::kDebug);
  EXPECT_EQ(e->drain_timeout_ms, 3'600'000u);
  // Only the first '=' splits: the value may hold more.
  EXPECT_EQ(parse_args({"--data=a=b"})->data_dir, std::filesystem::path("a=b"));
}

TEST(ServeArgs, FlagsOverrideTheFileWhereverConfigIs) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("fanoutd.toml",
                                     "workers = 3\nlog_level = \"warn\"\ndata = \"from-file\"\n"
                                     "listen = \"127.0.0.1:7000\"\nretry.max_retries = 2\n");
  for (auto c : {parse_args({"--workers", "5", "--listen=127.0.0.1:7001", "--config", file}),
                 parse_args({"--config", file, "--workers", "5", "--listen=127.0.0.1:7001"}),
                 parse_args({"--workers=5", "--config=" + file, "--listen", "127.0.0.1:7001"})}) {
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->engine.workers, 5u);                            // flag
    EXPECT_EQ(c->listen_port, 7001);                             // flag
    EXPECT_EQ(c->log_level, LogLevel::kWarn);                    // file
    EXPECT_EQ(c->data_dir, std::filesystem::path("from-file"));  // file
    EXPECT_EQ(c->engine.retry.max_retries, 2u);                  // file
    EXPECT_EQ(c->engine.max_event_bytes, 262'144u);              // default
  }
}

TEST(ServeArgs, LaterFlagsWin) {
  auto c = parse_args({"--workers", "1", "--workers", "2", "--log-level=warn", "--log-level=info"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.workers, 2u);
  EXPECT_EQ(c->log_level, LogLevel::kInfo);
}

TEST(ServeArgs, AllowSubnetAppendsToTheFilesList) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("f.toml", "allow_subnets = [\"10.0.0.0/8\"]\n");
  auto c =
      parse_args({"--allow-subnet", "127.0.0.1/32", "--config", file, "--allow-subnet=::1/128"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.allow_subnets,
            (std::vector<std::string>{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}));
}

// Several instances share a data directory but each has its own journal ([durability] dir).
TEST(ServeArgs, JournalDirFromTheFileOrTheFlag) {
  EXPECT_EQ(Config{}.journal_dir, std::filesystem::path());  // empty: the data directory
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("j.toml", "[durability]\ndir = \"/var/lib/j-file\"\n");
  auto c = parse_args({"--config", file});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("/var/lib/j-file"));
  c = parse_args({"--config", file, "--journal-dir", "j-flag"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("j-flag"));
  c = parse_args({"--journal-dir=j2"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->journal_dir, std::filesystem::path("j2"));
  EXPECT_EQ(args_error({"--journal-dir="}), "--journal-dir: must be a non-empty string (got \"\")");
}

TEST(ServeArgs, TlsCertAndKeyGoTogether) {
  const std::string want = "tls_cert and tls_key (--tls-cert, --tls-key) must be given together";
  EXPECT_EQ(args_error({"--tls-cert", "c.pem"}), want);
  EXPECT_EQ(args_error({"--tls-key", "k.pem"}), want);
  EXPECT_EQ(args_error({"--tls-cert", "c.pem", "--tls-key", "k.pem"}), "");

  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string file = dir.write("tls.toml", "tls_cert = \"c.pem\"\n");
  EXPECT_EQ(args_error({"--config", file}), want);
  auto c = parse_args({"--config", file, "--tls-key", "k.pem"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->tls_cert, "c.pem");
  EXPECT_EQ(c->tls_key, "k.pem");
  // apply_toml alone does not check the pair: flags may complete it.
  Config half;
  EXPECT_TRUE(apply_toml(half, "tls_key = \"k.pem\"", "t.toml"));
}

TEST(ServeArgs, MissingValuesNameTheFlag) {
  EXPECT_EQ(args_error({"--workers"}), "--workers: missing value");
  EXPECT_EQ(args_error({"--config"}), "--config: missing value");
  EXPECT_EQ(args_error({"--data", "--insecure"}), "--data: missing value");
  EXPECT_EQ(args_error({"--insecure", "--listen"}), "--listen: missing value");
  // "-1" is a value (then out of range), not a flag.
  EXPECT_EQ(args_error({"--workers", "-1"}),
            "--workers: must be an integer in 0..1024 (got \"-1\")");
}

TEST(ServeArgs, UnknownFlagsAndArgumentsAreNamed) {
  EXPECT_EQ(args_error({"--colour", "red"}), "--colour: unknown flag");
  EXPECT_EQ(args_error({"--colour=red"}), "--colour: unknown flag");
  EXPECT_EQ(args_error({"--workers", "2", "--max-in-flight", "5"}),
            "--max-in-flight: unknown flag");
  EXPECT_EQ(args_error({"--help"}), "--help: unknown flag");
  EXPECT_EQ(args_error({"-w", "2"}), "unexpected argument \"-w\"");
  EXPECT_EQ(args_error({"serve"}), "unexpected argument \"serve\"");
  // The line is checked before the file is read.
  EXPECT_EQ(args_error({"--config", "/nonexistent/f.toml", "--bogus"}), "--bogus: unknown flag");
}

TEST(ServeArgs, ValuesAreCheckedLikeTheKeys) {
  EXPECT_EQ(args_error({"--workers", "2000"}),
            "--workers: must be an integer in 0..1024 (got \"2000\")");
  EXPECT_EQ(args_error({"--workers", "abc"}),
            "--workers: must be an integer in 0..1024 (got \"abc\")");
  EXPECT_EQ(args_error({"--workers", "4x"}),
            "--workers: must be an integer in 0..1024 (got \"4x\")");
  EXPECT_EQ(args_error({"--workers="}), "--workers: must be an integer in 0..1024 (got \"\")");
  EXPECT_EQ(args_error({"--workers", "99999999999999999999"}),
            "--workers: must be an integer in 0..1024 (got \"99999999999999999999\")");
  EXPECT_EQ(args_error({"--drain-timeout-ms", "3600001"}),
            "--drain-timeout-ms: must be an integer in 0..3600000 (got \"3600001\")");
  EXPECT_EQ(args_error({"--log-level", "loud"}),
            "--log-level: must be one of debug, info, warn, error (got \"loud\")");
  EXPECT_EQ(args_error({"--data="}), "--data: must be a non-empty string (got \"\")");
  EXPECT_EQ(args_error({"--insecure=true"}), "--insecure: takes no value");
  EXPECT_EQ(args_error({"--listen", "localhost"}),
            "--listen: expected HOST:PORT with a numeric IPv4 or [IPv6] address (got "
            "\"localhost\")");
  EXPECT_EQ(args_error({"--listen", "127.0.0.1:65536"}),
            "--listen: the port must be a decimal integer in 0..65535 (got \"127.0.0.1:65536\")");
}

TEST(ServeArgs, ConfigFileErrors) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string missing = (dir.path() / "none.toml").string();
  EXPECT_EQ(args_error({"--config", missing}), missing + ": No such file or directory");
  const std::string bad = dir.write("bad.toml", "workers = 5000\n");
  EXPECT_EQ(args_error({"--config", bad, "--workers", "1"}),
            bad + ": workers: must be an integer in 0..1024 (got 5000)");
  const std::string good = dir.write("good.toml", "workers = 5\n");
  EXPECT_EQ(args_error({"--config", good, "--config", good}), "--config: given more than once");
  EXPECT_EQ(args_error({"--config="}), "--config: must be a non-empty string (got \"\")");
}

// --- parse_listen -------------------------------------------------------------------------------

TEST(ParseListen, NumericAddresses) {
  using P = std::pair<std::string, std::uint16_t>;
  EXPECT_EQ(parse_listen("127.0.0.1:8080").value(), (P{"127.0.0.1", 8080}));
  EXPECT_EQ(parse_listen("0.0.0.0:0").value(), (P{"0.0.0.0", 0}));
  EXPECT_EQ(parse_listen("10.1.2.3:65535").value(), (P{"10.1.2.3", 65535}));
  EXPECT_EQ(parse_listen("[::1]:0").value(), (P{"::1", 0}));
  EXPECT_EQ(parse_listen("[::]:443").value(), (P{"::", 443}));
  EXPECT_EQ(parse_listen("[2001:db8::1]:8080").value(), (P{"2001:db8::1", 8080}));
  EXPECT_EQ(parse_listen("[::ffff:127.0.0.1]:1").value(), (P{"::ffff:127.0.0.1", 1}));
  EXPECT_EQ(parse_listen("127.0.0.1:00080").value(), (P{"127.0.0.1", 80}));
}

TEST(ConfigSigning, StandardWebhooksFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nstandard_webhooks = \"both\"\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->engine.standard_webhooks, routing::WebhookSigning::kBoth);
  for (const auto& [text, mode] : {std::pair{"off", routing::WebhookSigning::kOff},
                                   {"v1a", routing::WebhookSigning::kV1a},
                                   {"v1", routing::WebhookSigning::kV1},
                                   {"both", routing::WebhookSigning::kBoth}}) {
    auto c = parse_args({"--standard-webhooks", text});
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->engine.standard_webhooks, mode) << text;
  }
  for (const std::string_view bad : {"default", "v2", "V1", ""}) {
    EXPECT_NE(args_error({"--standard-webhooks", bad}).find("--standard-webhooks"),
              std::string::npos)
        << bad;
  }
  const std::string e = args_error({"--standard-webhooks", "default"});
  EXPECT_NE(e.find(R"(must be "off", "v1a", "v1" or "both" (got "default"))"), std::string::npos)
      << e;
  EXPECT_NE(toml_error("[signing]\nstandard_webhooks = 1\n").find("signing.standard_webhooks"),
            std::string::npos);
  EXPECT_NE(toml_error("[signing]\nkey = \"x\"\n").find("unknown option"), std::string::npos);
}

TEST(ConfigSigning, SigningThreadsFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nthreads = 2\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_EQ(t->engine.signing_threads, 2u);
  auto c = parse_args({"--signing-threads", "256"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_EQ(c->engine.signing_threads, 256u);
  EXPECT_NE(args_error({"--signing-threads", "257"}).find("--signing-threads"), std::string::npos);
  EXPECT_NE(toml_error("[signing]\nthreads = -1\n").find("signing.threads"), std::string::npos);
}

TEST(ConfigSigning, NoPartooSignatureFromTheFileAndTheFlag) {
  auto t = from_toml("[signing]\nno_partoo_signature = true\n");
  ASSERT_TRUE(t) << t.error();
  EXPECT_FALSE(t->engine.partoo_signature);
  auto f = from_toml("[signing]\nno_partoo_signature = false\n");
  ASSERT_TRUE(f) << f.error();
  EXPECT_TRUE(f->engine.partoo_signature);
  auto c = parse_args({"--no-partoo-signature"});
  ASSERT_TRUE(c) << c.error();
  EXPECT_FALSE(c->engine.partoo_signature);
  EXPECT_NE(toml_error("[signing]\nno_partoo_signature = 1\n").find("signing.no_partoo_signature"),
            std::string::npos);
}

TEST(ParseListen, ErrorsNameTheRule) {
  auto error = [](std::string_view s) {
    auto r = parse_listen(s);
    return r ? std::string("(accepted)") : r.error();
  };
  const std::string numeric = "expected HOST:PORT with a numeric IPv4 or [IPv6] address (got ";
  const std::string port = "the port must be a decimal integer in 0..65535 (got ";
  const std::string missing = "missing :PORT after the address (got ";
  const std::string brackets = "an IPv6 address must be in brackets, as in [::1]:8080 (got ";

  EXPECT_EQ(error("127.0.0.1"), missing + "\"127.0.0.1\")");
  EXPECT_EQ(error("[::1]"), missing + "\"[::1]\")");
  EXPECT_EQ(error("127.0.0.1:"), port + "\"127.0.0.1:\")");
  EXPECT_EQ(error("127.0.0.1:65536"), port + "\"127.0.0.1:65536\")");
  EXPECT_EQ(error("[::1]:65536"), port + "\"[::1]:65536\")");
  EXPECT_EQ(error("127.0.0.1:-1"), port + "\"127.0.0.1:-1\")");
  EXPECT_EQ(error("127.0.0.1:+80"), port + "\"127.0.0.1:+80\")");
  EXPECT_EQ(error("127.0.0.1: 80"), port + "\"127.0.0.1: 80\")");
  EXPECT_EQ(error("127.0.0.1:0x50"), port + "\"127.0.0.1:0x50\")");
  EXPECT_EQ(error("127.0.0.1:http"), port + "\"127.0.0.1:http\")");
  EXPECT_EQ(error("127.0.0.1:123456"), port + "\"127.0.0.1:123456\")");
  EXPECT_EQ(error("localhost:8080"), numeric + "\"localhost:8080\")");
  EXPECT_EQ(error("localhost"), numeric + "\"localhost\")");
  EXPECT_EQ(error("example.com:443"), numeric + "\"example.com:443\")");
  EXPECT_EQ(error("256.0.0.1:80"), numeric + "\"256.0.0.1:80\")");
  EXPECT_EQ(error("127.1:80"), numeric + "\"127.1:80\")");
  EXPECT_EQ(error(":8080"), numeric + "\":8080\")");
  EXPECT_EQ(error(""), numeric + "\"\")");
  EXPECT_EQ(error("[localhost]:80"), numeric + "\"[localhost]:80\")");
  EXPECT_EQ(error("[127.0.0.1]:80"), numeric + "\"[127.0.0.1]:80\")");
  EXPECT_EQ(error("[::1:8080"), numeric + "\"[::1:8080\")");
  EXPECT_EQ(error("[::1]8080"), numeric + "\"[::1]8080\")");
  EXPECT_EQ(error("[fe80::1%eth0]:80"), numeric + "\"[fe80::1%eth0]:80\")");
  EXPECT_EQ(error("::1:8080"), brackets + "\"::1:8080\")");
  EXPECT_EQ(error("::1"), brackets + "\"::1\")");
  EXPECT_EQ(error("2001:db8::1"), brackets + "\"2001:db8::1\")");
}

}  // namespace
}  // namespace fanout::daemon
