// RedisSource's entry flow out: the engine's outcome and retry notes drained on the loop,
// settled entries acknowledged (XACK, batched) and their attempt records deleted, retries'
// attempt records written (HSET) before the engine may attempt them again. The way in is
// redis_flow.cc.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "source/redis/redis_impl.h"

namespace fanout::source {

namespace {

// Acknowledgements are batched: an XACK goes once kAckBatch ids wait, or kAckDelayMs after the
// first of them waited (at once while closing, and while reading is paused at the budget). One
// command per few hundred entries instead of one per loop turn (~35 ids); an entry stays pending in
// Redis at most kAckDelayMs longer.
constexpr std::size_t kAckBatch = 500;
constexpr std::uint64_t kAckDelayMs = 1;

// What a reply callback gets back: the commands' ids (acknowledged, attempt records deleted) or
// the records written.
struct AckBatch {
  RedisSource::Impl* impl;
  std::vector<EntryId> ids;
  std::vector<EntryId> hdel;
};

struct RecordBatch {
  RedisSource::Impl* impl;
  std::vector<RedisSource::Impl::RetryRecord> records;
};

}  // namespace

// --- outcomes and retries ---------------------------------------------------------------------

void RedisSource::Impl::on_async(uv_async_t* handle) {
  auto* self = static_cast<Impl*>(handle->data);
  self->drain_notes();
  self->flush_writes();
  if (self->paused) self->read_next();
}

void RedisSource::Impl::drain_notes() {
  note_buf.resize(1024);
  for (;;) {
    const std::size_t n = notes.try_dequeue_bulk(note_buf.begin(), note_buf.size());
    if (n == 0) break;
    for (std::size_t i = 0; i < n; ++i) {
      const Note& note = note_buf[i];
      EntryTable::Slot* s = table.from_tag(note.tag);
      if (s == nullptr) {
        if (note.hold != 0) producer.release_retry(note.hold);  // nothing to record it for
        continue;
      }
      if (note.final) {
        to_ack.push_back(s->id);
        if (s->retry_state) to_hdel.push_back(s->id);
        table.release(static_cast<std::uint32_t>(note.tag - 1));
      } else {
        s->retry_state = true;
        to_hset.push_back({s->id, note.attempts, note.due_unix_ms, note.hold});
      }
    }
  }
  counters.held.store(table.held(), std::memory_order_relaxed);
}

void RedisSource::Impl::flush_writes(bool acks_now) {
  if (!cmd.ready() || phase == Phase::kSetup) return;  // setup() sends what is owed first
  send_records();
  if (to_ack.empty() && to_hdel.empty()) return;
  // While reading is paused at the budget, the outcomes that make room are acknowledged before
  // reading resumes (on_async), so that Redis's pending list stays within the budget: batches
  // wait only while reading flows.
  if (to_ack.size() + to_hdel.size() < kAckBatch && !acks_now && !paused &&
      phase != Phase::kClosing) {
    if (!timers.armed(ack_timer)) timers.schedule_after(ack_timer, kAckDelayMs);
    return;
  }
  timers.cancel(ack_timer);
  send_acks(std::move(to_ack), std::move(to_hdel));
  to_ack.clear();
  to_hdel.clear();
}

void RedisSource::Impl::on_ack_due() noexcept {
  flush_writes(/*acks_now=*/true);
}

void RedisSource::Impl::send_records() {
  for (std::size_t at = 0; at < to_hset.size(); at += kIdsPerCommand) {
    const std::size_t end = std::min(to_hset.size(), at + kIdsPerCommand);
    auto* batch = new RecordBatch{this,
                                  {to_hset.begin() + static_cast<std::ptrdiff_t>(at),
                                   to_hset.begin() + static_cast<std::ptrdiff_t>(end)}};
    arena.clear();
    arena.reserve(batch->records.size() * EntryId::kMaxText);
    scratch.resize(batch->records.size());
    args.clear().add("HSET").add(attempts_key);
    for (std::size_t i = 0; i < batch->records.size(); ++i) {
      const RetryRecord& rec = batch->records[i];
      scratch[i] = std::to_string(rec.attempts) + " " + std::to_string(rec.due_unix_ms);
      args.add(text(rec.id)).add(scratch[i]);
    }
    if (!cmd.command(args, on_record_reply, batch)) {
      // Not sent: kept for the reconnect (setup() sends them before any read).
      to_hset.erase(to_hset.begin(), to_hset.begin() + static_cast<std::ptrdiff_t>(at));
      delete batch;
      return;
    }
  }
  to_hset.clear();
}

void RedisSource::Impl::on_record_reply(redisAsyncContext*, void* reply, void* data) {
  std::unique_ptr<RecordBatch> batch(static_cast<RecordBatch*>(data));
  Impl* self = batch->impl;
  if (reply == nullptr && self->phase != Phase::kClosing && self->phase != Phase::kClosed) {
    // Lost with the connection: written again after the reconnect; the attempts wait.
    self->to_hset.insert(self->to_hset.end(), batch->records.begin(), batch->records.end());
    return;
  }
  // Written; or refused by Redis (out of memory: sending it again would not help), or closing:
  // the attempts go on rather than wait forever.
  for (const RetryRecord& rec : batch->records) self->producer.release_retry(rec.hold);
}

void RedisSource::Impl::send_acks(std::vector<EntryId> ids, std::vector<EntryId> hdel) {
  if (ids.empty()) {
    // Records of entries acknowledged another way (dead-lettered, unsubscribed): best effort.
    arena.clear();
    arena.reserve(hdel.size() * EntryId::kMaxText);
    args.clear().add("HDEL").add(attempts_key);
    for (const EntryId& id : hdel) args.add(text(id));
    if (!hdel.empty()) (void)cmd.command(args, nullptr, nullptr);
    return;
  }
  for (std::size_t at = 0; at < ids.size(); at += kIdsPerCommand) {
    const std::size_t end = std::min(ids.size(), at + kIdsPerCommand);
    auto* batch = new AckBatch{this,
                               {ids.begin() + static_cast<std::ptrdiff_t>(at),
                                ids.begin() + static_cast<std::ptrdiff_t>(end)},
                               {}};
    if (at == 0) batch->hdel = std::move(hdel);
    const bool multi = !batch->hdel.empty();
    if (multi) {
      args.clear().add("MULTI");
      (void)cmd.command(args, nullptr, nullptr);
    }
    arena.clear();
    arena.reserve((batch->ids.size() + batch->hdel.size()) * EntryId::kMaxText);
    args.clear().add("XACK").add(o.stream).add(o.group);
    for (const EntryId& id : batch->ids) args.add(text(id));
    bool sent = cmd.command(args, multi ? nullptr : on_ack_reply, multi ? nullptr : batch);
    if (multi) {
      args.clear().add("HDEL").add(attempts_key);
      for (const EntryId& id : batch->hdel) args.add(text(id));
      (void)cmd.command(args, nullptr, nullptr);
      args.clear().add("EXEC");
      sent = cmd.command(args, on_ack_reply, batch);
    }
    if (sent) {
      ++acks_in_flight;
    } else {
      unacked.insert(unacked.end(), batch->ids.begin(), batch->ids.end());
      to_hdel.insert(to_hdel.end(), batch->hdel.begin(), batch->hdel.end());
      delete batch;
    }
  }
}

void RedisSource::Impl::on_ack_reply(redisAsyncContext*, void* reply, void* data) {
  std::unique_ptr<AckBatch> batch(static_cast<AckBatch*>(data));
  Impl* self = batch->impl;
  if (self->acks_in_flight > 0) --self->acks_in_flight;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || is_error(r) || r->type == REDIS_REPLY_NIL) {
    // Not confirmed: sent again before the next read (setup()).
    self->unacked.insert(self->unacked.end(), batch->ids.begin(), batch->ids.end());
    self->to_hdel.insert(self->to_hdel.end(), batch->hdel.begin(), batch->hdel.end());
  } else {
    self->counters.acknowledged.fetch_add(batch->ids.size(), std::memory_order_relaxed);
  }
  if (self->phase == Phase::kClosing) self->maybe_finish_close();
}

}  // namespace fanout::source
