// The engine's journal (engine/journal.h, journal.cc, journal_write.cc) on its own, without
// HTTP: what a reopened journal recovers, idempotency, a torn log tail (cut all along the last
// frame, every byte on request, and flipped bytes), and a failed commit. The fixture and its
// helpers: journal_fixture.h; the database copy and disk bounds: journal_index_test.cc; the
// history queries and purge: journal_history_test.cc.
#include <gtest/gtest.h>

#include "tests/engine/journal_fixture.h"

namespace fanout::engine {
namespace {

using namespace journal_testing;  // the fixture and its helpers (journal_fixture.h)

// --- 1. recovery --------------------------------------------------------------------------------

TEST_F(JournalTest, ReopenRecoversExactlyTheDeliveriesWithoutAFinalOutcome) {
  check_recovery(7ULL * 24 * 3600 * 1000);
}

TEST_F(JournalTest, ReopenRecoversExactlyTheDeliveriesWithoutAFinalOutcomeWithoutHistory) {
  check_recovery(0);
}

// A hold (Producer::Batch): what the holding thread appends does not wake the waiting writer;
// the release hands all of it over (at most one wake), and it all becomes durable.
TEST_F(JournalTest, AppendsInAHoldWakeTheWriterOnceAtTheRelease) {
  auto j = open(options());
  ASSERT_NE(j, nullptr);
  j->start();
  const std::int64_t first = accept_ok(*j, unfinished("before", 3, type_name(0), "{}", 9));
  ASSERT_TRUE(wait_durable(*j, first));
  // Idle: the next append would wake it.
  ASSERT_TRUE(wait_until([&] { return j->writer_waiting(); }));
  const std::uint64_t wakes = j->stats().writer_wakes;
  std::int64_t last = 0;
  {
    Journal* const outer = Journal::hold(j.get());
    EXPECT_EQ(outer, nullptr);
    Journal* const inner = Journal::hold(j.get());  // nested: the release of the outer one wakes
    for (std::size_t i = 0; i < 100; ++i) {
      last = accept_ok(*j, unfinished("held-" + std::to_string(i), 3, type_name(i), "{}", 9));
    }
    Journal::release(j.get(), inner);
    EXPECT_EQ(j->stats().writer_wakes, wakes) << "an append in a hold, or an inner release, woke "
                                                 "the writer";
    Journal::release(j.get(), outer);
  }
  ASSERT_TRUE(wait_durable(*j, last)) << "the held appends were handed over";
  EXPECT_LE(j->stats().writer_wakes, wakes + 1);
  // Released: appends wake the writer again, and a null journal holds nothing.
  Journal::release(nullptr, Journal::hold(nullptr));
  const std::int64_t after = accept_ok(*j, unfinished("after", 3, type_name(1), "{}", 9));
  ASSERT_TRUE(wait_durable(*j, after));
  j->stop();
  EXPECT_EQ(j->stats().records, 102U);
}

// A worker's notes alone (no accept) wake the writer once per frame, at the first of them, and
// are written within kNoteDelay without an accept to carry them.
TEST_F(JournalTest, NotesAloneWakeTheWriterOncePerFrameAndAreWritten) {
  auto j = open(options());
  ASSERT_NE(j, nullptr);
  j->start();
  std::vector<std::int64_t> dids;
  for (std::size_t i = 0; i < 50; ++i) {
    dids.push_back(accept_ok(*j, unfinished("n-" + std::to_string(i), 3, type_name(i), "{}", 9)));
  }
  ASSERT_TRUE(wait_durable(*j, dids.back()));
  const Journal::Stats before = j->stats();
  for (const std::int64_t did : dids) {
    j->attempt(did, 1, 200, Failure::kNone, 100, 0, OutcomeKind::kDelivered);
  }
  ASSERT_TRUE(wait_records(*j, before.records + dids.size())) << "notes written without an accept";
  const Journal::Stats after = j->stats();
  EXPECT_GE(after.commits, before.commits + 1);
  EXPECT_LE(after.writer_wakes - before.writer_wakes, after.commits - before.commits)
      << "a note woke the writer when it was not the first of its frame";
  j->stop();
}

// Without history every final row is deleted (or never written): the next did still comes from
// the meta row, so dids never repeat across restarts.
TEST_F(JournalTest, DidsNeverRepeatWhenEveryRowIsDeleted) {
  DurabilityOptions o = options();
  o.history_ms = 0;
  std::int64_t max_did = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    // Accepted and final before the writer starts: one batch in which no delivery row is written.
    for (int i = 0; i < 4; ++i) {
      max_did = accept_ok(*j, unfinished("gone-" + std::to_string(i), 3, type_name(2), "{}", 9));
      j->attempt(max_did, 1, 200, Failure::kNone, 100, 0, OutcomeKind::kDelivered);
    }
    j->start();
    j->stop();
    EXPECT_EQ(j->stats().records, 8U);
  }
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(j->take_recovered().empty());
    EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(max_did));
    j->start();
    // Written, durable, then deleted by its final outcome.
    const std::int64_t did = accept_ok(*j, unfinished("gone-4", 3, type_name(2), "{}", 9));
    EXPECT_GT(did, max_did);
    max_did = did;
    ASSERT_TRUE(wait_durable(*j, did));
    j->final(did, OutcomeKind::kDropped, 0);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_TRUE(j->take_recovered().empty());
  EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(max_did));
  auto page = j->deliveries(9, "", 0, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 0) << "final rows are deleted without history";
  j->start();
  EXPECT_GT(accept_ok(*j, unfinished("gone-5", 3, type_name(2), "{}", 9)), max_did);
  j->stop();
}

