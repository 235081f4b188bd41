// fanoutd's metrics (metrics.h) in the Prometheus text format 0.0.4: for each family a # HELP
// and a # TYPE line, then its samples; counters end in _total; label values escaped (\\, \",
// \n); numbers exact (integers as integers, floats in their shortest round-trip form).
//
// The latency histogram is the only state written from several threads: record_outcome() finds
// the bucket by comparing integer microseconds with the bounds converted once to microseconds
// (every bound is a whole number of them, so a latency exactly on a bound lands in that bucket:
// `le` is inclusive, with no floating-point rounding involved), then does two relaxed
// increments. render() reads each counter once and accumulates the buckets itself.
#include "tools/fanoutd/metrics.h"

#include <charconv>
#include <cstddef>
#include <string>
#include <system_error>

#include "tools/fanoutd/heap_trim.h"
#include "tools/fanoutd/sync.h"

namespace fanout::daemon {
namespace {

// kLatencyBuckets in whole microseconds.
constexpr std::array<std::uint64_t, Metrics::kLatencyBuckets.size()> kBucketBoundsUs = [] {
  std::array<std::uint64_t, Metrics::kLatencyBuckets.size()> us{};
  for (std::size_t i = 0; i < us.size(); ++i)
    us[i] = static_cast<std::uint64_t>(Metrics::kLatencyBuckets[i] * 1e6 + 0.5);
  return us;
}();

void append_uint(std::string& out, std::uint64_t v) {
  char buf[24];
  out.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);  // 24 bytes always suffice
}

// Shortest representation that reads back as the same double ("0.0025", "1", "14400").
void append_double(std::string& out, double v) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc()) {  // cannot happen with 64 bytes
    out.append("NaN");
    return;
  }
  out.append(buf, end);
}

// A label value: backslash, double quote and line feed escaped (format 0.0.4).
void append_label_value(std::string& out, std::string_view v) {
  for (char ch : v) {
    switch (ch) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += ch;
    }
  }
}

void append_header(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// `name{label="value"} v`, or `name v` when `label` is empty.
void append_sample(std::string& out, std::string_view name, std::string_view label,
                   std::string_view value, std::uint64_t v) {
  out.append(name);
  if (!label.empty()) {
    out.append("{").append(label).append("=\"");
    append_label_value(out, value);
    out.append("\"}");
  }
  out += ' ';
  append_uint(out, v);
  out += '\n';
}

}  // namespace

