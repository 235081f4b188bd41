// A worker's retries (worker.h): the observer's note, the backoff drawn, a delivery parked as a
// WaitingRetry in the timer wheel and made a Delivery again when it is due, and the holds of
// hold_retries deliveries. worker.cc has the way in and the attempts, worker_stop.cc the way out.
#include "engine/worker.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>

namespace fanout::engine {

namespace {

// A waiting retry whose body could not be read back from the journal tries again this much later
// (a disk error, or a database another process holds locked past its busy timeout).
constexpr std::uint64_t kBodyRetryMs = 1'000;
// A waiting retry due sooner than this keeps its body where it is (move_bodies_to_disk()).
constexpr std::uint64_t kMinLeftToMoveMs = 1'000;

double unit_random(const EngineOptions& o, std::mt19937_64& rng) {
  const std::uint64_t r = o.random ? o.random() : rng();
  return static_cast<double>(r >> 11) * 0x1.0p-53;
}

}  // namespace

void Worker::note_retry(const DeliveryState& d, std::string_view event_id,
                        std::int64_t due_unix_ms) {
  if (d.tag == 0) return;
  RetryNote note;
  note.tag = d.tag;
  note.event_id = event_id;
  note.org_id = d.org_id;
  note.attempts = d.attempts;
  note.next_attempt_unix_ms = due_unix_ms;
  note.hold = d.hold;
  engine_.observer_->on_retry(note);
}

void Worker::start_resumed(Delivery& d) {
  const std::int64_t due = std::exchange(d.not_before_unix_ms, 0);
  const std::int64_t now = now_unix_ms();
  if (due <= now) {
    attempt(d);
    return;
  }
  // Capped: a wall clock that jumped (or a bogus stored time) must not park it for days.
  // (Unsigned subtraction: exact for due > now, whatever the values.)
  const std::uint64_t ahead = static_cast<std::uint64_t>(due) - static_cast<std::uint64_t>(now);
  wait(d, std::min(ahead, engine_.options_.retry.cap_ms));
}

std::uint64_t Worker::draw_backoff_ms(const Delivery& d) const {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return backoff_ms(engine_.options_.retry, d.attempts, unit_random(engine_.options_, rng));
}

WaitingRetry& Worker::wait(Delivery& d, std::uint64_t delay_ms) {
  // A long wait leaves the body in the journal when its database already has it.
  const Journal* j = engine_.shared_->journal.get();
  const std::uint64_t on_disk_after = j != nullptr ? j->options().bodies_on_disk_after_ms : 0;
  const bool long_wait = on_disk_after != 0 && delay_ms >= on_disk_after && d.did != 0;
  const bool on_disk = long_wait && d.did <= j->indexed_did();
  WaitingRetry* w = WaitingRetry::make(d.event_id.size(), on_disk ? 0 : d.body_bytes.size());
  static_cast<DeliveryState&>(*w) = d;
  w->worker = this;
  w->body_on_disk = on_disk;
  std::memcpy(w->id_data(), d.event_id.data(), d.event_id.size());
  if (!on_disk) std::memcpy(w->body_data(), d.body_bytes.data(), d.body_bytes.size());
  if (d.has_signature) Signer::signature_from_base64(d.signature, w->signature);
  Delivery::destroy(&d);
  waiting_list_.push_front(w);
  engine_.shared_->waiting.fetch_add(1, std::memory_order_relaxed);
  bump(waiting_);
  bump(waiting_bytes_, w->block_size());
  if (on_disk) bump(waiting_on_disk_);
  if (long_wait && !on_disk) bodies_in_memory_.push_back(w);  // moved once the database has it
  if (w->hold != 0) holds_.emplace(w->hold, w);
  w->backoff.set_callback(&Worker::on_backoff, w);
  timers_->schedule_after(w->backoff, delay_ms);
  return *w;
}

void Worker::on_backoff(transport::TimerEntry&, void* data) noexcept {
  auto* w = static_cast<WaitingRetry*>(data);
  if (w->hold != 0) {
    w->held_due = true;  // stays waiting until its release
    return;
  }
  Worker* self = w->worker;
  if (Delivery* d = self->unpark(w)) self->attempt(*d);
}

void Worker::unwait(WaitingRetry& w) noexcept {
  transport::IntrusiveList<WaitingRetry>::erase(&w);
  if (static_cast<transport::ListNode<WaitingRetry, BodyInMemoryTag>&>(w).linked()) {
    transport::IntrusiveList<WaitingRetry, BodyInMemoryTag>::erase(&w);
  }
  engine_.shared_->waiting.fetch_sub(1, std::memory_order_relaxed);
  drop(waiting_);
  drop(waiting_bytes_, w.block_size());
  if (w.body_on_disk) drop(waiting_on_disk_);
}

Delivery* Worker::unpark(WaitingRetry* w) {
  std::string_view body = w->body();
  if (w->body_on_disk) {
    if (!read_body(*w, body_buf_)) {
      timers_->schedule_after(w->backoff, kBodyRetryMs);  // still waiting, still counted
      return nullptr;
    }
    body = body_buf_;
  }
  unwait(*w);
  Delivery* d = Delivery::make(&engine_.shared_->delivery_pool, w->id_size, body.size());
  static_cast<DeliveryState&>(*d) = *w;
  d->body_on_disk = false;
  d->worker = this;
  std::memcpy(d->id_data(), w->id_data(), w->id_size);
  std::memcpy(d->body_data(), body.data(), body.size());
  if (d->has_signature) Signer::signature_to_base64(w->signature, d->signature);
  WaitingRetry::destroy(w);
  return d;
}

void Worker::move_bodies_to_disk() {
  const Journal* j = engine_.shared_->journal.get();
  if (j == nullptr) return;
  const std::int64_t indexed = j->indexed_did();
  const std::uint64_t now = timers_->now();
  while (WaitingRetry* w = bodies_in_memory_.front()) {
    if (w->did > indexed) break;  // the ones behind it began to wait later: newer still
    bodies_in_memory_.pop_front();
    if (!w->backoff.armed() || w->backoff.deadline() < now + kMinLeftToMoveMs) continue;
    WaitingRetry* lean = WaitingRetry::make(w->id_size, 0);
    static_cast<DeliveryState&>(*lean) = *w;
    lean->worker = this;
    lean->body_on_disk = true;
    std::memcpy(lean->id_data(), w->id_data(), w->id_size);
    std::memcpy(lean->signature, w->signature, sizeof lean->signature);
    lean->backoff.set_callback(&Worker::on_backoff, lean);
    timers_->schedule(lean->backoff, w->backoff.deadline());
    timers_->cancel(w->backoff);
    transport::IntrusiveList<WaitingRetry>::erase(w);
    waiting_list_.push_front(lean);
    if (lean->hold != 0) holds_[lean->hold] = lean;
    drop(waiting_bytes_, w->block_size());
    bump(waiting_bytes_, lean->block_size());
    bump(waiting_on_disk_);
    WaitingRetry::destroy(w);
  }
}

bool Worker::read_body(const WaitingRetry& w, std::string& out) {
  if (!body_reader_) {
    auto opened = Journal::BodyReader::open(engine_.shared_->journal->database_file());
    if (!opened) {
      bump(body_read_failures_);
      return false;
    }
    body_reader_ = std::move(*opened);
  }
  if (!body_reader_->read(w.did, out)) {
    bump(body_read_failures_);
    return false;
  }
  bump(body_reads_);
  return true;
}

std::uint64_t Worker::next_hold() noexcept {
  // Top byte: the worker (plus one, so a hold is never 0); below it, a serial that would take
  // millennia to wrap at any retry rate.
  return (static_cast<std::uint64_t>(index_ + 1) << 56) | (++hold_serial_ & ((1ULL << 56) - 1));
}

void Worker::release_hold(std::uint64_t hold) noexcept {
  releases_.enqueue(hold);
  uv_async_send(&async_);
}

void Worker::drain_releases() {
  std::uint64_t batch[64];
  for (;;) {
    const std::size_t n = releases_.try_dequeue_bulk(batch, std::size(batch));
    if (n == 0) return;
    for (std::size_t i = 0; i < n; ++i) {
      const auto it = holds_.find(batch[i]);
      if (it == holds_.end()) continue;  // released twice, or handed back by stop()
      WaitingRetry& w = *it->second;
      holds_.erase(it);
      w.hold = 0;
      if (std::exchange(w.held_due, false)) {
        if (Delivery* d = unpark(&w)) attempt(*d);
      }
    }
  }
}

}  // namespace fanout::engine
