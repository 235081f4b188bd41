// Waiting retries whose body stays in the journal only (DurabilityOptions::bodies_on_disk_after_ms,
// engine/worker_retry.cc): the body is not held while the retry waits, is read back whole when
// the retry is due, is left in the journal by stop() and sent by the next engine, stays in memory
// when the wait is short or until the journal's database has the delivery, and a failed read leaves
// the retry waiting, not lost.
//
// Waits are on conditions (the receiver's, the collector's, or engine stats polled with a yield)
// against generous deadlines; nothing sleeps and no test measures time.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include "fanout/engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"
#include "tests/support/temp_dir.h"

namespace fanout {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;
using fanout::testing::TempDir;

// Polls `done` (yielding in between) until it holds; false after two minutes (a failure).
bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// A body of ~2 KB, so that one held in memory shows in waiting_retry_bytes.
std::string big_event(const std::string& id) {
  return R"({"id":")" + id + R"(","org_id":42,"type":"business_updated","payload":{"pad":")" +
         std::string(2000, 'x') + R"("}})";
}

class RetryBodiesTest : public fanout::test_support::EngineFixture {
 protected:
  // Retries a millisecond apart, unless `backoff_ms`; bodies on disk for waits of at least
  // `on_disk_after_ms`.
  void start(std::uint16_t port, std::uint64_t on_disk_after_ms, std::uint64_t backoff_ms = 1) {
    EngineOptions o = fanout::test_support::loopback_engine_options();
    o.retry.base_ms = backoff_ms;
    o.retry.factor = 1;
    o.retry.max_retries = 3;
    o.retry.cap_ms = cap_ms_;
    o.durability.dir = dir_.path().string();
    o.durability.bodies_on_disk_after_ms = on_disk_after_ms;
    o.durability.before_index = [this] {
      while (hold_index_.load()) std::this_thread::yield();
    };
    create(std::move(o));
    ASSERT_TRUE(engine_);
    subscribe(1, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
    run();
  }

  // Every frame committed so far is in the database (the accepted deliveries' bodies too).
  bool wait_indexed() {
    return wait_until([this] {
      const EngineStats st = engine_->stats();
      return st.journal_commits > 0 && st.journal_frames_indexed >= st.journal_commits;
    });
  }

  // Publishes `id` with `po`; its first attempt, held at `rx`, is answered 503 once the
  // database has the delivery; returns once its retry waits (the collector's note).
  void first_attempt_fails_once_copied(Receiver& rx, Producer& p, const std::string& id,
                                       const PublishOptions& po) {
    ASSERT_EQ(p.publish(big_event(id), po).status, PublishStatus::kAccepted);
    ASSERT_TRUE(rx.wait_for(1));
    ASSERT_TRUE(wait_indexed());
    rx.release_held(503);
    ASSERT_TRUE(collector_.wait_for_retries(1));
  }

  // Runs `sql` on the journal's database from a connection of the test's own.
  void exec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() / "journal.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << sql << ": " << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

  // Tagged (the collector hears its retries), and with hold_retries when `held`.
  static PublishOptions tagged(bool held) {
    PublishOptions o;
    o.tag = 1;
    o.hold_retries = held;
    return o;
  }

  TempDir dir_{"fanout-retry-bodies"};
  std::uint64_t cap_ms_ = 3'600'000;  // the retry policy's cap (a resumed wait is capped too)
  std::atomic<bool> hold_index_{false};
};

// The first attempt held until its delivery is in the database, then 503: the retry waits
// (held for its release) without its body; released, attempt 2 carries the same body.
TEST_F(RetryBodiesTest, ADueRetryReadsItsBodyBackAndSendsItWhole) {
  Receiver rx([](const Received&, std::size_t n) { return n == 0 ? Receiver::kHold : 200; });
  start(rx.port(), 1);
  auto p = engine_->make_producer();
  const PublishOptions held = tagged(true);
  ASSERT_NO_FATAL_FAILURE(first_attempt_fails_once_copied(rx, p, "e1", held));
  EngineStats st = engine_->stats();
  EXPECT_EQ(st.waiting_retry, 1u);
  EXPECT_EQ(st.waiting_retry_on_disk, 1u);
  EXPECT_LT(st.waiting_retry_bytes, 1000u) << "the 2 KB body is not held";
  p.release_retry(collector_.retries()[0].hold);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 2u);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_GT(got[0].body.size(), 2000u);
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(got[1].headers.at("x-partoo-event-id"), "e1");
  EXPECT_EQ(got[1].headers.at("x-partoo-attempt"), "2");
  st = engine_->stats();
  EXPECT_EQ(st.body_reads, 1u);
  EXPECT_EQ(st.body_read_failures, 0u);
  EXPECT_EQ(st.waiting_retry_on_disk, 0u);
}

