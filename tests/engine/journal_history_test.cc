// The journal's history (engine/journal_history.cc): listing, filtering, finding and recovering
// deliveries, and the purge of final deliveries past the history window.
#include <gtest/gtest.h>

#include "tests/engine/journal_fixture.h"

namespace fanout::engine {
namespace {

using namespace journal_testing;  // the fixture and its helpers (journal_fixture.h)

// --- 5. history ---------------------------------------------------------------------------------

struct WantAttempt {
  std::uint32_t n;
  int status;
  std::string failure;
  std::uint32_t duration_us;
};
struct Want {
  std::string id;
  std::optional<OutcomeKind> outcome;
  std::uint32_t made;
  std::int64_t next;
  bool resent;
  std::vector<WantAttempt> attempts;
};

TEST_F(JournalTest, HistoryListsFiltersFindsAndRecoversDeliveries) {
  const DurabilityOptions o = options();  // history kept a week
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  constexpr std::int64_t kSub = 77, kOther = 88;
  // Another subscription is another organisation's (idempotency keys on (org_id, id)).
  auto event = [&](const std::string& id, std::int64_t sub) {
    return unfinished(id, sub == kSub ? 7 : 8, type_name(1),
                      R"({"type":"business_updated","payload":{"id":")" + id + R"("}})", sub);
  };
  const std::int64_t t0 = wall_ms();
  const std::int64_t d1 = accept_ok(*j, event("e1", kSub));
  const std::int64_t d2 = accept_ok(*j, event("e2", kSub));
  const std::int64_t d3 = accept_ok(*j, event("e3", kSub));
  const std::int64_t d4 = accept_ok(*j, event("e4", kSub));
  const std::int64_t d5 = accept_ok(*j, event("e5", kSub));
  accept_ok(*j, event("e6", kSub));
  const std::int64_t d7 = accept_ok(*j, event("e8", kSub));
  const std::int64_t d9 = accept_ok(*j, event("e1", kOther));  // same id, another subscription
  j->attempt(d1, 1, 503, Failure::kNone, 1200, kFuture, std::nullopt);
  j->attempt(d1, 2, 200, Failure::kNone, 800, 0, OutcomeKind::kDelivered);
  j->attempt(d2, 1, 0, Failure::kConnectRefused, 50, kFuture + 2, std::nullopt);
  j->attempt(d3, 1, 500, Failure::kNone, 700, kFuture, std::nullopt);
  j->attempt(d3, 2, 0, Failure::kResponseTimeout, 10'000'000, 0, OutcomeKind::kExhausted);
  j->final(d4, OutcomeKind::kDropped, 0);
  j->attempt(d5, 1, 404, Failure::kNone, 300, 0, OutcomeKind::kRejected);
  j->attempt(d7, 1, 503, Failure::kNone, 100, 0, OutcomeKind::kExhausted);
  j->attempt(d9, 1, 503, Failure::kNone, 100, 0, OutcomeKind::kExhausted);
  // d7 sent again: a new delivery of the same event, not an idempotency duplicate.
  const std::int64_t d8 = accept_ok(*j, event("e8", kSub), /*check_id=*/false, /*resend_of=*/d7);
  ASSERT_TRUE(wait_records(*j, 9 + 9));  // 9 accepted, 9 attempts and finals
  const std::int64_t t1 = wall_ms();

  const std::string timeout(transport::to_string(Failure::kResponseTimeout));
  const std::string refused(transport::to_string(Failure::kConnectRefused));
  const std::vector<Want> all = {
      {"e8", std::nullopt, 0, 0, true, {}},
      {"e8", OutcomeKind::kExhausted, 1, 0, false, {{1, 503, "", 100}}},
      {"e6", std::nullopt, 0, 0, false, {}},
      {"e5", OutcomeKind::kRejected, 1, 0, false, {{1, 404, "", 300}}},
      {"e4", OutcomeKind::kDropped, 0, 0, false, {}},
      {"e3",
       OutcomeKind::kExhausted,
       2,
       0,
       false,
       {{1, 500, "", 700}, {2, 0, timeout, 10'000'000}}},
      {"e2", std::nullopt, 1, kFuture + 2, false, {{1, 0, refused, 50}}},
      {"e1", OutcomeKind::kDelivered, 2, 0, false, {{1, 503, "", 1200}, {2, 200, "", 800}}},
  };
  auto check_items = [&](const std::vector<DeliveryRecord>& items, std::vector<Want> want,
                         const std::string& what) {
    ASSERT_EQ(items.size(), want.size()) << what;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const DeliveryRecord& d = items[i];
      const Want& w = want[i];
      SCOPED_TRACE(what + ", item " + std::to_string(i) + " (" + w.id + ")");
      EXPECT_EQ(d.event_id, w.id);
      EXPECT_EQ(d.event_type, type_name(1));
      EXPECT_EQ(d.outcome, w.outcome);
      EXPECT_EQ(d.attempts_made, w.made);
      EXPECT_EQ(d.next_attempt_unix_ms, w.next);
      EXPECT_EQ(d.resent, w.resent);
      EXPECT_GE(d.created_unix_ms, t0);
      EXPECT_LE(d.created_unix_ms, t1);
      if (w.outcome) {
        EXPECT_GE(d.finished_unix_ms, t0);
        EXPECT_LE(d.finished_unix_ms, t1);
      } else {
        EXPECT_EQ(d.finished_unix_ms, 0);
      }
      ASSERT_EQ(d.attempts.size(), w.attempts.size());
      for (std::size_t a = 0; a < w.attempts.size(); ++a) {
        EXPECT_EQ(d.attempts[a].n, w.attempts[a].n);
        EXPECT_EQ(d.attempts[a].status, w.attempts[a].status);
        EXPECT_EQ(d.attempts[a].failure, w.attempts[a].failure);
        EXPECT_EQ(d.attempts[a].duration_us, w.attempts[a].duration_us);
        EXPECT_GE(d.attempts[a].at_unix_ms, t0);
        EXPECT_LE(d.attempts[a].at_unix_ms, t1);
      }
    }
  };