// --- 2. idempotency -----------------------------------------------------------------------------

TEST_F(JournalTest, AnIdIsADuplicateWithinItsOrganisationAcrossRestarts) {
  const DurabilityOptions o = options();  // a day's window, a million ids
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    const std::int64_t first = accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5));
    std::int64_t did = 0;
    EXPECT_EQ(accept(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), did), Admit::kDuplicate);
    // Another body, type or subscription does not matter: the key is (org_id, id).
    EXPECT_EQ(accept(*j, unfinished("evt-a", 1, type_name(3), "{\"x\":1}", 6), did),
              Admit::kDuplicate);
    EXPECT_EQ(j->last_seq(), static_cast<std::uint64_t>(first)) << "a duplicate takes no did";
    accept_ok(*j, unfinished("evt-a", 2, type_name(1), "{}", 5));  // another organisation
    // check_id = false (an id the engine generated): never a duplicate...
    accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), /*check_id=*/false);
    accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), /*check_id=*/false);
    // ...and not remembered either.
    accept_ok(*j, unfinished("evt-b", 1, type_name(1), "{}", 5), /*check_id=*/false);
    accept_ok(*j, unfinished("evt-b", 1, type_name(1), "{}", 5));
    EXPECT_EQ(accept_id(*j, 1, "evt-b"), Admit::kDuplicate);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(accept_id(*j, 1, "evt-a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 2, "evt-a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "evt-b"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 3, "evt-a"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "evt-c"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "evt-a", /*check_id=*/false), Admit::kAccepted);
}

TEST_F(JournalTest, WithoutAnIdempotencyWindowNothingIsADuplicate) {
  DurabilityOptions o = options();
  o.idempotency_ms = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
    EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
}

TEST_F(JournalTest, TheIdCapForgetsTheOldestFirst) {
  DurabilityOptions o = options();
  o.max_ids = 2;
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  // Remembered: the last two ids accepted.
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kAccepted);  // {b, c}
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kAccepted);  // a was the oldest: {c, a}
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kAccepted);  // {a, b}
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kAccepted);  // {b, c}
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kDuplicate);
  j->stop();
}

// --- 3. a torn log tail ------------------------------------------------------------------------

std::uint64_t le64(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  }
  return v;
}

// Keeps the indexer out of the database (it waits in before_index) until released: the database
// stays as it was and the log alone holds what is committed meanwhile.
class IndexHold {
 public:
  std::function<void()> callback() {
    return [this] {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return released_; });
    };
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};
struct ReleaseOnExit {
  IndexHold& hold;
  ~ReleaseOnExit() { hold.release(); }
};