// An hour's backoff, then stop(): the delivery is handed back without its body (nothing read at
// stop), marked body_in_journal; an engine reopened on the journal resumes it and sends it whole.
TEST_F(RetryBodiesTest, StopLeavesTheBodyInTheJournalAndARestartSendsIt) {
  Receiver rx([](const Received&, std::size_t) { return Receiver::kHold; });
  start(rx.port(), 1, 3'600'000);
  {
    auto p = engine_->make_producer();
    ASSERT_NO_FATAL_FAILURE(first_attempt_fails_once_copied(rx, p, "e2", tagged(false)));
  }
  EXPECT_EQ(engine_->stats().waiting_retry_on_disk, 1u);
  const auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].event_id, "e2");
  EXPECT_EQ(left[0].attempts, 1u);
  EXPECT_TRUE(left[0].body_in_journal);
  EXPECT_TRUE(left[0].body.empty());
  EXPECT_EQ(engine_->stats().body_reads, 0u);
  engine_.reset();
  // Reopened: the wait left (an hour) is capped at 1 ms, so the resumed delivery goes at once.
  Receiver rx2([](const Received&, std::size_t) { return 200; });
  cap_ms_ = 1;
  start(rx2.port(), 1, 3'600'000);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].event_id, "e2");
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 2u);
  const auto got = rx2.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].body, rx.received()[0].body);
  EXPECT_EQ(got[0].headers.at("x-partoo-attempt"), "2");
  EXPECT_EQ(engine_->stats().recovered, 1u);
}

// A delivery the database does not have yet (its copy held back): the retry keeps its body
// and goes without reading anything.
TEST_F(RetryBodiesTest, AnUncopiedDeliveryKeepsItsBody) {
  Receiver rx([](const Received&, std::size_t n) { return n == 0 ? 503 : 200; });
  hold_index_ = true;  // nothing reaches the database until the end
  start(rx.port(), 1);
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(big_event("e3")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 2u);
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.body_reads, 0u);
  EXPECT_EQ(st.journal_frames_indexed, 0u);
  hold_index_ = false;
}

// A copied delivery whose retry waits less than the threshold (1 ms against an hour): its body
// stays in memory, nothing is read.
TEST_F(RetryBodiesTest, AShortWaitKeepsItsBody) {
  Receiver rx([](const Received&, std::size_t n) { return n == 0 ? Receiver::kHold : 200; });
  start(rx.port(), 3'600'000);
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(big_event("e4")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(rx.wait_for(1));
  ASSERT_TRUE(wait_indexed());
  rx.release_held(503);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.body_reads, 0u);
  EXPECT_EQ(st.waiting_retry_on_disk, 0u);
}

// A retry that began to wait before the database had its delivery keeps its body until the
// copy is made; then (within a second: the worker's sweep) its body goes to disk too.
TEST_F(RetryBodiesTest, ARetryWaitingBeforeTheCopyLeavesItsBodyOnceCopied) {
  Receiver rx([](const Received&, std::size_t) { return 503; });
  hold_index_ = true;
  start(rx.port(), 1, 3'600'000);
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(big_event("e6"), tagged(false)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for_retries(1));
  EngineStats st = engine_->stats();
  EXPECT_EQ(st.waiting_retry_on_disk, 0u);
  EXPECT_GT(st.waiting_retry_bytes, 2000u) << "the body is held while the copy waits";
  hold_index_ = false;
  ASSERT_TRUE(wait_until([this] { return engine_->stats().waiting_retry_on_disk == 1; }));
  st = engine_->stats();
  EXPECT_EQ(st.waiting_retry, 1u);
  EXPECT_LT(st.waiting_retry_bytes, 1000u);
  const auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_TRUE(left[0].body_in_journal);
  EXPECT_EQ(engine_->stats().waiting_retry_on_disk, 0u);
}

// The body's row taken away while its retry waits: the read fails, the retry waits again (still
// counted, not lost); the row put back, the next read sends it.
TEST_F(RetryBodiesTest, AFailedReadWaitsAndTriesAgain) {
  Receiver rx([](const Received&, std::size_t n) { return n == 0 ? Receiver::kHold : 200; });
  start(rx.port(), 1);
  auto p = engine_->make_producer();
  const PublishOptions held = tagged(true);
  ASSERT_NO_FATAL_FAILURE(first_attempt_fails_once_copied(rx, p, "e5", held));
  ASSERT_EQ(engine_->stats().waiting_retry_on_disk, 1u);
  exec("CREATE TABLE kept AS SELECT did, body FROM bodies");
  exec("DELETE FROM bodies");
  p.release_retry(collector_.retries()[0].hold);
  ASSERT_TRUE(wait_until([this] { return engine_->stats().body_read_failures > 0; }));
  EngineStats st = engine_->stats();
  EXPECT_EQ(st.waiting_retry, 1u);
  EXPECT_EQ(st.in_flight, 1u);
  EXPECT_EQ(rx.count(), 1u) << "attempted without its body";
  exec("INSERT INTO bodies (did, body) SELECT did, body FROM kept");
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[1].body, got[0].body);
  EXPECT_EQ(engine_->stats().body_reads, 1u);
}

}  // namespace
}  // namespace fanout
