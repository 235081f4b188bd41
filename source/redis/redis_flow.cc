// RedisSource's entry flow in: read (own pending, then new), publish into the engine, refresh
// held entries' idle time, claim a dead consumer's. The way out (outcomes, acknowledgements,
// retry records) is redis_acks.cc.
#include <hiredis/hiredis.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <utility>

#include "source/redis/redis_impl.h"

namespace fanout::source {

namespace {

constexpr std::uint64_t kBusyRetryMs = 20;

// An entry's "event" field, when it has one. fields: [name, value, name, value, ...].
bool event_field(const redisReply* fields, std::string_view& out) noexcept {
  if (fields == nullptr || fields->type != REDIS_REPLY_ARRAY) return false;
  for (std::size_t i = 0; i + 1 < fields->elements; i += 2) {
    if (str(fields->element[i]) == "event") {
      out = str(fields->element[i + 1]);
      return true;
    }
  }
  return false;
}

// Parses "<attempts> <due ms>" (an attempts record).
void parse_record(std::string_view v, std::uint32_t& attempts, std::int64_t& due) noexcept {
  const std::size_t sp = v.find(' ');
  if (sp == std::string_view::npos) return;
  std::uint32_t a = 0;
  std::int64_t d = 0;
  const char* end = v.data() + sp;
  if (std::from_chars(v.data(), end, a).ptr != end) return;
  end = v.data() + v.size();
  if (std::from_chars(v.data() + sp + 1, end, d).ptr != end) return;
  attempts = a;
  due = d;
}

struct AttemptsLookup {
  RedisSource::Impl* impl;
  std::vector<Taken> taken;
  bool from_read;  // else from a claim
};

struct DeadLetter {
  RedisSource::Impl* impl;
  EntryId id;
};

}  // namespace

std::string_view RedisSource::Impl::text(const EntryId& id) {
  // The arena is sized before a command is built (reserve in callers), so views stay valid.
  const std::size_t at = arena.size();
  arena.resize(at + EntryId::kMaxText);
  const std::string_view t = id.format(arena.data() + at);
  arena.resize(at + t.size());
  return {arena.data() + at, t.size()};
}

std::size_t RedisSource::Impl::room() const noexcept {
  const std::size_t used = table.held() + blocked.size() + parked.size();
  return used >= o.max_in_flight ? 0 : o.max_in_flight - used;
}

// --- reading --------------------------------------------------------------------------------

void RedisSource::Impl::read_next() {
  if (reading || stop_read || !blocked.empty()) return;
  if (phase != Phase::kOwnPending && phase != Phase::kLive) return;
  const std::size_t r = room();
  if (r == 0) {
    if (!paused) counters.paused.fetch_add(1, std::memory_order_relaxed);
    paused = true;
    return;
  }
  paused = false;
  count_text = std::to_string(std::min<std::size_t>(o.batch, r));
  args.clear()
      .add("XREADGROUP")
      .add("GROUP")
      .add(o.group)
      .add(o.consumer)
      .add("COUNT")
      .add(count_text);
  if (phase == Phase::kLive) args.add("BLOCK").add(block_text);
  // (Both arms views: a std::string temporary here would dangle before the command is sent.)
  args.add("STREAMS").add(o.stream).add(phase == Phase::kLive ? std::string_view(">")
                                                              : std::string_view(pending_cursor));
  reading = reader.command(args, on_read, this);
}

void RedisSource::Impl::on_read(redisAsyncContext*, void* reply, void* data) {
  auto* self = static_cast<Impl*>(data);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || !self->reading) return;  // the connection went, or reading stopped
  self->reading = false;
  if (self->phase != Phase::kOwnPending && self->phase != Phase::kLive) return;
  if (is_error(r)) {
    // NOGROUP: the stream or the group was deleted (or Redis lost them): set up again.
    self->go_down("XREADGROUP " + self->o.stream + ": " + std::string(str(r)));
    return;
  }
  if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->elements >= 2) {
    self->take_entries(*r->element[0]->element[1], self->phase == Phase::kOwnPending);
    return;
  }
  // Nil: BLOCK timed out with nothing new. An empty own-pending answer: all of ours are read.
  if (self->phase == Phase::kOwnPending) self->phase = Phase::kLive;
  self->read_next();
}