// Batch 1 in the database (a clean close); batches 2..4 committed one frame each (the writer
// held in on_commit while the next is appended) while the indexer is held, so that the log alone
// holds them; the files copied as a crash would leave them. Then restarts on the log's segment
// cut all along the last frame (every 16th byte and every header field's edge; every byte on
// request), at every frame boundary ±1 of the whole segment, and with one byte flipped in each
// part of the last frame and in the first frame of the segment. Each restart must open and
// recover the state after a whole batch: the last one whose frame is intact, bodies byte-exact,
// with the idempotency keys and the next did of that same batch.
//
// Log format (engine/journal_log.h): a one-page segment header, then frames of a 48-byte header
// (offset 8: the payload's size, little-endian) and the payload, each starting on a page; a frame
// counts only when whole, in sequence and matching its checksum.
TEST_F(JournalTest, TornLogTailRecoversWholeBatchesOnly) {
  constexpr int kBatches = 4;
  DurabilityOptions o = options();
  const fs::path dir = o.dir;
  State state;                                               // expected, as batches are appended
  std::vector<State> states(kBatches + 1);                   // after batch k
  std::vector<std::uint64_t> last_did(kBatches + 1, 0);      // the last did of batch k
  std::vector<std::pair<std::int64_t, std::string>> probes;  // (org, id) of each batch's first
  std::vector<std::int64_t> previous;                        // the previous batch's dids

  // Batch k: attempts on the previous batch's deliveries (a retry scheduled; delivered; none),
  // then three new deliveries, one with a body of several kilobytes.
  auto append_batch = [&](Journal& j, int k) {
    for (std::size_t i = 0; i < previous.size(); ++i) {
      const std::int64_t did = previous[i];
      if (i == 0) {
        j.attempt(did, 1, 503, Failure::kNone, 900, kFuture + did, std::nullopt);
        state.at(did).attempts = 1;
        state.at(did).next_attempt_unix_ms = kFuture + did;
      } else if (i == 1) {
        j.attempt(did, 1, 200, Failure::kNone, 800, 0, OutcomeKind::kDelivered);
        state.erase(did);
      }
    }
    previous.clear();
    constexpr std::size_t kSizes[] = {150, 5000, 1200};
    for (int i = 0; i < 3; ++i) {
      Unfinished u = unfinished(
          "torn-" + std::to_string(k) + "-" + std::to_string(i), 10 + i,
          type_name(static_cast<std::size_t>(k + i)),
          bytes_of(kSizes[i] + static_cast<std::size_t>(k), static_cast<std::uint32_t>(10 * k + i)),
          500 + i);
      const std::int64_t did = accept_ok(j, u);
      if (i == 0) probes.emplace_back(u.org_id, u.event_id);
      previous.push_back(did);
      state.emplace(did, std::move(u));
    }
    last_did[static_cast<std::size_t>(k)] = static_cast<std::uint64_t>(previous.back());
    states[static_cast<std::size_t>(k)] = state;
  };

  // Batch 1, then a clean close: copied into journal.db, the log removed.
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    append_batch(*j, 1);
    ASSERT_TRUE(wait_durable(*j, static_cast<std::int64_t>(last_did[1])));
    j->stop();
  }

  CommitGate gate(/*hold_ok=*/true, /*hold_failed=*/false);
  o.on_commit = gate.callback();
  IndexHold hold;
  o.before_index = hold.callback();
  std::string db_copy, wal_copy, segment_copy, segment_name;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    OpenOnExit unblock{gate};
    ReleaseOnExit unhold{hold};
    const State reopened = as_state(j->take_recovered());
    EXPECT_TRUE(same(states[1], reopened)) << describe(reopened);
    for (int k = 2; k <= kBatches; ++k) {
      const auto ku = static_cast<std::size_t>(k);
      append_batch(*j, k);
      if (k == 2) {
        j->start();
      } else {
        gate.release();
      }
      ASSERT_TRUE(gate.wait_calls(ku - 1)) << "batch " << k << " was not committed";
      const CommitGate::Call call = gate.last_call();
      EXPECT_TRUE(call.ok);
      EXPECT_EQ(call.first, last_did[ku] - 2) << "batch " << k << " was not one group";
      EXPECT_EQ(call.last, last_did[ku]);
      EXPECT_EQ(j->durable_seq(), last_did[ku]);
    }
    EXPECT_EQ(j->stats().indexed, 0U) << "the indexer was held";
    db_copy = read_file(dir / "journal.db");
    wal_copy = read_file(dir / "journal.db-wal");
    std::vector<fs::path> segments;
    for (const auto& e : fs::directory_iterator(dir / "journal-log")) segments.push_back(e.path());
    ASSERT_EQ(segments.size(), 1U) << "one segment holds batches 2..4";
    segment_name = segments[0].filename().string();
    segment_copy = read_file(segments[0]);
  }

  // The frames: batch k is frame k-1 of the segment, after the segment's header page; each
  // starts on a page and ends in zeros to the next one.
  const std::string_view seg = segment_copy;
  constexpr std::size_t kHeader = 48, kPage = JournalLog::kPage;
  std::vector<std::size_t> frame_start(kBatches + 1, 0), frame_end(kBatches + 1, 0);
  std::size_t at = kPage;
  for (std::size_t k = 2; k <= kBatches; ++k) {
    ASSERT_LE(at + kHeader, seg.size()) << "batch " << k;
    frame_start[k] = at;
    frame_end[k] = at + kHeader + static_cast<std::size_t>(le64(seg, at + 8));
    at = (frame_end[k] + kPage - 1) / kPage * kPage;
  }
  ASSERT_EQ(at, seg.size()) << "the segment holds exactly three frames";
  // With the segment valid up to `end` (bytes), the last batch whose frame is in it.
  auto batch_at = [&](std::size_t end) {
    std::size_t b = 1;
    for (std::size_t k = 2; k <= kBatches; ++k) {
      if (frame_end[k] <= end) b = k;
    }
    return b;
  };

  const fs::path trial_dir = dir_.path() / "restart";
  std::size_t trials = 0, failures = 0;
  auto check = [&](std::string_view cut, std::size_t valid_end, const std::string& what) {
    ++trials;
    const Restart r = restart_on(trial_dir, db_copy, wal_copy, segment_name, cut, probes);
    const std::size_t b = batch_at(valid_end);
    std::vector<bool> duplicate;
    for (std::size_t k = 1; k <= kBatches; ++k) duplicate.push_back(k <= b);
    if (r.opened && same(states[b], r.state) && r.durable == last_did[b] &&
        r.duplicate == duplicate) {
      return;
    }
    if (++failures > 5) return;  // enough to diagnose
    std::string matches = "none";
    for (std::size_t k = 1; k <= kBatches; ++k) {
      if (same(states[k], r.state)) matches = "the state after batch " + std::to_string(k);
    }
    ADD_FAILURE() << what << ": expected the state after batch " << b
                  << (r.opened ? "" : "; open failed: " + r.error) << "; recovered matches "
                  << matches << ", durable_seq " << r.durable << " (expected " << last_did[b]
                  << ")\nexpected:\n"
                  << describe(states[b]) << "recovered:\n"
                  << describe(r.state);
  };

  // Every cut along the last frame and its padding: every 16th byte, each header field's edges
  // ±1, and every frame boundary ±1 of the segment; and cuts in the segment's header. Every
  // single byte (FANOUT_JOURNAL_TEST_EVERY_BYTE=1) is ~6,500 restarts.
  const char* every_byte = std::getenv("FANOUT_JOURNAL_TEST_EVERY_BYTE");
  const std::size_t stride = every_byte != nullptr && std::string_view(every_byte) == "1" ? 1 : 16;
  const std::size_t tail_from = frame_start[kBatches];
  std::set<std::size_t> cuts;
  for (std::size_t t = tail_from; t <= seg.size(); t += stride) cuts.insert(t);
  for (std::size_t field : {0U, 4U, 8U, 16U, 24U, 32U, 40U, 48U}) {
    for (std::size_t d : {0U, 1U}) {
      cuts.insert(tail_from + field + d);
      if (field + d > 0) cuts.insert(tail_from + field - d);
    }
  }
  for (std::size_t t : {0U, 1U, 8U, 31U, 32U, 4095U}) cuts.insert(t);
  for (std::size_t k = 2; k <= kBatches; ++k) {
    for (std::size_t edge : {frame_start[k], frame_end[k]}) {
      cuts.insert(edge - 1);
      cuts.insert(edge);
      if (edge < seg.size()) cuts.insert(edge + 1);
    }
  }
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t t : cuts) {
    if (t > seg.size()) continue;
    if (t >= tail_from) {
      const std::size_t b = batch_at(t);
      EXPECT_TRUE(b == kBatches - 1 || b == kBatches) << t;
    }
    check(seg.substr(0, t), t, "segment cut at " + std::to_string(t));
  }
  // One byte flipped in each header field of the last frame, in its records, in its bytes (the
  // body), in the first frame and in the segment's header (its first frame number, its seed,
  // its checksum): the log ends before the flipped frame, or before the segment. A flipped byte
  // of the padding after the last frame changes nothing.
  for (std::size_t pos :
       {tail_from, tail_from + 4, tail_from + 8, tail_from + 16, tail_from + 24, tail_from + 32,
        tail_from + 40, tail_from + kHeader + 3, (tail_from + frame_end[kBatches]) / 2,
        frame_end[kBatches] - 1, frame_start[2] + 10, std::size_t{0}, std::size_t{8},
        std::size_t{16}, std::size_t{24}, seg.size() - 1}) {
    std::string flipped(seg);
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x01);
    const std::size_t valid_end = pos < frame_start[2]        ? 0
                                  : pos < tail_from           ? frame_start[2]
                                  : pos < frame_end[kBatches] ? tail_from
                                                              : seg.size();
    check(flipped, valid_end, "byte " + std::to_string(pos) + " flipped");
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  std::printf(
      "torn tail: segment %zu bytes (batch 4: bytes %zu..%zu), %zu restarts (stride %zu), %lld "
      "ms\n",
      seg.size(), tail_from, seg.size(), trials, stride, static_cast<long long>(ms));
  EXPECT_EQ(failures, 0U);
}