void Metrics::record_outcome(const Outcome& outcome) noexcept {
  std::size_t i = 0;
  while (i < kBucketBoundsUs.size() && outcome.latency_us > kBucketBoundsUs[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  latency_sum_us_.fetch_add(outcome.latency_us, std::memory_order_relaxed);
}

void Metrics::record_refused(std::string_view reason) {
  if (auto it = refused_.find(reason); it != refused_.end()) {
    ++it->second;
  } else {
    refused_.emplace(std::string(reason), 1);
  }
}

void Metrics::record_request(std::string_view method, std::string_view route, int status) {
  const std::tuple<std::string_view, std::string_view, int> key{method, route, status};
  if (auto it = requests_.find(key); it != requests_.end()) {
    ++it->second;
  } else {
    requests_.emplace(std::tuple<std::string, std::string, int>{method, route, status}, 1);
  }
}

namespace {

// Outcomes, attempts, what is in flight and the outgoing connections.
void render_outcomes(std::string& out, const EngineStats& stats, std::uint64_t dropped_at_resume) {
  append_header(out, "fanout_outcomes_total", "counter",
                "Final outcomes of accepted events, by kind.");
  append_sample(out, "fanout_outcomes_total", "kind", "delivered", stats.delivered);
  append_sample(out, "fanout_outcomes_total", "kind", "rejected", stats.rejected);
  append_sample(out, "fanout_outcomes_total", "kind", "exhausted", stats.exhausted);
  append_sample(out, "fanout_outcomes_total", "kind", "dropped", stats.dropped + dropped_at_resume);

  append_header(out, "fanout_attempts_total", "counter",
                "Delivery attempts, by HTTP status class (failed: no HTTP answer).");
  append_sample(out, "fanout_attempts_total", "class", "2xx", stats.attempts_2xx);
  append_sample(out, "fanout_attempts_total", "class", "3xx", stats.attempts_3xx);
  append_sample(out, "fanout_attempts_total", "class", "4xx", stats.attempts_4xx);
  append_sample(out, "fanout_attempts_total", "class", "5xx", stats.attempts_5xx);
  append_sample(out, "fanout_attempts_total", "class", "failed", stats.attempts_failed);

  append_header(out, "fanout_in_flight", "gauge",
                "Accepted deliveries without a final outcome (waiting retries included).");
  append_sample(out, "fanout_in_flight", "", "", stats.in_flight);

  append_header(out, "fanout_waiting_retries", "gauge",
                "Deliveries waiting for their next attempt.");
  append_sample(out, "fanout_waiting_retries", "", "", stats.waiting_retry);

  append_header(out, "fanout_waiting_retry_bytes", "gauge",
                "Memory the waiting retries hold: state, event id and body of each.");
  append_sample(out, "fanout_waiting_retry_bytes", "", "", stats.waiting_retry_bytes);

  append_header(out, "fanout_waiting_retries_on_disk", "gauge",
                "Waiting retries whose body is in the journal only "
                "(durability.bodies_on_disk_after_ms).");
  append_sample(out, "fanout_waiting_retries_on_disk", "", "", stats.waiting_retry_on_disk);
  append_header(out, "fanout_retry_body_reads_total", "counter",
                "Waiting retries' bodies read back from the journal, by result (a failed read "
                "waits a second and tries again).");
  append_sample(out, "fanout_retry_body_reads_total", "result", "ok", stats.body_reads);
  append_sample(out, "fanout_retry_body_reads_total", "result", "failed", stats.body_read_failures);

  append_header(out, "fanout_connections", "gauge", "Open outgoing connections, by protocol.");
  append_sample(out, "fanout_connections", "protocol", "h2", stats.connections_h2);
  append_sample(out, "fanout_connections", "protocol", "http/1.1", stats.connections_h1);

  append_header(
      out, "fanout_signatures_off_worker_total", "counter",
      "Partoo signatures made by the signing threads (signing.threads), not the workers.");
  append_sample(out, "fanout_signatures_off_worker_total", "", "", stats.signed_off_worker);
}

// The journal (zero with --no-durable) and the engine's budgets.
void render_journal_and_budgets(std::string& out, const EngineStats& stats) {
  // Durability (zero with --no-durable).
  const struct {
    std::string_view name, help;
    std::uint64_t value;
  } journal[] = {
      {"fanout_journal_commits_total",
       "Group commits of the journal (one fdatasync of its log each).", stats.journal_commits},
      {"fanout_journal_commit_failures_total",
       "Group commits that failed (their events were answered 503).",
       stats.journal_commit_failures},
      {"fanout_journal_records_total",
       "Records committed: accepted deliveries, attempts, final outcomes.", stats.journal_records},
      {"fanout_journal_event_bytes_total", "Event ids and bodies handed to the journal.",
       stats.journal_bytes},
      {"fanout_journal_frames_indexed_total",
       "Group commits copied from the journal's log into its database.",
       stats.journal_frames_indexed},
      {"fanout_journal_index_failures_total",
       "Copies into the journal's database that failed (tried again; the log keeps the records).",
       stats.journal_index_failures},
      {"fanout_journal_backlog_waits_total",
       "Times the journal's log waited for its database to catch up (backlog bound).",
       stats.journal_backlog_waits},
      {"fanout_journal_index_boosts_total",
       "Times the copy into the journal's database left the background (its backlog neared the "
       "bound).",
       stats.journal_index_boosts},
      {"fanout_journal_checkpoints_total",
       "Passes of the journal's checkpointer that copied SQLite's WAL into the database file.",
       stats.journal_checkpoints},
      {"fanout_deliveries_recovered_total", "Deliveries resumed from the journal at start.",
       stats.recovered},
  };
  for (const auto& m : journal) {
    append_header(out, m.name, "counter", m.help);
    append_sample(out, m.name, "", "", m.value);
  }
  append_header(out, "fanout_budget_refusals_total", "counter",
                "Publishes refused busy by the engine's budgets, from every door (ingest, "
                "source): global (count or bytes), the backlog (max_backlog), one "
                "organisation's, one origin's.");
  const std::uint64_t scoped =
      stats.refused_org_busy + stats.refused_origin_busy + stats.refused_backlog_busy;
  append_sample(out, "fanout_budget_refusals_total", "budget", "global",
                stats.refused_busy > scoped ? stats.refused_busy - scoped : 0);
  append_sample(out, "fanout_budget_refusals_total", "budget", "backlog",
                stats.refused_backlog_busy);
  append_sample(out, "fanout_budget_refusals_total", "budget", "org", stats.refused_org_busy);
  append_sample(out, "fanout_budget_refusals_total", "budget", "origin", stats.refused_origin_busy);
  append_header(out, "fanout_in_flight_bytes", "gauge",
                "Ids and bodies of the deliveries in flight (max_in_flight_bytes).");
  append_sample(out, "fanout_in_flight_bytes", "", "", stats.in_flight_bytes);
}

}  // namespace

std::string Metrics::render(const EngineStats& stats, std::uint64_t subscriptions) const {
  std::string out;
  out.reserve(4096 + 128 * (refused_.size() + requests_.size()));

  append_header(out, "fanout_events_published_total", "counter",
                "Events accepted by the engine (one final outcome each).");
  append_sample(out, "fanout_events_published_total", "", "", stats.published);

  append_header(out, "fanout_events_refused_total", "counter", "Events not accepted, by reason.");
  for (const auto& [reason, n] : refused_)
    append_sample(out, "fanout_events_refused_total", "reason", reason, n);

  render_outcomes(out, stats, dropped_at_resume_.load(std::memory_order_relaxed));

  constexpr std::string_view kLatency = "fanout_delivery_latency_seconds";
  append_header(out, kLatency, "histogram", "Time from publish to the final outcome.");
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    out.append(kLatency).append("_bucket{le=\"");
    if (i < kLatencyBuckets.size()) {
      append_double(out, kLatencyBuckets[i]);
    } else {
      out.append("+Inf");
    }
    out.append("\"} ");
    append_uint(out, cumulative);
    out += '\n';
  }
  out.append(kLatency).append("_sum ");
  append_double(out, static_cast<double>(latency_sum_us_.load(std::memory_order_relaxed)) / 1e6);
  out += '\n';
  out.append(kLatency).append("_count ");
  append_uint(out, cumulative);
  out += '\n';

  append_header(out, "fanout_api_requests_total", "counter",
                "HTTP API requests answered, by method, route pattern and status.");
  for (const auto& [key, n] : requests_) {
    const auto& [method, route, status] = key;
    out.append("fanout_api_requests_total{method=\"");
    append_label_value(out, method);
    out.append("\",route=\"");
    append_label_value(out, route);
    out.append("\",status=\"");
    out.append(std::to_string(status));
    out.append("\"} ");
    append_uint(out, n);
    out += '\n';
  }

  append_header(out, "fanout_subscriptions", "gauge", "Subscriptions in the routing table.");
  append_sample(out, "fanout_subscriptions", "", "", subscriptions);

  render_journal_and_budgets(out, stats);
  if (server_ != nullptr) {
    append_header(out, "fanout_api_connections", "gauge", "Open API connections.");
    append_sample(out, "fanout_api_connections", "", "", server_->connections());
    append_header(out, "fanout_api_connections_refused_total", "counter",
                  "API connections closed at accept: api.max_connections were open.");
    append_sample(out, "fanout_api_connections_refused_total", "", "",
                  server_->refused_connections());
    append_header(out, "fanout_api_write_timeouts_total", "counter",
                  "API connections closed because their answers were not read within "
                  "api.write_timeout_ms.");
    append_sample(out, "fanout_api_write_timeouts_total", "", "", server_->write_timeouts());
    append_header(out, "fanout_api_read_pauses_total", "counter",
                  "Times an API connection stopped being read: its unread answers passed "
                  "api.max_unsent_output_bytes.");
    append_sample(out, "fanout_api_read_pauses_total", "", "", server_->read_pauses());
  }
  if (sync_ != nullptr) {
    append_header(out, "fanout_subscription_sync_polls_total", "counter",
                  "Polls of the store for changes made by other processes.");
    append_sample(out, "fanout_subscription_sync_polls_total", "", "", sync_->stats().polls);
    append_header(out, "fanout_subscription_sync_reads_total", "counter",
                  "Change-log reads: another connection had committed to the store (or the "
                  "previous read failed).");
    append_sample(out, "fanout_subscription_sync_reads_total", "", "", sync_->stats().reads);
    append_header(out, "fanout_subscription_sync_reloads_total", "counter",
                  "Whole routing-table reloads: the change log no longer reached back to this "
                  "instance's position.");
    append_sample(out, "fanout_subscription_sync_reloads_total", "", "", sync_->stats().reloads);
  }
  if (heap_trim_ != nullptr) {
    append_header(out, "fanout_heap_trims_total", "counter",
                  "Free heap given back to the system after a backlog drained "
                  "(heap_trim_backlog).");
    append_sample(out, "fanout_heap_trims_total", "", "", heap_trim_->stats().trims);
    append_header(out, "fanout_heap_trim_released_bytes_total", "counter",
                  "Resident memory those trims gave back.");
    append_sample(out, "fanout_heap_trim_released_bytes_total", "", "",
                  heap_trim_->stats().released_bytes);
  }
  if (redis_ != nullptr) render_redis(out, redis_->stats());
  return out;
}

void Metrics::render_redis(std::string& out, const source::RedisStats& r) {
  const struct {
    std::string_view name, type, help;
    std::uint64_t value;
  } redis[] = {
      {"fanout_redis_entries_read_total", "counter",
       "Stream entries read by this consumer (new and its own pending).", r.read},
      {"fanout_redis_entries_acknowledged_total", "counter",
       "Entries acknowledged (XACK confirmed): settled, refused or unsubscribed.", r.acknowledged},
      {"fanout_redis_entries_claimed_total", "counter",
       "Entries taken over from consumers that stopped refreshing them.", r.claimed},
      {"fanout_redis_entries_dead_lettered_total", "counter",
       "Invalid entries copied to the dead-letter stream.", r.dead_lettered},
      {"fanout_redis_entries_unsubscribed_total", "counter",
       "Entries acknowledged at once: nobody subscribed to their (org_id, type).",
       r.no_subscription},
      {"fanout_redis_entries_held", "gauge",
       "Entries read by this consumer and not yet acknowledged.", r.held},
      {"fanout_redis_reconnects_total", "counter", "Connections to Redis lost or refused.",
       r.reconnects},
      {"fanout_redis_read_pauses_total", "counter",
       "Times reading paused at the in-flight budget or on a busy engine.", r.paused},
      {"fanout_redis_connected", "gauge", "1 while connected to Redis.", r.connected ? 1U : 0U},
  };
  for (const auto& m : redis) {
    append_header(out, m.name, m.type, m.help);
    append_sample(out, m.name, "", "", m.value);
  }
  // Group-wide figures from XINFO GROUPS (absent until the first answer).
  if (r.group_pending >= 0) {
    append_header(out, "fanout_redis_group_pending", "gauge",
                  "Entries delivered to the group's consumers and not yet acknowledged.");
    append_sample(out, "fanout_redis_group_pending", "", "",
                  static_cast<std::uint64_t>(r.group_pending));
  }
  if (r.group_lag >= 0) {
    append_header(out, "fanout_redis_group_lag", "gauge",
                  "Entries in the stream not yet read by the group.");
    append_sample(out, "fanout_redis_group_lag", "", "", static_cast<std::uint64_t>(r.group_lag));
  }
}

}  // namespace fanout::daemon