void RedisSource::Impl::take_entries(const redisReply& entries, bool own_pending) {
  if (own_pending) {
    if (entries.elements == 0) {
      phase = Phase::kLive;
      read_next();
      return;
    }
    // Ours from before (a restart under the same name, or a reconnect): their attempt records
    // first. A deleted entry (nil fields) is acknowledged.
    std::vector<Taken> taken;
    taken.reserve(entries.elements);
    for (std::size_t i = 0; i < entries.elements; ++i) {
      const redisReply* e = entries.element[i];
      if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
      const auto id = EntryId::parse(str(e->element[0]));
      if (!id) continue;
      pending_cursor = std::string(str(e->element[0]));
      if (table.holds(*id)) continue;
      Taken t;
      t.id = *id;
      std::string_view ev;
      if (e->element[1]->type != REDIS_REPLY_ARRAY) {
        to_ack.push_back(*id);
        continue;
      }
      t.has_event = event_field(e->element[1], ev);
      t.event = std::string(ev);
      taken.push_back(std::move(t));
    }
    counters.read.fetch_add(taken.size(), std::memory_order_relaxed);
    fetch_attempts(std::move(taken), /*from_read=*/true);
    return;
  }
  // New entries: never delivered before, so no attempt record; published straight from the
  // reply's memory.
  std::size_t i = 0;
  for (; i < entries.elements; ++i) {
    const redisReply* e = entries.element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
    const auto id = EntryId::parse(str(e->element[0]));
    if (!id) continue;
    std::string_view ev;
    const bool has = event_field(e->element[1], ev);
    counters.read.fetch_add(1, std::memory_order_relaxed);
    if (!blocked.empty() || !publish_one(*id, ev, has)) {
      hold_back(Taken{*id, std::string(ev), has, false, false, 0, 0});
    }
  }
  arm_busy_retry();
  flush_writes();
  read_next();
}

void RedisSource::Impl::fetch_attempts(std::vector<Taken> taken, bool from_read) {
  if (taken.empty()) {
    if (from_read) {
      flush_writes();
      read_next();  // everything was held already: read on
    }
    return;
  }
  arena.clear();
  arena.reserve(taken.size() * EntryId::kMaxText * 2);
  if (!from_read) {
    // Claimed: the records are read in one transaction with a check that each entry is still
    // pending (XCLAIM of ours, min idle 0, JUSTID answers only those). Between XAUTOCLAIM and
    // here a late owner may have acknowledged one and deleted its record: without the check
    // it would look like a fresh entry and be delivered again from attempt 1.
    args.clear().add("MULTI");
    (void)cmd.command(args, nullptr, nullptr);
    args.clear().add("XCLAIM").add(o.stream).add(o.group).add(o.consumer).add("0");
    for (const Taken& t : taken) args.add(text(t.id));
    args.add("JUSTID");
    (void)cmd.command(args, nullptr, nullptr);
  }
  args.clear().add("HMGET").add(attempts_key);
  for (const Taken& t : taken) args.add(text(t.id));
  auto* lookup = new AttemptsLookup{this, std::move(taken), from_read};
  bool sent = cmd.command(args, from_read ? on_attempts : nullptr, from_read ? lookup : nullptr);
  if (!from_read) {
    args.clear().add("EXEC");
    sent = cmd.command(args, on_attempts, lookup);
  }
  if (!sent) {
    delete lookup;  // not read by anyone: they stay pending and come again after a reconnect
    return;
  }
  (from_read ? reading : claiming) = true;
}