// --- 6. a failed commit -------------------------------------------------------------------------

TEST_F(JournalTest, AFailedCommitLosesItsBatchAndAnswersFailingUntilACommitSucceeds) {
  DurabilityOptions o = options();
  std::int64_t kept = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    kept = accept_ok(*j, unfinished("keep", 1, type_name(0), "{\"k\":1}", 4));
    ASSERT_TRUE(wait_durable(*j, kept));
    j->stop();
  }
  std::atomic<int> fail_next{0};
  o.fail_commit = [&fail_next] { return fail_next.exchange(0) > 0; };
  CommitGate gate(/*hold_ok=*/false, /*hold_failed=*/true);
  o.on_commit = gate.callback();
  std::int64_t again1 = 0, again2 = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    OpenOnExit unblock{gate};
    const State before = as_state(j->take_recovered());
    ASSERT_EQ(before.size(), 1U);
    EXPECT_EQ(before.begin()->first, kept);
    // Appended before the writer runs: its first commit holds all three, and fails.
    fail_next = 1;
    const Unfinished lost1 = unfinished("lost-1", 1, type_name(0), "{\"l\":1}", 4);
    const Unfinished lost2 = unfinished("lost-2", 1, type_name(0), "{\"l\":2}", 4);
    const std::int64_t l1 = accept_ok(*j, lost1);
    accept_ok(*j, lost2);
    const std::int64_t l3 = accept_ok(*j, unfinished("lost-3", 2, type_name(0), "{}", 4), false);
    j->start();
    ASSERT_TRUE(gate.wait_calls(1));
    const CommitGate::Call failed = gate.call(0);
    EXPECT_FALSE(failed.ok);
    EXPECT_EQ(failed.first, static_cast<std::uint64_t>(l1));
    EXPECT_EQ(failed.last, static_cast<std::uint64_t>(l3));
    // The writer is held inside on_commit: nothing can have succeeded since.
    EXPECT_EQ(accept_id(*j, 1, "another"), Admit::kFailing);
    EXPECT_EQ(accept_id(*j, 1, "keep"), Admit::kFailing);
    EXPECT_EQ(accept_id(*j, 1, "x", /*check_id=*/false), Admit::kFailing);
    EXPECT_EQ(j->last_seq(), static_cast<std::uint64_t>(l3)) << "kFailing takes no did";
    EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(kept));
    EXPECT_EQ(j->stats().commit_failures, 1U);
    gate.release();
    // The writer tries again by itself when idle; until that commit succeeds: kFailing.
    Admit admit = Admit::kFailing;
    ASSERT_TRUE(wait_until([&] {
      admit = accept(*j, lost1, again1);
      return admit != Admit::kFailing;
    })) << "the journal kept answering kFailing";
    EXPECT_EQ(admit, Admit::kAccepted) << "the lost batch's ids must be forgotten";
    EXPECT_GT(again1, l3);
    again2 = accept_ok(*j, lost2);
    EXPECT_EQ(accept_id(*j, 1, "keep"), Admit::kDuplicate) << "committed ids stay";
    ASSERT_TRUE(wait_durable(*j, again2));
    ASSERT_TRUE(wait_until([&] {
      for (const auto& c : gate.calls()) {
        if (c.ok && c.last >= static_cast<std::uint64_t>(again2)) return true;
      }
      return false;
    })) << "no successful on_commit for the deliveries accepted again";
    EXPECT_EQ(j->stats().commit_failures, 1U);
    j->stop();
  }
  o.fail_commit = nullptr;
  o.on_commit = nullptr;
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  const State after = as_state(j->take_recovered());
  std::set<std::int64_t> dids;
  for (const auto& [did, u] : after) dids.insert(did);
  EXPECT_EQ(dids, (std::set<std::int64_t>{kept, again1, again2})) << describe(after);
}

}  // namespace
}  // namespace fanout::engine
