// Tests of tools/fanoutd/metrics.cc: the whole exposition text for a small known input (golden),
// the empty state, the shape rules of the format (HELP and TYPE for each family, counters in
// _total), histogram bucket placement at every bound (le is inclusive), label escaping, and
// record_outcome() from 4 threads while render() runs (this test is also run under TSan).
#include "tools/fanoutd/metrics.h"

#include <cstddef>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace fanout::daemon {
namespace {

Outcome with_latency(std::uint64_t us) {
  Outcome o;
  o.event_id = "evt";
  o.latency_us = us;
  return o;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// The cumulative counts of the latency histogram's buckets, in order (+Inf last).
std::vector<std::uint64_t> bucket_counts(const Metrics& m) {
  std::vector<std::uint64_t> counts;
  for (const std::string& line : lines_of(m.render(EngineStats{}, 0))) {
    if (!line.starts_with("fanout_delivery_latency_seconds_bucket{")) continue;
    counts.push_back(std::stoull(line.substr(line.rfind(' ') + 1)));
  }
  return counts;
}

// The value of the sample line starting with `prefix` followed by a space, or "" if none.
std::string sample(const std::string& text, std::string_view prefix) {
  for (const std::string& line : lines_of(text)) {
    if (line.size() > prefix.size() && line.starts_with(prefix) && line[prefix.size()] == ' ')
      return line.substr(prefix.size() + 1);
  }
  return "";
}

constexpr std::string_view kGolden =
    R"(# HELP fanout_events_published_total Events accepted by the engine (one final outcome each).
# TYPE fanout_events_published_total counter
fanout_events_published_total 12
# HELP fanout_events_refused_total Events not accepted, by reason.
# TYPE fanout_events_refused_total counter
fanout_events_refused_total{reason="busy"} 1
fanout_events_refused_total{reason="unknown_type"} 2
# HELP fanout_outcomes_total Final outcomes of accepted events, by kind.
# TYPE fanout_outcomes_total counter
fanout_outcomes_total{kind="delivered"} 5
fanout_outcomes_total{kind="rejected"} 2
fanout_outcomes_total{kind="exhausted"} 1
fanout_outcomes_total{kind="dropped"} 3
# HELP fanout_attempts_total Delivery attempts, by HTTP status class (failed: no HTTP answer).
# TYPE fanout_attempts_total counter
fanout_attempts_total{class="2xx"} 5
fanout_attempts_total{class="3xx"} 1
fanout_attempts_total{class="4xx"} 6
fanout_attempts_total{class="5xx"} 9
fanout_attempts_total{class="failed"} 4
# HELP fanout_in_flight Accepted deliveries without a final outcome (waiting retries included).
# TYPE fanout_in_flight gauge
fanout_in_flight 7
# HELP fanout_waiting_retries Deliveries waiting for their next attempt.
# TYPE fanout_waiting_retries gauge
fanout_waiting_retries 2
# HELP fanout_waiting_retry_bytes Memory the waiting retries hold: state, event id and body of each.
# TYPE fanout_waiting_retry_bytes gauge
fanout_waiting_retry_bytes 1700
# HELP fanout_waiting_retries_on_disk Waiting retries whose body is in the journal only (durability.bodies_on_disk_after_ms).
# TYPE fanout_waiting_retries_on_disk gauge
fanout_waiting_retries_on_disk 1
# HELP fanout_retry_body_reads_total Waiting retries' bodies read back from the journal, by result (a failed read waits a second and tries again).
# TYPE fanout_retry_body_reads_total counter
fanout_retry_body_reads_total{result="ok"} 5
fanout_retry_body_reads_total{result="failed"} 1
# HELP fanout_connections Open outgoing connections, by protocol.
# TYPE fanout_connections gauge
fanout_connections{protocol="h2"} 3
fanout_connections{protocol="http/1.1"} 1
# HELP fanout_signatures_off_worker_total Partoo signatures made by the signing threads (signing.threads), not the workers.
# TYPE fanout_signatures_off_worker_total counter
fanout_signatures_off_worker_total 11
# HELP fanout_delivery_latency_seconds Time from publish to the final outcome.
# TYPE fanout_delivery_latency_seconds histogram
fanout_delivery_latency_seconds_bucket{le="0.001"} 2
fanout_delivery_latency_seconds_bucket{le="0.0025"} 2
fanout_delivery_latency_seconds_bucket{le="0.005"} 2
fanout_delivery_latency_seconds_bucket{le="0.01"} 2
fanout_delivery_latency_seconds_bucket{le="0.025"} 2
fanout_delivery_latency_seconds_bucket{le="0.05"} 2
fanout_delivery_latency_seconds_bucket{le="0.1"} 2
fanout_delivery_latency_seconds_bucket{le="0.25"} 2
fanout_delivery_latency_seconds_bucket{le="0.5"} 2
fanout_delivery_latency_seconds_bucket{le="1"} 2
fanout_delivery_latency_seconds_bucket{le="2.5"} 3
fanout_delivery_latency_seconds_bucket{le="10"} 3
fanout_delivery_latency_seconds_bucket{le="60"} 3
fanout_delivery_latency_seconds_bucket{le="600"} 3
fanout_delivery_latency_seconds_bucket{le="3600"} 3
fanout_delivery_latency_seconds_bucket{le="14400"} 3
fanout_delivery_latency_seconds_bucket{le="+Inf"} 4
fanout_delivery_latency_seconds_sum 20002.0015
fanout_delivery_latency_seconds_count 4
# HELP fanout_api_requests_total HTTP API requests answered, by method, route pattern and status.
# TYPE fanout_api_requests_total counter
fanout_api_requests_total{method="GET",route="/v2/webhooks",status="200"} 2
fanout_api_requests_total{method="GET",route="/v2/webhooks/{id}",status="404"} 1
fanout_api_requests_total{method="POST",route="/v2/webhooks",status="400"} 1
# HELP fanout_subscriptions Subscriptions in the routing table.
# TYPE fanout_subscriptions gauge
fanout_subscriptions 100000
# HELP fanout_journal_commits_total Group commits of the journal (one fdatasync of its log each).
# TYPE fanout_journal_commits_total counter
fanout_journal_commits_total 3
# HELP fanout_journal_commit_failures_total Group commits that failed (their events were answered 503).
# TYPE fanout_journal_commit_failures_total counter
fanout_journal_commit_failures_total 1
# HELP fanout_journal_records_total Records committed: accepted deliveries, attempts, final outcomes.
# TYPE fanout_journal_records_total counter
fanout_journal_records_total 40
# HELP fanout_journal_event_bytes_total Event ids and bodies handed to the journal.
# TYPE fanout_journal_event_bytes_total counter
fanout_journal_event_bytes_total 9000
# HELP fanout_journal_frames_indexed_total Group commits copied from the journal's log into its database.
# TYPE fanout_journal_frames_indexed_total counter
fanout_journal_frames_indexed_total 2
# HELP fanout_journal_index_failures_total Copies into the journal's database that failed (tried again; the log keeps the records).
# TYPE fanout_journal_index_failures_total counter
fanout_journal_index_failures_total 5
# HELP fanout_journal_backlog_waits_total Times the journal's log waited for its database to catch up (backlog bound).
# TYPE fanout_journal_backlog_waits_total counter
fanout_journal_backlog_waits_total 7
# HELP fanout_journal_index_boosts_total Times the copy into the journal's database left the background (its backlog neared the bound).
# TYPE fanout_journal_index_boosts_total counter
fanout_journal_index_boosts_total 3
# HELP fanout_journal_checkpoints_total Passes of the journal's checkpointer that copied SQLite's WAL into the database file.
# TYPE fanout_journal_checkpoints_total counter
fanout_journal_checkpoints_total 8
# HELP fanout_deliveries_recovered_total Deliveries resumed from the journal at start.
# TYPE fanout_deliveries_recovered_total counter
fanout_deliveries_recovered_total 4
# HELP fanout_budget_refusals_total Publishes refused busy by the engine's budgets, from every door (ingest, source): global (count or bytes), the backlog (max_backlog), one organisation's, one origin's.
# TYPE fanout_budget_refusals_total counter
fanout_budget_refusals_total{budget="global"} 3
fanout_budget_refusals_total{budget="backlog"} 4
fanout_budget_refusals_total{budget="org"} 2
fanout_budget_refusals_total{budget="origin"} 1
# HELP fanout_in_flight_bytes Ids and bodies of the deliveries in flight (max_in_flight_bytes).
# TYPE fanout_in_flight_bytes gauge
fanout_in_flight_bytes 4096
)";

TEST(Metrics, GoldenText) {
  Metrics m;
  m.record_outcome(with_latency(500));             // 0.0005 s
  m.record_outcome(with_latency(1000));            // 0.001 s: on the first bound
  m.record_outcome(with_latency(2'000'000));       // 2 s
  m.record_outcome(with_latency(20'000'000'000));  // 20,000 s: past the last bound
  m.record_refused("unknown_type");
  m.record_refused("busy");
  m.record_refused("unknown_type");
  m.record_request("GET", "/v2/webhooks", 200);
  m.record_request("POST", "/v2/webhooks", 400);
  m.record_request("GET", "/v2/webhooks", 200);
  m.record_request("GET", "/v2/webhooks/{id}", 404);

  EngineStats s;
  s.journal_commits = 3;
  s.journal_commit_failures = 1;
  s.journal_records = 40;
  s.journal_bytes = 9000;
  s.journal_frames_indexed = 2;
  s.journal_index_failures = 5;
  s.journal_backlog_waits = 7;
  s.journal_index_boosts = 3;
  s.journal_checkpoints = 8;
  s.recovered = 4;
  s.refused_busy = 10;  // of them 2 for an organisation, 1 for an origin, 4 the backlog: 3 global
  s.refused_org_busy = 2;
  s.refused_origin_busy = 1;
  s.refused_backlog_busy = 4;
  s.in_flight_bytes = 4096;
  s.published = 12;
  s.refused_invalid = 99;  // the refusals rendered are the recorded ones
  s.in_flight = 7;
  s.waiting_retry = 2;
  s.waiting_retry_bytes = 1700;
  s.waiting_retry_on_disk = 1;
  s.body_reads = 5;
  s.body_read_failures = 1;
  s.delivered = 5;
  s.rejected = 2;
  s.exhausted = 1;
  s.dropped = 3;
  s.attempts = 25;
  s.attempts_2xx = 5;
  s.attempts_3xx = 1;
  s.attempts_4xx = 6;
  s.attempts_5xx = 9;
  s.attempts_failed = 4;
  s.connections_h2 = 3;
  s.connections_h1 = 1;
  s.signed_off_worker = 11;
  EXPECT_EQ(m.render(s, 100'000), kGolden);
}

TEST(Metrics, EmptyState) {
  const Metrics m;
  const std::string text = m.render(EngineStats{}, 0);
  // Families without samples keep their HELP and TYPE lines and nothing else.
  EXPECT_NE(text.find("# TYPE fanout_events_refused_total counter\n"
                      "# HELP fanout_outcomes_total"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE fanout_api_requests_total counter\n"
                      "# HELP fanout_subscriptions"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("reason="), std::string::npos);
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_bucket{le=\"+Inf\"}"), "0");
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_sum"), "0");
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_count"), "0");
  EXPECT_EQ(sample(text, "fanout_subscriptions"), "0");
  EXPECT_EQ(bucket_counts(m), std::vector<std::uint64_t>(Metrics::kLatencyBuckets.size() + 1, 0));
}

TEST(Metrics, EveryFamilyHasHelpAndTypeAndCountersEndInTotal) {
  Metrics m;
  m.record_refused("busy");
  m.record_request("GET", "/healthz", 200);
  const std::string text = m.render(EngineStats{}, 1);
  std::set<std::string> helped, typed;
  for (const std::string& line : lines_of(text)) {
    ASSERT_FALSE(line.empty());
    if (line.starts_with("# HELP ")) {
      helped.insert(line.substr(7, line.find(' ', 7) - 7));
    } else if (line.starts_with("# TYPE ")) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      const std::string type = line.substr(line.rfind(' ') + 1);
      EXPECT_TRUE(helped.count(name)) << "TYPE before HELP: " << name;
      typed.insert(name);
      if (type == "counter") {
        EXPECT_TRUE(name.ends_with("_total")) << name;
      }
    } else {
      // A sample belongs to the family declared last (histograms add suffixes).
      ASSERT_FALSE(typed.empty()) << line;
      EXPECT_FALSE(line.starts_with("#")) << line;
    }
  }
  const std::set<std::string> want = {"fanout_events_published_total",
                                      "fanout_events_refused_total",
                                      "fanout_outcomes_total",
                                      "fanout_attempts_total",
                                      "fanout_in_flight",
                                      "fanout_waiting_retries",
                                      "fanout_waiting_retry_bytes",
                                      "fanout_waiting_retries_on_disk",
                                      "fanout_retry_body_reads_total",
                                      "fanout_connections",
                                      "fanout_signatures_off_worker_total",
                                      "fanout_delivery_latency_seconds",
                                      "fanout_api_requests_total",
                                      "fanout_subscriptions",
                                      "fanout_journal_commits_total",
                                      "fanout_journal_commit_failures_total",
                                      "fanout_journal_records_total",
                                      "fanout_journal_frames_indexed_total",
                                      "fanout_journal_index_failures_total",
                                      "fanout_journal_backlog_waits_total",
                                      "fanout_journal_index_boosts_total",
                                      "fanout_journal_checkpoints_total",
                                      "fanout_journal_event_bytes_total",
                                      "fanout_deliveries_recovered_total",
                                      "fanout_budget_refusals_total",
                                      "fanout_in_flight_bytes"};
  EXPECT_EQ(helped, want);
  EXPECT_EQ(typed, want);
  EXPECT_TRUE(text.ends_with("\n"));
}

TEST(Metrics, LatencyOnABoundGoesInThatBucket) {
  constexpr std::uint64_t kBoundsUs[] = {1'000,      2'500,       5'000,         10'000,
                                         25'000,     50'000,      100'000,       250'000,
                                         500'000,    1'000'000,   2'500'000,     10'000'000,
                                         60'000'000, 600'000'000, 3'600'000'000, 14'400'000'000};
  static_assert(std::size(kBoundsUs) == Metrics::kLatencyBuckets.size());
  const std::size_t n = Metrics::kLatencyBuckets.size() + 1;
  for (std::size_t i = 0; i < std::size(kBoundsUs); ++i) {
    SCOPED_TRACE(Metrics::kLatencyBuckets[i]);
    {
      Metrics on;  // exactly on bound i: counted from bucket i on
      on.record_outcome(with_latency(kBoundsUs[i]));
      std::vector<std::uint64_t> want(n, 0);
      for (std::size_t j = i; j < n; ++j) want[j] = 1;
      EXPECT_EQ(bucket_counts(on), want);
    }
    {
      Metrics past;  // one microsecond past it: from bucket i + 1 on
      past.record_outcome(with_latency(kBoundsUs[i] + 1));
      std::vector<std::uint64_t> want(n, 0);
      for (std::size_t j = i + 1; j < n; ++j) want[j] = 1;
      EXPECT_EQ(bucket_counts(past), want);
    }
  }
  Metrics zero;
  zero.record_outcome(with_latency(0));
  EXPECT_EQ(bucket_counts(zero), std::vector<std::uint64_t>(n, 1));
  Metrics huge;
  huge.record_outcome(with_latency(UINT64_MAX));
  std::vector<std::uint64_t> only_inf(n, 0);
  only_inf.back() = 1;
  EXPECT_EQ(bucket_counts(huge), only_inf);
}

TEST(Metrics, SumIsInSeconds) {
  Metrics m;
  m.record_outcome(with_latency(1));
  m.record_outcome(with_latency(2'500'000));
  const std::string text = m.render(EngineStats{}, 0);
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_sum"), "2.500001");
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_count"), "2");
}

TEST(Metrics, LabelValuesAreEscaped) {
  Metrics m;
  m.record_refused("a\"b\\c\nd");
  m.record_request("GE\"T", "/v2/\\x\ny", 418);
  const std::string text = m.render(EngineStats{}, 0);
  EXPECT_EQ(sample(text, R"(fanout_events_refused_total{reason="a\"b\\c\nd"})"), "1") << text;
  EXPECT_EQ(
      sample(text, R"(fanout_api_requests_total{method="GE\"T",route="/v2/\\x\ny",status="418"})"),
      "1")
      << text;
  // No raw line feed inside a sample: every line is a comment or starts with a metric name.
  for (const std::string& line : lines_of(text))
    EXPECT_TRUE(line.starts_with("#") || line.starts_with("fanout_")) << line;
}

TEST(Metrics, CountsAccumulatePerLabelSet) {
  Metrics m;
  for (int i = 0; i < 1000; ++i) m.record_refused(i % 2 == 0 ? "busy" : "stopped");
  for (int i = 0; i < 300; ++i) m.record_request("DELETE", "/v2/webhooks/{id}", i % 3 ? 204 : 404);
  const std::string text = m.render(EngineStats{}, 0);
  EXPECT_EQ(sample(text, R"(fanout_events_refused_total{reason="busy"})"), "500");
  EXPECT_EQ(sample(text, R"(fanout_events_refused_total{reason="stopped"})"), "500");
  EXPECT_EQ(
      sample(
          text,
          R"(fanout_api_requests_total{method="DELETE",route="/v2/webhooks/{id}",status="204"})"),
      "200");
  EXPECT_EQ(
      sample(
          text,
          R"(fanout_api_requests_total{method="DELETE",route="/v2/webhooks/{id}",status="404"})"),
      "100");
}

// Worker threads record outcomes while the loop thread renders: relaxed atomics only, and no
// count is lost. Thread t records latencies t*1000 + (i % 4) * 1000 us, so each thread has a
// known share in each bucket.
TEST(Metrics, ConcurrentRecordOutcome) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 10'000;
  Metrics m;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&m, t] {
      for (int i = 0; i < kPerThread; ++i) {
        Outcome o;
        o.event_id = "e";
        o.kind = OutcomeKind::kDelivered;
        o.latency_us = static_cast<std::uint64_t>(1'000 * ((t + i) % 4) + 1'000);
        m.record_outcome(o);
      }
    });
  }
  // Renders meanwhile: counts only ever grow.
  std::uint64_t last = 0;
  for (int r = 0; r < 50; ++r) {
    const std::uint64_t count =
        std::stoull(sample(m.render(EngineStats{}, 0), "fanout_delivery_latency_seconds_count"));
    EXPECT_GE(count, last);
    last = count;
  }
  for (auto& th : threads) th.join();

  // Latencies 1000, 2000, 3000, 4000 us, 10,000 each: buckets 0.001 / 0.0025 (two) / 0.005.
  const std::vector<std::uint64_t> counts = bucket_counts(m);
  ASSERT_EQ(counts.size(), Metrics::kLatencyBuckets.size() + 1);
  EXPECT_EQ(counts[0], 10'000u);  // le=0.001: 1000 us
  EXPECT_EQ(counts[1], 20'000u);  // le=0.0025: + 2000 us
  EXPECT_EQ(counts[2], 40'000u);  // le=0.005: + 3000 and 4000 us
  EXPECT_EQ(counts.back(), 40'000u);
  const std::string text = m.render(EngineStats{}, 0);
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_count"), "40000");
  // 10,000 × (1000 + 2000 + 3000 + 4000) us = 100 s.
  EXPECT_EQ(sample(text, "fanout_delivery_latency_seconds_sum"), "100");
}

}  // namespace
}  // namespace fanout::daemon
