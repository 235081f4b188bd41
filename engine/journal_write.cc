// The journal's writes (journal_rows.h): one batch's records as SQL, and the purge.
#include <algorithm>
#include <charconv>

#include "engine/journal_rows.h"

namespace fanout::engine::journal_detail {

using sqlite::Statement;

void append_log_line(std::string& out, const Journal::Record& r) {
  // Four numbers of at most 20 characters and a space each: to_chars cannot run out of room.
  char buf[4 * 21];
  char* p = buf;
  char* const end = buf + sizeof buf;
  const auto number = [&p, end](auto v) {
    const auto [next, ec] = std::to_chars(p, end - 1, v);  // room kept for the space
    if (ec != std::errc()) return;
    p = next;
    *p++ = ' ';
  };
  number(r.n);
  number(r.time_ms);
  number(r.status);
  number(r.duration_us);
  out.append(buf, p);
  if (r.failure != transport::Failure::kNone) out.append(transport::to_string(r.failure));
  out.push_back('\n');
}

namespace {

// Where delivery `did` is in `accepted` (sorted by did), or npos when it was not accepted in this
// batch. Every delivery accepted is in the log, so a batch's dids run without a gap, and the place
// is the distance from the first; by binary search should they not.
std::size_t find_accepted(const std::vector<Journal::Writer::Accepted>& accepted,
                          std::int64_t did) noexcept {
  if (accepted.empty()) return std::string::npos;
  const std::int64_t first = accepted.front().did;
  if (accepted.back().did - first + 1 == static_cast<std::int64_t>(accepted.size())) {
    return did >= first && did <= accepted.back().did ? static_cast<std::size_t>(did - first)
                                                      : std::string::npos;
  }
  const auto it = std::lower_bound(
      accepted.begin(), accepted.end(), did,
      [](const Journal::Writer::Accepted& a, std::int64_t d) { return a.did < d; });
  if (it == accepted.end() || it->did != did) return std::string::npos;
  return static_cast<std::size_t>(it - accepted.begin());
}

}  // namespace

tl::expected<void, std::string> write_records(Journal::Writer& w, const Journal::Batch& batch,
                                              const DurabilityOptions& o) {
  using Kind = Journal::Record::Kind;
  const bool keep_history = o.history_ms > 0;
  // A delivery accepted and finished within this batch is written once, already final with its
  // whole log (and, without history, not at all). dids are given in accept order, so the
  // accepts come sorted; sorted here should they not.
  auto& accepted = w.accepted;
  accepted.clear();
  for (const auto& r : batch.records) {
    if (r.kind == Kind::kAccept) accepted.push_back({r.did, nullptr});
  }
  const auto by_did = [](const Journal::Writer::Accepted& a, const Journal::Writer::Accepted& b) {
    return a.did < b.did;
  };
  if (!std::is_sorted(accepted.begin(), accepted.end(), by_did)) {
    std::sort(accepted.begin(), accepted.end(), by_did);
  }
  for (const auto& r : batch.records) {
    if (r.kind == Kind::kAccept || !r.has_outcome) continue;
    if (const std::size_t i = find_accepted(accepted, r.did); i != std::string::npos) {
      accepted[i].fin = &r;
    }
  }
  if (keep_history) {
    if (w.logs.size() < accepted.size()) w.logs.resize(accepted.size());
    for (std::size_t i = 0; i < accepted.size(); ++i) {
      if (accepted[i].fin != nullptr) w.logs[i].clear();
    }
    for (const auto& r : batch.records) {
      if (r.kind != Kind::kAttempt) continue;
      const std::size_t i = find_accepted(accepted, r.did);
      if (i != std::string::npos && accepted[i].fin != nullptr) append_log_line(w.logs[i], r);
    }
  }
  const std::string_view bytes = batch.bytes;
  for (const auto& r : batch.records) {
    const std::size_t at = find_accepted(accepted, r.did);
    const Journal::Record* fin = at == std::string::npos ? nullptr : accepted[at].fin;
    if (r.kind == Kind::kAccept) {
      const std::string_view id = bytes.substr(r.offset, r.id_size);
      if (r.remember_id) {
        w.insert_id.reset();
        w.insert_id.bind(1, r.org_id);
        w.insert_id.bind_text(2, id);
        w.insert_id.bind(3, r.time_ms);
        if (auto ok = w.insert_id.run(); !ok) return ok;
      }
      if (fin != nullptr && !keep_history) continue;
      const std::string_view body = bytes.substr(r.offset + r.id_size, r.body_size);
      Statement& s = w.insert_delivery;
      s.reset();
      s.bind(1, r.did);
      s.bind_text(2, id);
      s.bind(3, r.org_id);
      s.bind_text(4, bytes.substr(r.offset + r.id_size + r.body_size, r.type_size));
      s.bind(5, r.subscription_id);
      s.bind(6, r.time_ms);
      if (r.resend_of != 0) {
        s.bind(7, r.resend_of);
      } else {
        s.bind_null(7);
      }
      if (fin != nullptr) {
        // Final already, never rewritten: its body in its own row (journal.cc).
        s.bind(8, static_cast<std::int64_t>(fin->n));
        s.bind(9, static_cast<std::int64_t>(fin->outcome));
        s.bind(10, fin->time_ms);
        s.bind_text(11, w.logs[at]);
        s.bind_blob(12, body.data(), body.size());
        ++w.final_rows;
        if (auto ok = s.run(); !ok) return ok;
        continue;
      }
      s.bind(8, std::int64_t{0});
      s.bind_null(9);
      s.bind_null(10);
      s.bind_text(11, {});
      s.bind_null(12);
      if (auto ok = s.run(); !ok) return ok;
      w.insert_body.reset();
      w.insert_body.bind(1, r.did);
      w.insert_body.bind_blob(2, body.data(), body.size());
      if (auto ok = w.insert_body.run(); !ok) return ok;
      continue;
    }
    if (fin != nullptr) continue;  // written whole with its accept
    w.line.clear();
    if (keep_history && r.kind == Kind::kAttempt) append_log_line(w.line, r);
    if (!r.has_outcome) {
      Statement& s = w.update_attempt;
      s.reset();
      s.bind(1, r.did);
      s.bind(2, static_cast<std::int64_t>(r.n));
      s.bind(3, r.next_ms);
      s.bind_text(4, w.line);
      if (auto ok = s.run(); !ok) return ok;
    } else if (keep_history) {
      Statement& s = w.finish;
      s.reset();
      s.bind(1, r.did);
      s.bind(2, static_cast<std::int64_t>(r.outcome));
      s.bind(3, static_cast<std::int64_t>(r.n));
      s.bind(4, r.time_ms);
      s.bind_text(5, w.line);
      if (auto ok = s.run(); !ok) return ok;
      w.final_rows += static_cast<std::uint64_t>(sqlite3_changes(w.db));
    } else {
      w.remove.reset();
      w.remove.bind(1, r.did);
      if (auto ok = w.remove.run(); !ok) return ok;
      w.remove_body.reset();
      w.remove_body.bind(1, r.did);
      if (auto ok = w.remove_body.run(); !ok) return ok;
    }
  }
  return {};
}

// The first did created at or after `cutoff_ms` (dids grow with created_ms), by binary search
// over did ranges; one past the last did when every row is older.
tl::expected<std::int64_t, std::string> first_did_since(sqlite3* db, std::int64_t cutoff_ms) {
  auto at = Statement::prepare(
      db, "SELECT did, created_ms FROM deliveries WHERE did >= ?1 ORDER BY did LIMIT 1",
      "journal: finding the history window");
  if (!at) return tl::unexpected(std::move(at.error()));
  auto bounds = Statement::prepare(db, "SELECT min(did), max(did) FROM deliveries",
                                   "journal: finding the history window");
  if (!bounds) return tl::unexpected(std::move(bounds.error()));
  auto row = bounds->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row || bounds->is_null(0)) return std::int64_t{0};
  std::int64_t lo = bounds->int64(0), hi = bounds->int64(1) + 1;  // answer in [lo, hi]
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    at->reset();
    at->bind(1, mid);
    auto r = at->step();
    if (!r) return tl::unexpected(std::move(r.error()));
    if (!*r) {
      hi = mid;  // nothing at or after mid
    } else if (at->int64(1) >= cutoff_ms) {
      hi = std::min(mid, at->int64(0));
    } else {
      lo = at->int64(0) + 1;
    }
  }
  return lo;
}

