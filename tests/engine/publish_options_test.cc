// PublishOptions (fanout/engine.h): what a broker source passes with an event, and what comes
// back to it: the tag in outcomes and retry notes, the broker's id when the envelope has none,
// attempts continuing from a count made elsewhere, and journal = false.
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "fanout/engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"

namespace fanout {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;

constexpr const char* kNoId = R"({"org_id":42,"type":"business_updated","payload":{"n":1}})";
constexpr const char* kWithId =
    R"({"id":"given","org_id":42,"type":"business_updated","payload":{"n":1}})";

class PublishOptionsTest : public fanout::test_support::EngineFixture {
 protected:
  void start(std::uint16_t port, std::string journal_dir = {}) {
    EngineOptions o = fanout::test_support::loopback_engine_options();
    o.retry.factor = 1;
    o.retry.max_retries = 3;
    o.durability.dir = std::move(journal_dir);
    create(std::move(o));
    ASSERT_TRUE(engine_);
    subscribe(1, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
    run();
  }
};

TEST_F(PublishOptionsTest, TagAndDefaultIdComeBackInTheOutcome) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(rx.port());
  auto p = engine_->make_producer();
  PublishOptions po;
  po.tag = 77;
  po.default_id = "1700000000000-3";
  const PublishResult r = p.publish(kNoId, po);
  ASSERT_EQ(r.status, PublishStatus::kAccepted);
  EXPECT_EQ(r.event_id, "1700000000000-3");
  po.tag = 78;
  ASSERT_EQ(p.publish(kWithId, po).status, PublishStatus::kAccepted);  // its own id wins
  ASSERT_EQ(p.publish(kNoId).status, PublishStatus::kAccepted);        // untagged, generated id
  ASSERT_TRUE(collector_.wait_for(3));
  std::map<std::string, std::uint64_t> tags;
  for (const auto& o : collector_.outcomes()) tags[o.event_id] = o.tag;
  EXPECT_EQ(tags.at("1700000000000-3"), 77u);
  EXPECT_EQ(tags.at("given"), 78u);
  EXPECT_EQ(tags.size(), 3u);
  for (const auto& [id, tag] : tags) {
    if (id != "given" && id != "1700000000000-3") {
      EXPECT_EQ(tag, 0u) << id;
    }
  }
  EXPECT_TRUE(collector_.retries().empty());
}

TEST_F(PublishOptionsTest, AttemptsContinueFromTheCountGivenAndRetriesAreNoted) {
  Receiver rx([](const Received&, std::size_t) { return 500; });
  start(rx.port());
  auto p = engine_->make_producer();
  PublishOptions po;
  po.tag = 5;
  po.default_id = "taken-over";
  po.attempts = 2;  // two made by another consumer: two more make the cap of 4
  ASSERT_EQ(p.publish(kNoId, po).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kExhausted);
  EXPECT_EQ(out[0].attempts, 4u);
  EXPECT_EQ(out[0].tag, 5u);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].headers.at("x-partoo-attempt"), "3");
  EXPECT_EQ(got[1].headers.at("x-partoo-attempt"), "4");
  // One note per retry scheduled (after attempt 3), none for the last attempt.
  const auto notes = collector_.retries();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(notes[0].tag, 5u);
  EXPECT_EQ(notes[0].event_id, "taken-over");
  EXPECT_EQ(notes[0].attempts, 3u);
  EXPECT_GT(notes[0].next_attempt_unix_ms, 0);
}

