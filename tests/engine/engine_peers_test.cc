// The engine against peers nobody here wrote: nghttpd over h2c, and fanout-sink (its own
// binary, spawned) for duplicates, GOAWAY and HTTP/1.1.
#include "fanout/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/signer.h"
#include "fanout/version.h"
#include "tests/engine/engine_cases.h"
#include "tests/support/peers.h"
#include "tests/support/receiver.h"
#include "tests/transport/spawn_on_loop.h"
#include "tests/transport/test_peers.h"

namespace fanout {
namespace {

using namespace engine_testing;  // EngineTest and its helpers (engine_cases.h)

// --- Real peers nobody here wrote ---------------------------------------------------------------

// nghttpd (nghttp2's server) over h2c: answers 200 to a POST on a file that exists.
class EngineNghttpdTest : public EngineTest {
 protected:
  void SetUp() override {
    if (!fanout::testing::have_program("nghttpd")) FANOUT_MISSING_PEER("nghttpd");
    dir_.write("hook", "");
  }
  std::uint16_t start_nghttpd() {
    // Port 0: nghttpd binds one itself, read back from its descriptors (/proc).
    peer_ = fanout::testing::Child(
        {"nghttpd", "--address=127.0.0.1", "--echo-upload", "-d", dir_.path(), "--no-tls", "0"});
    const auto ports = fanout::testing::wait_listening(peer_.pid());
    EXPECT_EQ(ports.size(), 1u) << "nghttpd did not start";
    return ports.empty() ? 0 : ports[0];
  }
  fanout::testing::ScratchDir dir_;
  fanout::testing::Child peer_;
};

TEST_F(EngineNghttpdTest, DeliversInOneAttemptOverH2c) {
  constexpr int kEvents = 50;
  const std::uint16_t port = start_nghttpd();
  create(test_options());
  ASSERT_TRUE(engine_);
  subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
  run();
  auto p = engine_->make_producer();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("ng-" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEvents));
  std::set<std::string> ids;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u);
    EXPECT_EQ(c.last_status, 200);
    ids.insert(c.event_id);
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kEvents));
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(st.attempts_2xx, static_cast<std::uint64_t>(kEvents));
}

// fanout-sink, spawned on port 0 from the test thread's own loop (tests/tools/
// fanout_sink_test.cc does the same); its JSON summary after SIGTERM is the receiver's view.
class EngineSinkTest : public EngineTest {
 protected:
  void SetUp() override {
#ifndef FANOUT_SINK_PATH
    GTEST_SKIP() << "fanout-sink is not built (FANOUT_BUILD_TOOLS=OFF)";
#else
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
#endif
  }
  void TearDown() override {
    EngineTest::TearDown();
    if (!loop_ready_) return;
    if (sink_ != nullptr && !sink_->done()) {
      sink_->kill(SIGKILL);
      run_until([&] { return sink_->done(); });
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void run_until(const std::function<bool()>& done) {
    while (!done()) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) {
        ADD_FAILURE() << "the loop ran out of work";
        return;
      }
    }
  }
  // Starts the sink with `flags`; its port, from "listening on 127.0.0.1:PORT".
  std::uint16_t start_sink(std::vector<std::string> flags) {
#ifdef FANOUT_SINK_PATH
    std::vector<std::string> argv = {FANOUT_SINK_PATH, "--listen", "127.0.0.1:0", "--quiet",
                                     "--json"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    sink_child_ = std::make_unique<fanout::testing::LoopChild>();
    sink_ = sink_child_.get();
    EXPECT_TRUE(sink_->start(&loop_, argv)) << sink_->error();
    run_until([&] { return sink_->out().find('\n') != std::string::npos || sink_->done(); });
    const std::string prefix = "listening on 127.0.0.1:";
    if (sink_->out().rfind(prefix, 0) != 0) {
      ADD_FAILURE() << sink_->describe();
      return 0;
    }
    return static_cast<std::uint16_t>(std::stoi(sink_->out().substr(prefix.size())));
#else
    (void)flags;
    return 0;
#endif
  }
  // SIGTERM; the JSON summary line.
  std::string stop_sink() {
    sink_->kill(SIGTERM);
    run_until([&] { return sink_->done(); });
    EXPECT_EQ(sink_->exit_status(), 0) << sink_->describe();
    return sink_->out().substr(sink_->out().find('\n') + 1);
  }
  // Publishes `n` events to a fresh engine subscribed to the sink; waits for every outcome.
  void deliver(std::uint16_t port, int n) {
    create(test_options());
    ASSERT_TRUE(engine_);
    subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
    run();
    auto p = engine_->make_producer();
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(p.publish(event("sink-" + std::to_string(i))).status, PublishStatus::kAccepted);
    }
    ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(n)));
  }

  uv_loop_t loop_{};
  bool loop_ready_ = false;
  std::unique_ptr<fanout::testing::LoopChild> sink_child_;
  fanout::testing::LoopChild* sink_ = nullptr;
};