void RedisSource::Impl::on_attempts(redisAsyncContext*, void* reply, void* data) {
  std::unique_ptr<AttemptsLookup> lookup(static_cast<AttemptsLookup*>(data));
  Impl* self = lookup->impl;
  (lookup->from_read ? self->reading : self->claiming) = false;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || self->phase == Phase::kClosing || self->phase == Phase::kClosed) return;
  std::vector<Taken>& taken = lookup->taken;
  if (!lookup->from_read) {
    // EXEC's answer: [ids still pending, now ours; their records].
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_ARRAY) {
      self->log("warn", "claim check " + self->o.stream + ": " + std::string(str(r)));
      return;  // they stay pending: claimed again later
    }
    const redisReply* still = r->element[0];
    std::vector<EntryId> pending;
    pending.reserve(still->elements);
    for (std::size_t i = 0; i < still->elements; ++i) {
      if (auto id = EntryId::parse(str(still->element[i]))) pending.push_back(*id);
    }
    std::sort(pending.begin(), pending.end());
    r = r->element[1];
    std::size_t kept = 0;
    for (std::size_t i = 0; i < taken.size(); ++i) {
      taken[i].gone = !std::binary_search(pending.begin(), pending.end(), taken[i].id);
      kept += taken[i].gone ? 0U : 1U;
    }
    if (kept != 0) {
      self->counters.claimed.fetch_add(kept, std::memory_order_relaxed);
      self->log("info", "claimed " + std::to_string(kept) + " idle entr" +
                            (kept == 1 ? "y" : "ies") + " from other consumers");
    }
  }
  if (r->type == REDIS_REPLY_ARRAY && r->elements == taken.size()) {
    for (std::size_t i = 0; i < r->elements; ++i) {
      if (r->element[i]->type == REDIS_REPLY_STRING) {
        taken[i].has_record = true;
        parse_record(str(r->element[i]), taken[i].attempts, taken[i].due_unix_ms);
      }
    }
  }
  std::erase_if(taken, [](const Taken& t) { return t.gone; });
  self->publish_taken(taken);
  if (lookup->from_read) {
    self->read_next();
  } else if (self->claim_cursor != "0-0") {
    self->claim_next();  // more idle entries beyond this batch
  }
}

void RedisSource::Impl::publish_taken(std::vector<Taken>& taken) {
  for (Taken& t : taken) {
    if (!blocked.empty() || !publish_one(t)) hold_back(std::move(t));
  }
  arm_busy_retry();
  flush_writes();
}

bool RedisSource::Impl::publish_one(const EntryId& id, std::string_view event, bool has_event,
                                    std::uint32_t attempts, std::int64_t due_unix_ms,
                                    bool has_record) {
  if (table.holds(id)) return true;  // already ours (claimed back, or read again)
  if (!has_event) {
    dead_letter(id, "missing_event_field", {});
    return true;
  }
  char id_text[EntryId::kMaxText];
  const std::uint32_t slot = table.acquire(id);
  PublishOptions po;
  po.tag = slot + 1ULL;
  po.default_id = id.format(id_text);
  po.attempts = attempts;
  po.next_attempt_unix_ms = due_unix_ms;
  po.journal = false;      // Redis holds the entry until its outcome
  po.hold_retries = true;  // each retry waits for its attempts record (send_records)
  const PublishResult r = producer.publish(event, po);
  switch (r.status) {
    case PublishStatus::kAccepted:
      if (has_record) {
        if (EntryTable::Slot* s = table.from_tag(po.tag)) s->retry_state = true;
      }
      counters.held.store(table.held(), std::memory_order_relaxed);
      return true;
    case PublishStatus::kInvalid:
      table.release(slot);
      if (has_record) to_hdel.push_back(id);
      dead_letter(id, r.reason, event);
      return true;
    case PublishStatus::kNoSubscription:
    case PublishStatus::kDuplicate:
      table.release(slot);
      if (has_record) to_hdel.push_back(id);
      counters.no_subscription.fetch_add(1, std::memory_order_relaxed);
      to_ack.push_back(id);
      return true;
    case PublishStatus::kBusy:
      table.release(slot);
      scoped_busy = r.reason == "org_busy" || r.reason == "origin_busy";
      return false;
    case PublishStatus::kStopped:
      table.release(slot);  // stays pending in Redis: read again at the next start
      return true;
  }
  return true;
}

void RedisSource::Impl::dead_letter(const EntryId& id, std::string_view reason,
                                    std::string_view event) {
  // Copied and acknowledged in one transaction: both or neither. If the connection is down the
  // entry stays pending and is read (and dead-lettered) again after the reconnect.
  char id_text[EntryId::kMaxText];
  const std::string_view t = id.format(id_text);
  args.clear().add("MULTI");
  if (!cmd.command(args, nullptr, nullptr)) return;
  args.clear()
      .add("XADD")
      .add(dead_key)
      .add("*")
      .add("id")
      .add(t)
      .add("reason")
      .add(reason)
      .add("event")
      .add(event);
  (void)cmd.command(args, nullptr, nullptr);
  args.clear().add("XACK").add(o.stream).add(o.group).add(t);
  (void)cmd.command(args, nullptr, nullptr);
  args.clear().add("EXEC");
  auto* dl = new DeadLetter{this, id};
  if (!cmd.command(
          args,
          [](redisAsyncContext*, void* reply, void* data) {
            std::unique_ptr<DeadLetter> d(static_cast<DeadLetter*>(data));
            const auto* rr = static_cast<const redisReply*>(reply);
            if (rr == nullptr || rr->type != REDIS_REPLY_ARRAY) return;
            d->impl->counters.dead_lettered.fetch_add(1, std::memory_order_relaxed);
            d->impl->counters.acknowledged.fetch_add(1, std::memory_order_relaxed);
          },
          dl)) {
    delete dl;
  }
}