// hold_retries: a retry past its due time still waits for release_retry(). Deterministic: one
// worker, jitter 0, equal backoffs, so the wheel fires A's retry before B's (B failed later);
// B's second attempt reaching the receiver proves A's retry came due and was held.
TEST_F(PublishOptionsTest, HeldRetriesWaitForTheirReleaseAndStopHandsThemBack) {
  Receiver rx([](const Received&, std::size_t) { return 500; });
  start(rx.port());
  auto p = engine_->make_producer();
  PublishOptions held;
  held.tag = 1;
  held.default_id = "held";
  held.hold_retries = true;
  ASSERT_EQ(p.publish(kNoId, held).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for_retries(1));
  const auto first = collector_.retries()[0];
  EXPECT_EQ(first.event_id, "held");
  EXPECT_EQ(first.attempts, 1u);
  ASSERT_NE(first.hold, 0u);
  PublishOptions free;
  free.tag = 2;
  free.default_id = "free";
  ASSERT_EQ(p.publish(kNoId, free).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));  // "free": four attempts, exhausted
  ASSERT_EQ(collector_.outcomes()[0].event_id, "free");
  EXPECT_EQ(collector_.outcomes()[0].attempts, 4u);
  for (const auto& n : collector_.retries()) {
    if (n.event_id == "free") {
      EXPECT_EQ(n.hold, 0u) << "no hold without hold_retries";
    }
  }
  auto attempts_of = [&](const std::string& id) {
    std::size_t n = 0;
    for (const auto& r : rx.received()) n += r.headers.at("x-partoo-event-id") == id ? 1U : 0U;
    return n;
  };
  EXPECT_EQ(attempts_of("held"), 1u) << "attempted again before its release";
  EXPECT_EQ(engine_->stats().waiting_retry, 1u);
  // Released: attempt 2 goes at once (its backoff ran out long ago); a second release of the
  // same hold, or a made-up one, is ignored.
  p.release_retry(first.hold);
  p.release_retry(first.hold);
  p.release_retry(0);
  p.release_retry(~0ULL);
  ASSERT_TRUE(collector_.wait_for_retries(5));  // free: 3 notes, held: 2
  std::uint64_t second = 0;
  for (const auto& n : collector_.retries()) {
    if (n.event_id == "held" && n.attempts == 2) second = n.hold;
  }
  ASSERT_NE(second, 0u);
  EXPECT_NE(second, first.hold);
  EXPECT_EQ(attempts_of("held"), 2u);
  // Stop while held: handed back with its two attempts, and a late release is harmless.
  const auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].event_id, "held");
  EXPECT_EQ(left[0].attempts, 2u);
  EXPECT_EQ(left[0].tag, 1u);
  p.release_retry(second);
}

TEST_F(PublishOptionsTest, NotJournaledMeansNoIdempotencyAndNothingRecovered) {
  Receiver rx([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  const auto dir = std::filesystem::temp_directory_path() /
                   ("fanout-publish-options-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  start(rx.port(), dir.string());
  {
    auto p = engine_->make_producer();
    PublishOptions po;
    po.tag = 9;
    po.journal = false;
    EXPECT_EQ(p.publish(kWithId, po).status, PublishStatus::kAccepted);
    EXPECT_EQ(p.publish(kWithId, po).status, PublishStatus::kAccepted) << "no idempotency";
    EXPECT_EQ(p.publish(kWithId).status, PublishStatus::kAccepted);  // journaled
    EXPECT_EQ(p.publish(kWithId).status, PublishStatus::kDuplicate);
  }
  const auto left = engine_->stop(std::chrono::milliseconds(0));
  engine_.reset();
  std::size_t tagged = 0;
  for (const Unfinished& u : left) tagged += u.tag == 9 ? 1 : 0;
  EXPECT_EQ(tagged, 2u) << "handed back with their tag";
  // Restarted on the same journal: only the journaled event comes back.
  Receiver ok([](const Received&, std::size_t) { return 200; });
  start(ok.port(), dir.string());
  EXPECT_EQ(engine_->stats().recovered, 1u);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].tag, 0u);
  EXPECT_TRUE(engine_->stop(std::chrono::milliseconds(0)).empty());
  engine_.reset();
  std::filesystem::remove_all(dir);
}

// Ids the engine makes up: 128 random bits as 32 hex digits, all distinct, every bit position
// balanced (a short or constant id, or a stuck bit, fails).
TEST_F(PublishOptionsTest, GeneratedIdsAreOneHundredTwentyEightRandomBits) {
  Receiver rx([](const Received&, std::size_t) { return 200; }, Receiver::Keep::kAnswersOnly);
  start(rx.port());
  auto p = engine_->make_producer();
  std::set<std::string> seen;
  std::array<int, 128> ones{};
  constexpr int kIds = 4000;
  for (int i = 0; i < kIds; ++i) {
    const PublishResult r = p.publish(kNoId);
    ASSERT_EQ(r.status, PublishStatus::kAccepted);
    const std::string id(r.event_id);
    ASSERT_EQ(id.size(), 32u);
    ASSERT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
    ASSERT_TRUE(seen.insert(id).second) << "repeated id " << id;
    for (int bit = 0; bit < 128; ++bit) {
      const char c = id[static_cast<std::size_t>(bit / 4)];
      const int nibble = c <= '9' ? c - '0' : c - 'a' + 10;
      ones[static_cast<std::size_t>(bit)] += (nibble >> (3 - bit % 4)) & 1;
    }
  }
  // Each bit is set in about half the ids: 2000 ± 6 standard deviations (about 32).
  for (int bit = 0; bit < 128; ++bit) {
    EXPECT_NEAR(ones[static_cast<std::size_t>(bit)], kIds / 2, 190) << "bit " << bit;
  }
  ASSERT_TRUE(collector_.wait_for(kIds));
}

}  // namespace
}  // namespace fanout