using fanout::testing::number_after;

TEST_F(EngineSinkTest, EveryEventIsDeliveredOnceWhenTheSinkAnswersOk) {
  constexpr int kEvents = 200;
  const std::uint16_t port = start_sink({"--status-mix", "200:1"});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  std::size_t delivered = 0;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u);
    if (c.kind == OutcomeKind::kDelivered) ++delivered;
  }
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), static_cast<long long>(delivered))
      << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"without_event_id\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"by_protocol\":{\"h2\":"), kEvents) << summary;
}

TEST_F(EngineSinkTest, RetriesReachTheSinkAsDuplicateEventIds) {
  constexpr int kEvents = 200;
  // Half the answers are 503: most events need retries, about 1 in 64 uses all six attempts.
  const std::uint16_t port = start_sink({"--status-mix", "200:1,503:1", "--seed", "11"});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  long long attempts = 0, delivered = 0, exhausted = 0;
  for (const auto& c : collector_.outcomes()) {
    attempts += c.attempts;
    if (c.kind == OutcomeKind::kDelivered) {
      ++delivered;
      EXPECT_EQ(c.last_status, 200);
    } else {
      EXPECT_EQ(c.kind, OutcomeKind::kExhausted) << c.event_id;
      EXPECT_EQ(c.attempts, 6u);
      EXPECT_EQ(c.last_status, 503);
      ++exhausted;
    }
  }
  EXPECT_EQ(delivered + exhausted, kEvents);
  EXPECT_GT(attempts, kEvents) << "the 503s were retried";
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), attempts) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), attempts - kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"by_status\":{\"200\":"), delivered) << summary;
  EXPECT_EQ(number_after(summary, "\"503\":"), attempts - delivered) << summary;
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts_2xx, static_cast<std::uint64_t>(delivered));
  EXPECT_EQ(st.attempts_5xx, static_cast<std::uint64_t>(attempts - delivered));
}

// contract §4: a delivery refused by the receiver's GOAWAY before it was processed (a stream
// above the last-stream-id) is re-sent on a new connection and is not an attempt. The engine
// puts all 40 events on one connection; the sink sends GOAWAY at its 15th request on each, so
// the streams it has not processed yet are refused and re-sent on the next connection: at most
// three connections, so no event is refused the 4 times in a row that would count as a failed
// attempt (transport README, "Refused before processing"). It also checks HttpServer: streams
// above the GOAWAY's last-stream-id that arrive in the same read are refused with
// RST_STREAM(REFUSED_STREAM), not handed to the handler (else the sink would process requests
// the client then re-sends, rightly, as refused).
TEST_F(EngineSinkTest, GoawayRefusedDeliveriesAreResentAndNotCounted) {
  constexpr int kEvents = 40;
  const fanout::testing::ScratchDir dir;
  const std::string record = dir.file("record.ndjson");
  const std::uint16_t port = start_sink({"--goaway-every", "15", "--record", record});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u) << c.event_id;
  }
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts, static_cast<std::uint64_t>(kEvents));
  const std::string summary = stop_sink();
  // Processed once each, all as attempt 1: nothing refused reached the receiver's handler.
  EXPECT_EQ(number_after(summary, "\"requests\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), 0) << summary;
  EXPECT_GE(number_after(summary, "\"goaways\":"), 1) << summary;
  // The receiver's own record: one line per request it processed, each X-Partoo-Attempt: 1.
  std::ifstream in(record);
  std::string line;
  std::set<std::string> seen;
  while (std::getline(in, line)) {
    EXPECT_NE(line.find(R"(["x-partoo-attempt","1"])"), std::string::npos) << line;
    const std::string key = R"(["x-partoo-event-id",")";
    const auto at = line.find(key);
    ASSERT_NE(at, std::string::npos) << line;
    seen.insert(line.substr(at + key.size(), line.find('"', at + key.size()) - at - key.size()));
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kEvents));
}

// EngineOptions::http1_only: HTTP/1.1 to an http:// receiver instead of h2c (fanout-load --http1).
TEST_F(EngineSinkTest, Http1OnlyDeliversOverHttp11) {
  constexpr int kEvents = 20;
  const std::uint16_t port = start_sink({});
  ASSERT_NE(port, 0);
  EngineOptions o = test_options();
  o.http1_only = true;
  create(std::move(o));
  ASSERT_TRUE(engine_);
  subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
  run();
  auto p = engine_->make_producer();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("h1-" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEvents));
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
  }
  EXPECT_EQ(engine_->stats().connections_h2, 0u);
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"by_protocol\":{\"h2\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"http/1.1\":"), kEvents) << summary;
}

}  // namespace
}  // namespace fanout
