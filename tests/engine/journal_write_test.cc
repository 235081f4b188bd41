// engine/journal_write.cc on its own: one batch's records as rows (write_records), on a journal's
// database made by Journal::open and then closed, with the writer's own statements. A delivery
// accepted and finished in the batch is one final row holding every attempt's log line and its
// body; one still pending is a pending row (its body in bodies) that its attempts update; one
// accepted in an earlier batch is updated. Whether the batch's dids run without a gap (the place of
// a did is its distance from the first) or not (found by binary search, sorted first), the rows are
// the same.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/journal.h"
#include "engine/journal_rows.h"
#include "engine/sqlite.h"
#include "routing/catalogue.h"
#include "tests/support/temp_dir.h"

namespace fanout::engine {
namespace {

using Kind = Journal::Record::Kind;

// A delivery's row as read back: attempts, outcome (-1 while pending), its log, its body, and
// whether that body is in the row itself (else in the bodies table).
struct Row {
  std::int64_t attempts = 0;
  std::int64_t outcome = -1;
  std::string log;
  std::string body;
  bool inline_body = false;
  bool operator==(const Row&) const = default;
};

void PrintTo(const Row& r, std::ostream* os) {
  *os << "{attempts " << r.attempts << ", outcome " << r.outcome << ", log \"" << r.log
      << "\", body \"" << r.body << "\"" << (r.inline_body ? " in its row" : " in bodies") << "}";
}

class JournalWriteTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    options_.dir = (dir_.path() / "journal").string();
    {
      // Made (with its schema) and closed: only this test writes to it.
      auto j = Journal::open(options_, catalogue_);
      ASSERT_TRUE(j.has_value()) << j.error();
    }
    const std::string file = (dir_.path() / "journal" / "journal.db").string();
    ASSERT_EQ(sqlite3_open(file.c_str(), &db_), SQLITE_OK);
    auto w = Journal::Writer::make(db_);
    ASSERT_TRUE(w.has_value()) << w.error();
    writer_ = std::move(*w);
  }

  void TearDown() override {
    writer_.reset();  // its statements before the connection
    sqlite3_close(db_);
  }

  void accept(std::int64_t did) {
    Journal::Record r;
    r.kind = Kind::kAccept;
    r.did = did;
    r.org_id = 7;
    r.subscription_id = 3;
    r.time_ms = 1000;
    r.offset = batch_.bytes.size();
    const std::string id = "e" + std::to_string(did);
    const std::string body = "{\"n\":" + std::to_string(did) + "}";
    const std::string type = "business_updated";
    r.id_size = static_cast<std::uint32_t>(id.size());
    r.body_size = static_cast<std::uint32_t>(body.size());
    r.type_size = static_cast<std::uint32_t>(type.size());
    batch_.bytes += id + body + type;
    batch_.records.push_back(r);
  }

  void attempt(std::int64_t did, std::uint32_t n, int status, bool last) {
    Journal::Record r;
    r.kind = Kind::kAttempt;
    r.did = did;
    r.n = n;
    r.status = status;
    r.duration_us = 250 * n;
    r.time_ms = 1000 + n;
    r.next_ms = last ? 0 : 5000;
    r.has_outcome = last;
    r.outcome = status == 200 ? OutcomeKind::kDelivered : OutcomeKind::kExhausted;
    batch_.records.push_back(r);
  }

  void write() {
    ASSERT_EQ(sqlite3_exec(db_, "BEGIN", nullptr, nullptr, nullptr), SQLITE_OK);
    auto ok = journal_detail::write_records(*writer_, batch_, options_);
    ASSERT_TRUE(ok.has_value()) << ok.error();
    ASSERT_EQ(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
    batch_.clear();
  }

  std::map<std::int64_t, Row> rows() {
    auto s = sqlite::Statement::prepare(
        db_,
        "SELECT d.did, d.attempts, coalesce(d.outcome, -1), d.log, coalesce(d.body, b.body), "
        "d.body IS NOT NULL, b.body IS NOT NULL FROM deliveries d LEFT JOIN bodies b "
        "ON b.did = d.did ORDER BY d.did",
        "reading the rows");
    EXPECT_TRUE(s.has_value());
    std::map<std::int64_t, Row> out;
    while (s) {
      auto more = s->step();
      EXPECT_TRUE(more.has_value());
      if (!more || !*more) break;
      EXPECT_NE(s->int64(5), s->int64(6))
          << "delivery " << s->int64(0) << ": its body in exactly one place";
      out[s->int64(0)] = Row{s->int64(1), s->int64(2), std::string(s->text(3)),
                             std::string(s->blob(4)), s->int64(5) != 0};
    }
    return out;
  }

  // Two batches: an earlier one accepting 1, then one accepting `dids` (in that order), where
  // the first of them and 1 end, the second is retried, the third gets nothing more.
  void run(const std::vector<std::int64_t>& dids) {
    accept(1);
    write();
    for (const std::int64_t did : dids) accept(did);
    attempt(dids[0], 1, 503, false);
    attempt(1, 1, 200, true);
    attempt(dids[1], 1, 503, false);
    attempt(dids[0], 2, 200, true);
    write();
  }

  fanout::testing::TempDir dir_;
  routing::EventCatalogue catalogue_;
  DurabilityOptions options_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Journal::Writer> writer_;
  Journal::Batch batch_;
};

// What run() leaves for dids a, b, c. Only `a` was written final at once, its body in its row;
// 1 was pending when written, and finished by an update.
std::map<std::int64_t, Row> expected(std::int64_t a, std::int64_t b, std::int64_t c) {
  auto body = [](std::int64_t did) { return "{\"n\":" + std::to_string(did) + "}"; };
  const auto delivered = static_cast<std::int64_t>(OutcomeKind::kDelivered);
  return {{1, Row{1, delivered, "1 1001 200 250 \n", body(1), false}},
          {a, Row{2, delivered, "1 1001 503 250 \n2 1002 200 500 \n", body(a), true}},
          {b, Row{1, -1, "1 1001 503 250 \n", body(b), false}},
          {c, Row{0, -1, "", body(c), false}}};
}

TEST_F(JournalWriteTest, DidsWithoutAGap) {
  run({2, 3, 4});
  EXPECT_EQ(rows(), expected(2, 3, 4));
}

TEST_F(JournalWriteTest, DidsWithGapsOutOfOrder) {
  run({9, 4, 6});
  EXPECT_EQ(rows(), expected(9, 4, 6));
}

TEST_F(JournalWriteTest, WithoutHistoryAFinishedDeliveryLeavesNoRow) {
  options_.history_ms = 0;
  run({5, 2, 3});
  auto got = rows();
  EXPECT_EQ(got.count(5), 0U) << "accepted and finished in one batch";
  EXPECT_EQ(got.count(1), 0U) << "finished in a later batch";
  ASSERT_EQ(got.size(), 2U);
  EXPECT_EQ(got[2].attempts, 1);
  EXPECT_EQ(got[2].log, "") << "no log lines without history";
  EXPECT_EQ(got[3].attempts, 0);
}

}  // namespace
}  // namespace fanout::engine
