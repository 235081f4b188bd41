// The journal's commit path (journal.h): appending (accept, a worker's notes, holds), the
// idempotency window, and the log's writer thread (one frame, one fdatasync per group commit).
// SQLite's side, open and recovery: journal.cc; the indexer: journal_index.cc.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "engine/journal.h"
#include "engine/journal_log.h"
#include "engine/journal_rows.h"

namespace fanout::engine {

using journal_detail::kIndexRetry;
using journal_detail::kNoteDelay;
using journal_detail::kPurgeEvery;
using journal_detail::now_ms;

// --- appending ----------------------------------------------------------------------------------

namespace {
// The journal this thread holds (Journal::hold), or null.
thread_local Journal* t_held = nullptr;
}  // namespace

Journal* Journal::hold(Journal* journal) noexcept {
  Journal* const outer = t_held;
  if (journal != nullptr) t_held = journal;
  return outer;
}

void Journal::release(Journal* journal, Journal* outer) noexcept {
  t_held = outer;
  if (journal == nullptr || outer == journal) return;
  std::lock_guard lock(journal->mu_);
  if (!journal->open_->records.empty()) journal->wake_writer();
}

void Journal::wake_writer() {
  if (!writer_waiting_) return;
  writer_wakes_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_one();
}

void Journal::push(const Record& r, std::string_view a, std::string_view b, std::string_view c) {
  Record& rec = open_->records.emplace_back(r);
  rec.offset = open_->bytes.size();
  open_->bytes.append(a);
  open_->bytes.append(b);
  open_->bytes.append(c);
  ++pushed_;
  // An accept wakes the writer (unless this thread holds the journal); a note only when it is
  // the first of the batch, so that the writer starts its kNoteDelay wait (run()).
  bool wake = false;
  if (r.kind == Record::Kind::kAccept) {
    open_->write_now = true;
    wake = t_held != this;
  } else if (open_->records.size() == 1) {
    open_->first_note = std::chrono::steady_clock::now();
    wake = true;
  }
  if (wake) wake_writer();
}

bool Journal::remember_id(std::int64_t org_id, std::string_view event_id, std::int64_t now) {
  // Forget what left the window (or the cap), oldest first; a key seen again since keeps its
  // newer time.
  const std::int64_t horizon = now - static_cast<std::int64_t>(options_.idempotency_ms);
  while (!id_order_.empty() &&
         (id_order_.front().first < horizon || id_order_.size() > options_.max_ids)) {
    auto it = ids_.find(id_order_.front().second);
    if (it != ids_.end() && it->second == id_order_.front().first) ids_.erase(it);
    id_order_.pop_front();
  }
  const IdKey key = id_key(org_id, event_id);
  auto [it, inserted] = ids_.try_emplace(key, now);
  if (!inserted) {
    if (it->second >= horizon) return false;
    it->second = now;
  }
  id_order_.emplace_back(now, key);
  return true;
}

Journal::Admit Journal::accept(std::int64_t org_id, routing::EventTypeId type,
                               std::string_view event_id, std::string_view body,
                               std::int64_t subscription_id, bool check_id, std::int64_t resend_of,
                               std::int64_t& did) {
  const std::int64_t now = now_ms();
  const bool ids_on = check_id && options_.idempotency_ms > 0 && options_.max_ids > 0;
  std::lock_guard lock(mu_);
  if (failing_) return Admit::kFailing;
  if (ids_on && !remember_id(org_id, event_id, now)) return Admit::kDuplicate;
  did = next_did_++;
  Record r;
  r.kind = Record::Kind::kAccept;
  r.remember_id = ids_on;
  r.type = type;
  r.did = did;
  r.org_id = org_id;
  r.subscription_id = subscription_id;
  r.time_ms = now;
  r.resend_of = resend_of;
  r.id_size = static_cast<std::uint32_t>(event_id.size());
  r.body_size = static_cast<std::uint32_t>(body.size());
  const std::string_view type_name = catalogue_.name(type);
  r.type_size = static_cast<std::uint32_t>(type_name.size());
  push(r, event_id, body, type_name);
  if (open_->first_accept == 0) open_->first_accept = static_cast<std::uint64_t>(did);
  open_->last_accept = static_cast<std::uint64_t>(did);
  return Admit::kAccepted;
}

void Journal::attempt(std::int64_t did, std::uint32_t n, int status, transport::Failure failure,
                      std::uint32_t duration_us, std::int64_t next_ms,
                      std::optional<OutcomeKind> outcome) {
  const Note note{did, now_ms(), next_ms, n, status, duration_us, failure, true, outcome};
  record({&note, 1});
}

void Journal::final(std::int64_t did, OutcomeKind outcome, std::uint32_t attempts) {
  const Note note = Note::final_only(did, now_ms(), outcome, attempts);
  record({&note, 1});
}

void Journal::record(std::span<const Note> notes) {
  if (notes.empty()) return;
  std::lock_guard lock(mu_);
  for (const Note& note : notes) {
    Record r;
    r.kind = note.attempt ? Record::Kind::kAttempt : Record::Kind::kFinal;
    r.did = note.did;
    r.n = note.n;
    r.status = note.status;
    r.failure = note.failure;
    r.duration_us = note.duration_us;
    r.time_ms = note.at_ms;
    r.next_ms = note.next_ms;
    r.has_outcome = note.outcome.has_value();
    if (note.outcome) r.outcome = *note.outcome;
    push(r);
  }
}

void Journal::forget_ids(const Batch& batch) {
  for (const Record& r : batch.records) {
    if (r.kind != Record::Kind::kAccept || !r.remember_id) continue;
    auto it =
        ids_.find(id_key(r.org_id, std::string_view(batch.bytes).substr(r.offset, r.id_size)));
    if (it != ids_.end() && it->second == r.time_ms) ids_.erase(it);
  }
}

// --- the writer thread --------------------------------------------------------------------------

void Journal::run() {
  std::unique_ptr<Batch> spare = std::make_unique<Batch>();
  for (;;) {
    std::unique_ptr<Batch> batch;
    bool failing = false;
    {
      std::unique_lock lock(mu_);
      // An accept (or a history read waiting) is written at once; notes alone wait up to
      // kNoteDelay for one to share their frame (and sync); nothing at all, up to kPurgeEvery
      // (then an empty frame while failing).
      writer_waiting_ = true;
      if (open_->records.empty() && !stopping_) {
        wake_.wait_for(lock, kPurgeEvery, [this] { return !open_->records.empty() || stopping_; });
      }
      if (!open_->records.empty() && !open_->write_now && !stopping_ && !failing_) {
        wake_.wait_until(lock, open_->first_note + kNoteDelay,
                         [this] { return open_->write_now || stopping_; });
      }
      writer_waiting_ = false;
      if (open_->records.empty() && stopping_) break;
      open_->last_did = static_cast<std::uint64_t>(next_did_ - 1);
      open_->pushes = pushed_;
      batch = std::exchange(open_, std::move(spare));
      failing = failing_;
    }
    // Nothing to write: an empty frame anyway while failing, to find out whether the disk works
    // again (publish answers busy until then).
    if (batch->records.empty() && !failing) {
      spare = std::move(batch);
      continue;
    }
    // The log runs at most max_log_backlog_bytes ahead of the database: wait for the indexer
    // (re-checked each second, and not at all while stopping or while the indexer fails: then
    // the disk is the limit).
    for (;;) {
      std::unique_lock lock(index_mu_);
      if (backlog_locked() <= options_.max_log_backlog_bytes ||
          index_failing_.load(std::memory_order_relaxed) ||
          stopping_seen_.load(std::memory_order_relaxed)) {
        break;
      }
      backlog_waits_.fetch_add(1, std::memory_order_relaxed);
      index_done_.wait_for(lock, kIndexRetry,
                           [&] { return backlog_locked() <= options_.max_log_backlog_bytes; });
    }
    tl::expected<std::uint64_t, std::string> written;
    if (options_.fail_commit && options_.fail_commit()) {
      written = tl::unexpected(std::string("journal: injected commit failure"));
    } else {
      written = log_->append(*batch, batch->pushes);
    }
    const bool ok = written.has_value();
    {
      std::lock_guard lock(mu_);
      if (!ok) forget_ids(*batch);
      failing_ = !ok;
    }
    if (ok) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      records_.fetch_add(batch->records.size(), std::memory_order_relaxed);
      bytes_.fetch_add(batch->bytes.size(), std::memory_order_relaxed);
      std::uint64_t backlog = 0;
      {
        std::lock_guard lock(index_mu_);
        logged_.store(*written, std::memory_order_release);
        backlog = backlog_locked();
      }
      index_wake_.notify_one();
      steer_indexer(backlog);
      durable_.store(std::max(batch->last_did, durable_.load(std::memory_order_relaxed)),
                     std::memory_order_release);
    } else {
      commit_failures_.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "fanout: %s\n", written.error().c_str());
      {
        std::lock_guard lock(index_mu_);
        failed_pushes_ = batch->pushes;
      }
      index_done_.notify_all();
    }
    if (options_.on_commit && !batch->records.empty()) {
      options_.on_commit(batch->first_accept, batch->last_accept, ok);
    }
    batch->clear();
    spare = std::move(batch);
  }
}

}  // namespace fanout::engine