void RedisSource::Impl::arm_busy_retry() noexcept {
  // Armed once, not pushed back by later reads: parked entries get their turn while others flow.
  if ((!blocked.empty() || !parked.empty()) && !timers.armed(busy_timer)) {
    timers.schedule_after(busy_timer, kBusyRetryMs);
  }
}

void RedisSource::Impl::on_busy_retry() noexcept {
  // Parked entries: each tried once; those still refused wait for the next round.
  for (std::size_t i = 0, n = parked.size(); i < n; ++i) {
    Taken t = std::move(parked.front());
    parked.pop_front();
    if (!publish_one(t)) parked.push_back(std::move(t));
  }
  while (!blocked.empty()) {
    Taken& t = blocked.front();
    if (!publish_one(t)) break;
    blocked.pop_front();
  }
  flush_writes();
  arm_busy_retry();
  if (blocked.empty()) read_next();
}

// --- takeover -------------------------------------------------------------------------------

void RedisSource::Impl::on_refresh() noexcept {
  timers.schedule_after(refresh_timer, o.takeover_ms / 4);
  if (phase != Phase::kOwnPending && phase != Phase::kLive) return;
  // Our entries' idle time back to 0, so no other consumer claims them while we live.
  std::vector<EntryId> ids;
  ids.reserve(table.held() + blocked.size() + parked.size());
  table.for_each_held([&](const EntryId& id) { ids.push_back(id); });
  for (const Taken& t : blocked) ids.push_back(t.id);
  for (const Taken& t : parked) ids.push_back(t.id);
  for (std::size_t at = 0; at < ids.size(); at += kIdsPerCommand) {
    const std::size_t end = std::min(ids.size(), at + kIdsPerCommand);
    arena.clear();
    arena.reserve((end - at) * EntryId::kMaxText);
    args.clear().add("XCLAIM").add(o.stream).add(o.group).add(o.consumer).add("0");
    for (std::size_t i = at; i < end; ++i) args.add(text(ids[i]));
    args.add("JUSTID");
    (void)cmd.command(args, nullptr, nullptr);
  }
}

void RedisSource::Impl::on_claim_tick() noexcept {
  timers.schedule_after(claim_timer, std::max<std::uint64_t>(o.takeover_ms / 6, 1));
  if (phase == Phase::kLive && !claiming && !stop_read) claim_next();
}

void RedisSource::Impl::claim_next() {
  const std::size_t r = room();
  if (r == 0 || claiming || stop_read || phase != Phase::kLive) return;
  scratch.resize(1);
  scratch[0] = std::to_string(std::min<std::size_t>(o.batch, r));
  args.clear()
      .add("XAUTOCLAIM")
      .add(o.stream)
      .add(o.group)
      .add(o.consumer)
      .add(claim_idle_text)
      .add(claim_cursor)
      .add("COUNT")
      .add(scratch[0]);
  claiming = cmd.command(args, on_claim, this);
}

void RedisSource::Impl::on_claim(redisAsyncContext*, void* reply, void* data) {
  auto* self = static_cast<Impl*>(data);
  self->claiming = false;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || self->phase != Phase::kLive) return;
  if (is_error(r) || r->type != REDIS_REPLY_ARRAY || r->elements < 2) {
    self->log("warn", "XAUTOCLAIM " + self->o.stream + ": " + std::string(str(r)));
    return;
  }
  self->claim_cursor = std::string(str(r->element[0]));
  const redisReply* entries = r->element[1];
  std::vector<Taken> taken;
  for (std::size_t i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; ++i) {
    const redisReply* e = entries->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2) continue;
    const auto id = EntryId::parse(str(e->element[0]));
    if (!id || self->table.holds(*id)) continue;
    Taken t;
    t.id = *id;
    std::string_view ev;
    t.has_event = event_field(e->element[1], ev);
    t.event = std::string(ev);
    taken.push_back(std::move(t));
  }
  if (taken.empty() && self->claim_cursor != "0-0") {
    self->claim_next();
    return;
  }
  self->fetch_attempts(std::move(taken), /*from_read=*/false);
}

}  // namespace fanout::source