  // Everything, newest first, then page by page.
  auto page = j->deliveries(kSub, "", 0, 100);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 8);
  check_items(page->items, all, "all");
  for (std::int64_t offset = 0; offset < 8; offset += 3) {
    auto p = j->deliveries(kSub, "", offset, 3);
    ASSERT_TRUE(p.has_value()) << p.error();
    EXPECT_EQ(p->count, 8) << "count is over all pages";
    const auto from = all.begin() + offset;
    check_items(p->items, std::vector<Want>(from, std::min(from + 3, all.end())),
                "page at " + std::to_string(offset));
  }
  // By outcome.
  auto pick = [&](std::initializer_list<std::size_t> at) {
    std::vector<Want> v;
    for (std::size_t i : at) v.push_back(all[i]);
    return v;
  };
  const std::pair<std::string, std::vector<Want>> filters[] = {
      {"pending", pick({0, 2, 6})}, {"delivered", pick({7})}, {"exhausted", pick({1, 5})},
      {"rejected", pick({3})},      {"dropped", pick({4})},
  };
  for (const auto& [outcome, want] : filters) {
    auto p = j->deliveries(kSub, outcome, 0, 100);
    ASSERT_TRUE(p.has_value()) << outcome << ": " << p.error();
    EXPECT_EQ(p->count, static_cast<std::int64_t>(want.size())) << outcome;
    check_items(p->items, want, outcome);
  }
  auto first_page = j->deliveries(kSub, "pending", 0, 1);
  ASSERT_TRUE(first_page.has_value());
  EXPECT_EQ(first_page->count, 3);
  EXPECT_EQ(first_page->items.size(), 1U);
  EXPECT_FALSE(j->deliveries(kSub, "bogus", 0, 10).has_value());
  auto other = j->deliveries(kOther, "", 0, 100);
  ASSERT_TRUE(other.has_value());
  check_items(other->items, {{"e1", OutcomeKind::kExhausted, 1, 0, false, {{1, 503, "", 100}}}},
              "the other subscription");

  // Exhausted since a time, not sent again (d7 has a resend: only d3).
  for (std::int64_t since : {std::int64_t{0}, t0}) {
    auto ex = j->exhausted_since(kSub, since);
    ASSERT_TRUE(ex.has_value()) << ex.error();
    ASSERT_EQ(ex->size(), 1U) << since;
    EXPECT_EQ((*ex)[0].did, d3);
    EXPECT_TRUE(same((*ex)[0].u, event("e3", kSub)));
  }
  auto none = j->exhausted_since(kSub, t1 + 3'600'000);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  auto ex_other = j->exhausted_since(kOther, 0);
  ASSERT_TRUE(ex_other.has_value());
  ASSERT_EQ(ex_other->size(), 1U);
  EXPECT_EQ((*ex_other)[0].did, d9);

  // The newest delivery of an event.
  std::int64_t did = 0;
  auto found = j->find(kSub, "e8", did);
  ASSERT_TRUE(found.has_value()) << found.error();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(did, d8);
  EXPECT_TRUE(same(**found, event("e8", kSub)));
  // Final ones too, body and all (in its own row when the indexer copied it already final).
  found = j->find(kSub, "e3", did);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ(did, d3);
  EXPECT_TRUE(same(**found, event("e3", kSub)));
  found = j->find(kOther, "e1", did);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ(did, d9);
  EXPECT_TRUE(same(**found, event("e1", kOther)));
  found = j->find(kSub, "nope", did);
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  found = j->find(kOther, "e3", did);
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  j->stop();
}

