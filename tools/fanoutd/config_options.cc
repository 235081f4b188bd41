// fanoutd's options, one table (config_internal.h): every key of the configuration file, its
// flag, and its kind. tools/fanoutd/README.md's "Configuration" table lists the same.
#include <array>
#include <string>
#include <string_view>
#include <utility>

#include "routing/subscription.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/config_internal.h"

namespace fanout::daemon::config_detail {

namespace {

// Stores an integer, already checked against the option's range, into a field of any width.
template <typename T>
constexpr void assign(T& field, std::int64_t v) {
  field = static_cast<T>(v);
}

// signing.standard_webhooks: the text (checked by validate(): off, v1a, v1 or both) and the
// engine's value.
void set_standard_webhooks(Config& c, std::string v) {
  c.engine.standard_webhooks =
      routing::parse_webhook_signing(v).value_or(routing::WebhookSigning::kOff);
  c.standard_webhooks = std::move(v);
}

// Tables that hold options; anything else used as a table is unknown.
constexpr std::array<std::string_view, 9> kSections = {"retry",  "timeouts",     "limits",
                                                       "api",    "ingest",       "durability",
                                                       "source", "source.redis", "signing"};

// Every option of tools/fanoutd/README.md's "Configuration" table. Ranges were checked against
// the field types (every range fits its field, so assign() cannot truncate). --config
// is not here: it names the file this table is read from (parse_serve_args).
constexpr Option kOptions[] = {
    {"listen", "--listen", ListenKind{}},
    {"data", "--data",
     StringKind{true, [](Config& c, std::string v) { c.data_dir = std::move(v); }}},
    {"tls_cert", "--tls-cert",
     StringKind{false, [](Config& c, std::string v) { c.tls_cert = std::move(v); }}},
    {"tls_key", "--tls-key",
     StringKind{false, [](Config& c, std::string v) { c.tls_key = std::move(v); }}},
    {"log_level", "--log-level", LogLevelKind{}},
    {"drain_timeout_ms", "--drain-timeout-ms",
     IntKind{0, 3'600'000, [](Config& c, std::int64_t v) { assign(c.drain_timeout_ms, v); }}},
    {"heap_trim_backlog", "",
     IntKind{0, 1'000'000'000, [](Config& c, std::int64_t v) { assign(c.heap_trim_backlog, v); }}},
    {"workers", "--workers",
     IntKind{0, 1024, [](Config& c, std::int64_t v) { assign(c.engine.workers, v); }}},
    {"max_in_flight", "",
     IntKind{1, 1'000'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.max_in_flight, v); }}},
    {"max_backlog", "",
     IntKind{0, 1'000'000'000, [](Config& c, std::int64_t v) { assign(c.engine.max_backlog, v); }}},
    {"max_in_flight_bytes", "",
     IntKind{0, std::numeric_limits<std::int64_t>::max(),
             [](Config& c, std::int64_t v) { assign(c.engine.max_in_flight_bytes, v); }}},
    {"org_max_in_flight", "",
     IntKind{0, 1'000'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.org_max_in_flight, v); }}},
    {"org_max_in_flight_bytes", "",
     IntKind{0, std::numeric_limits<std::int64_t>::max(),
             [](Config& c, std::int64_t v) { assign(c.engine.org_max_in_flight_bytes, v); }}},
    {"origin_max_in_flight", "",
     IntKind{0, 1'000'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.origin_max_in_flight, v); }}},
    {"origin_max_in_flight_bytes", "",
     IntKind{0, std::numeric_limits<std::int64_t>::max(),
             [](Config& c, std::int64_t v) { assign(c.engine.origin_max_in_flight_bytes, v); }}},
    {"max_event_bytes", "",
     IntKind{64, 64 * kMiB,
             [](Config& c, std::int64_t v) { assign(c.engine.max_event_bytes, v); }}},
    {"insecure", "--insecure", BoolKind{[](Config& c, bool v) { c.engine.insecure = v; }}},
    {"ca_file", "--ca-file",
     StringKind{false, [](Config& c, std::string v) { c.engine.ca_file = std::move(v); }}},
    {"allow_subnets", "--allow-subnet", StringListKind{[](Config& c, std::string v) {
       c.engine.allow_subnets.push_back(std::move(v));
     }}},
    {"allowed_ports", "--allowed-port",
     StringListKind{[](Config& c, std::string v) { c.allowed_ports.push_back(std::move(v)); }}},
    {"event_types", "", StringListKind{[](Config& c, std::string v) {
       c.engine.extra_event_types.push_back(std::move(v));
     }}},
    {"retry.max_retries", "",
     IntKind{0, 20, [](Config& c, std::int64_t v) { assign(c.engine.retry.max_retries, v); }}},
    {"retry.base_ms", "",
     IntKind{1, 86'400'000, [](Config& c, std::int64_t v) { assign(c.engine.retry.base_ms, v); }}},
    {"retry.factor", "",
     NumberKind{1, kInf, false, [](Config& c, double v) { c.engine.retry.factor = v; }}},
    {"retry.cap_ms", "",
     IntKind{1, kNoMax, [](Config& c, std::int64_t v) { assign(c.engine.retry.cap_ms, v); }}},
    {"retry.jitter", "",
     NumberKind{0, 1, true, [](Config& c, double v) { c.engine.retry.jitter = v; }}},
    {"retry.retry_429", "", BoolKind{[](Config& c, bool v) { c.engine.retry.retry_429 = v; }}},
    {"timeouts.connect_ms", "",
     IntKind{1, 3'600'000,
             [](Config& c, std::int64_t v) { assign(c.engine.connect_timeout_ms, v); }}},
    {"timeouts.response_ms", "",
     IntKind{1, 3'600'000,
             [](Config& c, std::int64_t v) { assign(c.engine.response_timeout_ms, v); }}},
    {"timeouts.idle_ms", "",
     IntKind{1, 3'600'000, [](Config& c, std::int64_t v) { assign(c.engine.idle_timeout_ms, v); }}},
    {"limits.max_connections_per_origin", "",
     IntKind{1, 1024,
             [](Config& c, std::int64_t v) { assign(c.engine.max_connections_per_origin, v); }}},
    {"limits.max_streams_per_connection", "",
     IntKind{1, 65'535,
             [](Config& c, std::int64_t v) { assign(c.engine.max_streams_per_connection, v); }}},
    {"limits.max_pending_per_origin", "",
     IntKind{1, 10'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.max_pending_per_origin, v); }}},
    {"dns_servers", "",
     StringKind{false, [](Config& c, std::string v) { c.engine.dns_servers = std::move(v); }}},
    {"timeouts.dns_ms", "",
     IntKind{1, 60'000, [](Config& c, std::int64_t v) { assign(c.engine.dns_timeout_ms, v); }}},
    {"timeouts.idle_origin_ms", "",
     IntKind{0, 86'400'000, [](Config& c, std::int64_t v) { assign(c.engine.idle_origin_ms, v); }}},
    {"api.rate_limit_per_minute", "",
     IntKind{1, 1'000'000,
             [](Config& c, std::int64_t v) { assign(c.api_rate_limit_per_minute, v); }}},
    {"api.failed_auth_per_minute", "",
     IntKind{1, 1'000'000,
             [](Config& c, std::int64_t v) { assign(c.api_failed_auth_per_minute, v); }}},
    {"api.tryout_rate_limit_per_minute", "",
     IntKind{1, 1'000'000,
             [](Config& c, std::int64_t v) { assign(c.api_tryout_rate_limit_per_minute, v); }}},
    {"api.max_body_bytes", "",
     IntKind{kKiB, 64 * kMiB, [](Config& c, std::int64_t v) { assign(c.api_max_body_bytes, v); }}},
    {"api.idle_timeout_ms", "",
     IntKind{0, 3'600'000, [](Config& c, std::int64_t v) { assign(c.api_idle_timeout_ms, v); }}},
    {"api.request_timeout_ms", "",
     IntKind{0, 3'600'000, [](Config& c, std::int64_t v) { assign(c.api_request_timeout_ms, v); }}},
    {"api.write_timeout_ms", "",
     IntKind{0, 3'600'000, [](Config& c, std::int64_t v) { assign(c.api_write_timeout_ms, v); }}},
    {"api.max_unsent_output_bytes", "",
     IntKind{64 * kKiB, kGiB,
             [](Config& c, std::int64_t v) { assign(c.api_max_unsent_output_bytes, v); }}},
    {"api.max_connections", "",
     IntKind{1, 1'000'000, [](Config& c, std::int64_t v) { assign(c.api_max_connections, v); }}},
    {"fd_reserve", "",
     IntKind{64, 1'000'000, [](Config& c, std::int64_t v) { assign(c.fd_reserve, v); }}},
    {"ingest.max_body_bytes", "",
     IntKind{kKiB, kGiB, [](Config& c, std::int64_t v) { assign(c.ingest_max_body_bytes, v); }}},
    {"ingest.max_events", "",
     IntKind{1, 1'000'000, [](Config& c, std::int64_t v) { assign(c.ingest_max_events, v); }}},
    {"no_durable", "--no-durable", BoolKind{[](Config& c, bool v) { c.durable = !v; }}},
    // Checked by validate(): off, v1a, v1 or both.
    {"signing.standard_webhooks", "--standard-webhooks", StringKind{true, set_standard_webhooks}},
    {"signing.no_partoo_signature", "--no-partoo-signature",
     BoolKind{[](Config& c, bool v) { c.engine.partoo_signature = !v; }}},
    {"signing.threads", "--signing-threads",
     IntKind{0, 256, [](Config& c, std::int64_t v) { assign(c.engine.signing_threads, v); }}},
    {"durability.history_ms", "",
     IntKind{0, 366LL * 86'400'000,
             [](Config& c, std::int64_t v) { assign(c.engine.durability.history_ms, v); }}},
    {"durability.max_history_rows", "",
     IntKind{0, 1'000'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.durability.max_history_rows, v); }}},
    {"durability.idempotency_ms", "",
     IntKind{0, 366LL * 86'400'000,
             [](Config& c, std::int64_t v) { assign(c.engine.durability.idempotency_ms, v); }}},
    {"durability.max_ids", "",
     IntKind{0, 100'000'000,
             [](Config& c, std::int64_t v) { assign(c.engine.durability.max_ids, v); }}},
    {"durability.bodies_on_disk_after_ms", "",
     IntKind{0, 366LL * 86'400'000,
             [](Config& c,
                std::int64_t v) { assign(c.engine.durability.bodies_on_disk_after_ms, v); }}},
    {"durability.dir", "--journal-dir",
     StringKind{true, [](Config& c, std::string v) { c.journal_dir = std::move(v); }}},
    {"ingest.retry_after_s", "",
     IntKind{1, 3600, [](Config& c, std::int64_t v) { assign(c.ingest_retry_after_s, v); }}},
    // [source.redis]: a url turns the source on.
    {"source.redis.url", "--redis-url",
     StringKind{true, [](Config& c, std::string v) { c.redis.url = std::move(v); }}},
    {"source.redis.stream", "--redis-stream",
     StringKind{true, [](Config& c, std::string v) { c.redis.stream = std::move(v); }}},
    {"source.redis.group", "--redis-group",
     StringKind{true, [](Config& c, std::string v) { c.redis.group = std::move(v); }}},
    {"source.redis.consumer", "--redis-consumer",
     StringKind{true, [](Config& c, std::string v) { c.redis.consumer = std::move(v); }}},
    {"source.redis.start_id", "",
     StringKind{true, [](Config& c, std::string v) { c.redis.start_id = std::move(v); }}},
    {"source.redis.batch", "",
     IntKind{1, 100'000, [](Config& c, std::int64_t v) { assign(c.redis.batch, v); }}},
    {"source.redis.block_ms", "",
     IntKind{1, 60'000, [](Config& c, std::int64_t v) { assign(c.redis.block_ms, v); }}},
    {"source.redis.max_in_flight", "",
     IntKind{1, 1'000'000'000,
             [](Config& c, std::int64_t v) { assign(c.redis.max_in_flight, v); }}},
    {"source.redis.takeover_ms", "",
     IntKind{600, 86'400'000, [](Config& c, std::int64_t v) { assign(c.redis.takeover_ms, v); }}},
};

}  // namespace

const Option* find_by_key(std::string_view key) {
  for (const Option& o : kOptions)
    if (o.key == key) return &o;
  return nullptr;
}

const Option* find_by_flag(std::string_view flag) {
  for (const Option& o : kOptions)
    if (!o.flag.empty() && o.flag == flag) return &o;
  return nullptr;
}

bool is_section(std::string_view key) {
  for (std::string_view s : kSections)
    if (s == key) return true;
  return false;
}

}  // namespace fanout::daemon::config_detail
