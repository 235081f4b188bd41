// The journal's readers (journal_rows.h): delivery history, and deliveries to send again.
#include <algorithm>
#include <charconv>

#include "engine/journal_rows.h"

namespace fanout::engine {

using sqlite::Statement;
using sqlite::Transaction;

namespace journal_detail {

std::vector<AttemptRecord> parse_log(std::string_view log) {
  std::vector<AttemptRecord> out;
  while (!log.empty()) {
    const std::size_t eol = log.find('\n');
    std::string_view line = log.substr(0, eol);
    log.remove_prefix(eol == std::string_view::npos ? log.size() : eol + 1);
    std::string_view f[4];
    std::size_t n = 0;
    while (n < 4 && !line.empty()) {
      const std::size_t sp = line.find(' ');
      if (sp == std::string_view::npos) break;
      f[n++] = line.substr(0, sp);
      line.remove_prefix(sp + 1);
    }
    if (n != 4) continue;
    AttemptRecord a;
    std::int64_t at = 0;
    bool ok = true;
    auto num = [&ok](std::string_view t, auto& v) {
      const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      ok = ok && ec == std::errc() && p == t.data() + t.size();
    };
    num(f[0], a.n);
    num(f[1], at);
    num(f[2], a.status);
    num(f[3], a.duration_us);
    if (!ok) continue;
    a.at_unix_ms = at;
    a.failure = std::string(line);  // the rest of the line
    out.push_back(std::move(a));
  }
  return out;
}

Journal::Recovered recovered_from_row(const Statement& s) {
  Journal::Recovered r;
  r.did = s.int64(0);
  r.u.event_id = s.text(1);
  r.u.org_id = s.int64(2);
  r.u.event_type = s.text(3);
  r.u.subscription_id = s.int64(4);
  r.u.body = s.blob(5);
  r.u.attempts = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s.int64(6), 0, 1000));
  r.u.next_attempt_unix_ms = s.int64(7);
  return r;
}

}  // namespace journal_detail

namespace {

std::optional<OutcomeKind> outcome_from_name(std::string_view name) {
  for (OutcomeKind k : {OutcomeKind::kDelivered, OutcomeKind::kRejected, OutcomeKind::kExhausted,
                        OutcomeKind::kDropped}) {
    if (to_string(k) == name) return k;
  }
  return std::nullopt;
}

}  // namespace

using journal_detail::kRecoveredColumns;
using journal_detail::parse_log;
using journal_detail::recovered_from_row;

tl::expected<DeliveryPage, std::string> Journal::deliveries(std::int64_t subscription_id,
                                                            std::string_view outcome,
                                                            std::int64_t offset,
                                                            std::int64_t limit) {
  catch_up_index();
  std::lock_guard lock(reader_mu_);
  std::string filter;
  std::int64_t kind = -1;
  if (outcome == "pending") {
    filter = " AND outcome IS NULL";
  } else if (!outcome.empty()) {
    const auto k = outcome_from_name(outcome);
    if (!k) return tl::unexpected("unknown outcome \"" + std::string(outcome) + "\"");
    kind = static_cast<std::int64_t>(*k);
    filter = " AND outcome = ?2";
  }
  auto tx = Transaction::begin(reader_, Transaction::Mode::kRead, "reading delivery history");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  DeliveryPage page;
  {
    auto s = Statement::prepare(
        reader_, "SELECT count(*) FROM deliveries WHERE subscription_id = ?1" + filter,
        "counting deliveries");
    if (!s) return tl::unexpected(std::move(s.error()));
    s->bind(1, subscription_id);
    if (kind >= 0) s->bind(2, kind);
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    page.count = *row ? s->int64(0) : 0;
  }
  auto s = Statement::prepare(
      reader_,
      "SELECT did, event_id, event_type, created_ms, outcome, finished_ms, attempts, next_ms, "
      "resend_of, log FROM deliveries WHERE subscription_id = ?1" +
          filter + " ORDER BY did DESC LIMIT ?3 OFFSET ?4",
      "reading deliveries");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  if (kind >= 0) s->bind(2, kind);
  s->bind(3, limit);
  s->bind(4, offset);
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    DeliveryRecord d;
    d.event_id = s->text(1);
    d.event_type = s->text(2);
    d.created_unix_ms = s->int64(3);
    if (!s->is_null(4)) {
      d.outcome = static_cast<OutcomeKind>(std::clamp<std::int64_t>(s->int64(4), 0, 3));
      d.finished_unix_ms = s->int64(5);
    } else {
      d.next_attempt_unix_ms = s->int64(7);
    }
    d.attempts_made = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s->int64(6), 0, 1000));
    d.resent = !s->is_null(8);
    d.attempts = parse_log(s->text(9));
    page.items.push_back(std::move(d));
  }
  return page;
}

tl::expected<std::optional<Unfinished>, std::string> Journal::find(std::int64_t subscription_id,
                                                                   std::string_view event_id,
                                                                   std::int64_t& did) {
  catch_up_index();
  std::lock_guard lock(reader_mu_);
  auto s = Statement::prepare(reader_,
                              "SELECT d.did, d.org_id, d.event_type, coalesce(d.body, b.body) FROM "
                              "deliveries d LEFT JOIN bodies b ON b.did = d.did WHERE "
                              "coalesce(d.body, b.body) IS NOT NULL AND d.subscription_id = ?1 AND "
                              "d.event_id = ?2 ORDER BY d.did DESC LIMIT 1",
                              "finding a delivery");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  s->bind_text(2, event_id);
  auto row = s->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row) return std::optional<Unfinished>();
  did = s->int64(0);
  Unfinished u;
  u.event_id = std::string(event_id);
  u.org_id = s->int64(1);
  u.event_type = s->text(2);
  u.body = s->blob(3);
  u.subscription_id = subscription_id;
  return std::optional<Unfinished>(std::move(u));
}

tl::expected<std::vector<Journal::Recovered>, std::string> Journal::exhausted_since(
    std::int64_t subscription_id, std::int64_t since_ms) {
  catch_up_index();
  std::lock_guard lock(reader_mu_);
  auto s = Statement::prepare(
      reader_,
      std::string(kRecoveredColumns) +
          "d.subscription_id = ?1 AND d.outcome = ?2 AND d.created_ms >= ?3 AND NOT EXISTS "
          "(SELECT 1 FROM deliveries r WHERE r.resend_of = d.did) ORDER BY d.did",
      "finding exhausted deliveries");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  s->bind(2, static_cast<std::int64_t>(OutcomeKind::kExhausted));
  s->bind(3, since_ms);
  std::vector<Recovered> out;
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    Recovered r = recovered_from_row(*s);
    r.u.attempts = 0;  // to be sent again from attempt 1
    r.u.next_attempt_unix_ms = 0;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace fanout::engine