// Notes recorded in one call (a worker's loop iteration: Journal::record) are the history that
// the same attempts and drops recorded one by one make: in order, with the times given.
TEST_F(JournalTest, NotesRecordedTogetherAreTheHistory) {
  auto j = open(options());
  ASSERT_NE(j, nullptr);
  j->start();
  constexpr std::int64_t kSub = 5;
  auto event = [&](const std::string& id) {
    return unfinished(id, 9, type_name(1), R"({"type":"x","payload":{}})", kSub);
  };
  const std::int64_t d1 = accept_ok(*j, event("n1"));
  const std::int64_t d2 = accept_ok(*j, event("n2"));
  const std::int64_t d3 = accept_ok(*j, event("n3"));
  const std::int64_t t = wall_ms();
  std::vector<Journal::Note> notes;
  notes.push_back({d1, t, kFuture, 1, 503, 1200, Failure::kNone, true, std::nullopt});
  notes.push_back({d2, t + 1, kFuture + 7, 1, 0, 40, Failure::kConnectRefused, true, std::nullopt});
  notes.push_back({d1, t + 2, 0, 2, 200, 800, Failure::kNone, true, OutcomeKind::kDelivered});
  notes.push_back(Journal::Note::final_only(d3, t + 3, OutcomeKind::kDropped, 0));
  j->record(notes);
  ASSERT_TRUE(wait_records(*j, 3 + 4));
  auto page = j->deliveries(kSub, "", 0, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  ASSERT_EQ(page->items.size(), 3U);
  const DeliveryRecord& n3 = page->items[0];
  const DeliveryRecord& n2 = page->items[1];
  const DeliveryRecord& n1 = page->items[2];
  EXPECT_EQ(n3.outcome, OutcomeKind::kDropped);
  EXPECT_EQ(n3.finished_unix_ms, t + 3);
  EXPECT_TRUE(n3.attempts.empty());
  EXPECT_EQ(n2.outcome, std::nullopt);
  EXPECT_EQ(n2.next_attempt_unix_ms, kFuture + 7);
  ASSERT_EQ(n2.attempts.size(), 1U);
  EXPECT_EQ(n2.attempts[0].failure, transport::to_string(Failure::kConnectRefused));
  EXPECT_EQ(n2.attempts[0].at_unix_ms, t + 1);
  EXPECT_EQ(n1.outcome, OutcomeKind::kDelivered);
  EXPECT_EQ(n1.attempts_made, 2U);
  EXPECT_EQ(n1.finished_unix_ms, t + 2);
  ASSERT_EQ(n1.attempts.size(), 2U);
  EXPECT_EQ(n1.attempts[0].status, 503);
  EXPECT_EQ(n1.attempts[0].at_unix_ms, t);
  EXPECT_EQ(n1.attempts[1].status, 200);
  EXPECT_EQ(n1.attempts[1].duration_us, 800U);
  j->stop();
}

// --- 7. purge -----------------------------------------------------------------------------------

TEST_F(JournalTest, PurgeRemovesFinalDeliveriesPastTheHistoryWindow) {
  DurabilityOptions o = options();
  o.history_ms = 1;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    const std::int64_t a = accept_ok(*j, unfinished("purge-a", 1, type_name(0), "{}", 5));
    const std::int64_t b = accept_ok(*j, unfinished("purge-b", 1, type_name(0), "{}", 5));
    const std::int64_t c = accept_ok(*j, unfinished("purge-c", 1, type_name(0), "{}", 5));
    ASSERT_TRUE(wait_durable(*j, c));
    j->attempt(a, 1, 200, Failure::kNone, 100, 0, OutcomeKind::kDelivered);
    j->final(b, OutcomeKind::kDropped, 0);
    ASSERT_TRUE(wait_records(*j, 5));
    // The writer purges at most once a second (an idle writer commits for it).
    DeliveryPage page;
    std::string error;
    ASSERT_TRUE(wait_until([&] {
      auto p = j->deliveries(5, "", 0, 10);
      if (!p) {
        error = p.error();
        return true;
      }
      page = std::move(*p);
      return page.count <= 1;
    })) << "final deliveries were not purged; count "
        << page.count;
    ASSERT_TRUE(error.empty()) << error;
    EXPECT_EQ(page.count, 1);
    ASSERT_EQ(page.items.size(), 1U);
    EXPECT_EQ(page.items[0].event_id, "purge-c");
    EXPECT_FALSE(page.items[0].outcome.has_value());
    for (const char* outcome : {"delivered", "dropped"}) {
      auto p = j->deliveries(5, outcome, 0, 10);
      ASSERT_TRUE(p.has_value());
      EXPECT_EQ(p->count, 0) << outcome;
    }
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  const State after = as_state(j->take_recovered());
  ASSERT_EQ(after.size(), 1U);
  EXPECT_EQ(after.begin()->second.event_id, "purge-c");
}

}  // namespace
}  // namespace fanout::engine