// Final deliveries past the history window or over the row cap, and event ids past the
// idempotency window, a chunk at a time.
tl::expected<void, std::string> purge(Journal::Writer& w, const DurabilityOptions& o,
                                      std::int64_t now) {
  auto exec = [&w](std::string_view sql, std::int64_t a, std::int64_t b,
                   const char* what) -> tl::expected<std::int64_t, std::string> {
    auto s = Statement::prepare(w.db, sql, what);
    if (!s) return tl::unexpected(std::move(s.error()));
    s->bind(1, a);
    s->bind(2, b);
    if (auto ok = s->run(); !ok) return tl::unexpected(std::move(ok.error()));
    return sqlite3_changes(w.db);
  };
  if (o.history_ms > 0) {
    auto cut = first_did_since(w.db, now - static_cast<std::int64_t>(o.history_ms));
    if (!cut) return tl::unexpected(std::move(cut.error()));
    // The same chunk from bodies, then from deliveries (one transaction: the same rows).
    constexpr std::string_view kOld =
        "did IN (SELECT did FROM deliveries WHERE did < ?1 AND outcome IS NOT NULL LIMIT ?2)";
    auto gone = exec("DELETE FROM bodies WHERE " + std::string(kOld), *cut, kPurgeChunk,
                     "journal: purging old bodies");
    if (!gone) return tl::unexpected(std::move(gone.error()));
    auto old = exec("DELETE FROM deliveries WHERE " + std::string(kOld), *cut, kPurgeChunk,
                    "journal: purging old deliveries");
    if (!old) return tl::unexpected(std::move(old.error()));
    w.final_rows -= std::min(w.final_rows, static_cast<std::uint64_t>(*old));
    if (w.final_rows > o.max_history_rows) {
      const auto over = static_cast<std::int64_t>(w.final_rows - o.max_history_rows);
      // ?2 is 1: exec() binds two parameters.
      constexpr std::string_view kOldest =
          "did IN (SELECT did FROM deliveries WHERE outcome IS NOT NULL ORDER BY did "
          "LIMIT ?1 * ?2)";
      gone = exec("DELETE FROM bodies WHERE " + std::string(kOldest), std::min(over, kPurgeChunk),
                  1, "journal: purging the oldest bodies");
      if (!gone) return tl::unexpected(std::move(gone.error()));
      auto capped = exec("DELETE FROM deliveries WHERE " + std::string(kOldest),
                         std::min(over, kPurgeChunk), 1, "journal: purging the oldest deliveries");
      if (!capped) return tl::unexpected(std::move(capped.error()));
      w.final_rows -= std::min(w.final_rows, static_cast<std::uint64_t>(*capped));
    }
  }
  if (o.idempotency_ms > 0) {
    auto e = exec(
        "DELETE FROM event_ids WHERE (org_id, event_id) IN (SELECT org_id, event_id FROM "
        "event_ids WHERE at_ms < ?1 LIMIT ?2)",
        now - static_cast<std::int64_t>(o.idempotency_ms), kPurgeChunk,
        "journal: purging old event ids");
    if (!e) return tl::unexpected(std::move(e.error()));
  } else {
    // Idempotency off: no id is kept (the condition holds for every row).
    auto e = exec("DELETE FROM event_ids WHERE at_ms > ?1 OR at_ms <= ?2", 0, 0,
                  "journal: clearing event ids");
    if (!e) return tl::unexpected(std::move(e.error()));
  }
  return {};
}

}  // namespace fanout::engine::journal_detail
