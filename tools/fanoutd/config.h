// fanoutd's configuration: defaults, then a TOML file (`--config FILE`), then command-line
// flags, each overriding the one before. Every option is listed, with its default, in
// tools/fanoutd/README.md ("Configuration"); this header and that table must agree.
//
// Errors name the option (TOML key path or flag) and the rule, e.g.
//   config.toml: retry.factor: must be a number >= 1 (got 0.5)
//   --listen: expected HOST:PORT with a numeric IPv4 or [IPv6] address (got "localhost")
// An unknown TOML key or table is an error (a typo must not be silently ignored).
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "fanout/engine.h"
#include "fanout/redis_source.h"

namespace fanout::daemon {

enum class LogLevel : std::uint8_t { kDebug, kInfo, kWarn, kError };
[[nodiscard]] std::string_view to_string(LogLevel level) noexcept;  // "debug", ...

struct Config {
  // TOML key (flag) — default
  std::string listen_host = "127.0.0.1";            // listen = "HOST:PORT" (--listen)
  std::uint16_t listen_port = 8080;                 //   port 0 picks a free one
  std::filesystem::path data_dir = "fanoutd-data";  // data (--data)
  std::string tls_cert;  // tls_cert (--tls-cert): PEM chain; with tls_key serves HTTPS
  std::string tls_key;   // tls_key (--tls-key)
  LogLevel log_level = LogLevel::kInfo;     // log_level (--log-level)
  std::uint32_t drain_timeout_ms = 10'000;  // drain_timeout_ms (--drain-timeout-ms)
  // heap_trim_backlog: the backlog whose drain gives free heap back to the system
  // (heap_trim.h): 16,384 deliveries, 16 to 24 MiB of blocks; 0: never.
  std::uint64_t heap_trim_backlog = 16'384;
  std::uint32_t api_rate_limit_per_minute = 300;        // api.rate_limit_per_minute
  std::uint32_t api_tryout_rate_limit_per_minute = 10;  // api.tryout_rate_limit_per_minute
  std::uint32_t api_failed_auth_per_minute = 60;        // api.failed_auth_per_minute (per IP)
  // allowed_ports (--allowed-port, repeatable): the ports a webhook URL (created, updated or
  // tried out) may name, each "N" or "A-B". Empty: the default, 80, 443 and 1024-65535.
  std::vector<std::string> allowed_ports;
  std::size_t api_max_body_bytes = 1024 * 1024;           // api.max_body_bytes (management calls)
  std::uint32_t api_idle_timeout_ms = 60'000;             // api.idle_timeout_ms (0 = none)
  std::uint32_t api_request_timeout_ms = 30'000;          // api.request_timeout_ms (0 = none)
  std::uint32_t api_write_timeout_ms = 30'000;            // api.write_timeout_ms (0 = none)
  std::size_t api_max_unsent_output_bytes = 1024 * 1024;  // api.max_unsent_output_bytes
  // api.max_connections: open API connections at most (further ones are closed at accept); the
  // cap actually used is also at most the descriptor limit minus fd_reserve (limits.h).
  std::size_t api_max_connections = 1024;
  std::size_t fd_reserve = 1024;  // fd_reserve: descriptors kept for deliveries and files
  std::size_t ingest_max_body_bytes = 16 * 1024 * 1024;  // ingest.max_body_bytes
  std::size_t ingest_max_events = 10'000;                // ingest.max_events (per request)
  std::uint32_t ingest_retry_after_s = 1;                // ingest.retry_after_s (503 answers)
  // Durable acceptance (engine.durability, journal in journal_dir): on unless no_durable
  // (--no-durable), for benchmarks only. [durability] history_ms max_history_rows
  // idempotency_ms max_ids.
  bool durable = true;
  // durability.dir (--journal-dir): the journal's directory; empty: data_dir. One per instance:
  // instances may share data_dir, never a journal (fanoutd locks it while it runs).
  std::filesystem::path journal_dir;
  // Engine options (fanout/engine.h), TOML keys in brackets:
  //   workers (--workers), max_in_flight, max_backlog, max_event_bytes, insecure (--insecure),
  //   ca_file (--ca-file), allow_subnets (--allow-subnet, repeatable; appends to the file's),
  //   event_types (extra catalogue names), [retry] max_retries base_ms factor cap_ms jitter
  //   retry_429, [timeouts] connect_ms response_ms idle_ms, [limits]
  //   max_connections_per_origin max_streams_per_connection max_pending_per_origin.
  // signing_key_pem is never configured here: it comes from the store. [signing]
  //   no_partoo_signature (--no-partoo-signature): engine.partoo_signature = false.
  EngineOptions engine;
  // [signing] standard_webhooks (--standard-webhooks) — "off": Standard Webhooks headers for
  // subscriptions whose own signing is "default": "off", "v1a", "v1" or "both"; parsed into
  // engine.standard_webhooks (validated once every source is applied).
  std::string standard_webhooks = "off";
  // [source.redis] (source/redis/README.md): on when url is set. url (--redis-url), stream
  // (--redis-stream), group (--redis-group), consumer (--redis-consumer), start_id, batch,
  // block_ms, max_in_flight, takeover_ms. Defaults: RedisOptions's, but url empty (off).
  source::RedisOptions redis = [] {
    source::RedisOptions o;
    o.url.clear();
    return o;
  }();
};

// Parses TOML text (`origin` names it in errors, e.g. the file path) into `config`, on top of
// what it holds. On error `config` may be partly changed: callers discard it.
[[nodiscard]] tl::expected<void, std::string> apply_toml(Config& config, std::string_view toml,
                                                         std::string_view origin);
// Reads and applies a TOML file; errors name the path.
[[nodiscard]] tl::expected<void, std::string> apply_toml_file(Config& config,
                                                              const std::filesystem::path& file);

// The `fanoutd serve` command line, after the word "serve": flags in any order.
//   --listen HOST:PORT  --data DIR  --config FILE  --insecure  --allow-subnet CIDR (repeatable)
//   --workers N  --ca-file FILE  --tls-cert FILE  --tls-key FILE  --log-level LEVEL
//   --drain-timeout-ms N  --no-durable  --journal-dir DIR  --standard-webhooks MODE
//   --signing-threads N  --no-partoo-signature
// Defaults, then the --config file (wherever it appears on the line), then the other flags.
// "--help" is not handled here (the caller checks for it first).
[[nodiscard]] tl::expected<Config, std::string> parse_serve_args(
    std::span<const std::string_view> args);

// "HOST:PORT" or "[IPv6]:PORT", numeric addresses only.
// "443" or "1024-65535" (1..65535, low <= high); nullopt otherwise.
[[nodiscard]] std::optional<std::pair<std::uint16_t, std::uint16_t>> parse_port_range(
    std::string_view s);
// Whether `port` is allowed by `ranges` (allowed_ports; empty: 80, 443, 1024-65535).
[[nodiscard]] bool port_allowed(const std::vector<std::string>& ranges, std::uint16_t port);

[[nodiscard]] tl::expected<std::pair<std::string, std::uint16_t>, std::string> parse_listen(
    std::string_view s);

}  // namespace fanout::daemon
