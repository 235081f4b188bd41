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
  WaitingRetry* w = WaitingRetry::make(d.event_id.size(), d.body_bytes.size());
  static_cast<DeliveryState&>(*w) = d;
  w->worker = this;
  std::memcpy(w->id_data(), d.event_id.data(), d.event_id.size());
  std::memcpy(w->body_data(), d.body_bytes.data(), d.body_bytes.size());
  if (d.has_signature) Signer::signature_from_base64(d.signature, w->signature);
  Delivery::destroy(&d);
  waiting_list_.push_front(w);
  engine_.shared_->waiting.fetch_add(1, std::memory_order_relaxed);
  bump(waiting_);
  bump(waiting_bytes_, w->block_size());
  if (w->hold != 0) holds_.emplace(w->hold, w);
  w->backoff.set_callback(
      [](transport::TimerEntry&, void* data) noexcept {
        auto* ww = static_cast<WaitingRetry*>(data);
        if (ww->hold != 0) {
          ww->held_due = true;  // stays waiting until its release
          return;
        }
        Worker* self = ww->worker;
        self->attempt(self->unpark(ww));
      },
      w);
  timers_->schedule_after(w->backoff, delay_ms);
  return *w;
}

void Worker::unwait(WaitingRetry& w) noexcept {
  transport::IntrusiveList<WaitingRetry>::erase(&w);
  engine_.shared_->waiting.fetch_sub(1, std::memory_order_relaxed);
  drop(waiting_);
  drop(waiting_bytes_, w.block_size());
}

Delivery& Worker::unpark(WaitingRetry* w) {
  unwait(*w);
  Delivery* d = Delivery::make(&engine_.shared_->delivery_pool, w->id_size, w->body_size);
  static_cast<DeliveryState&>(*d) = *w;
  d->worker = this;
  std::memcpy(d->id_data(), w->id_data(), w->id_size);
  std::memcpy(d->body_data(), w->body_data(), w->body_size);
  if (d->has_signature) Signer::signature_to_base64(w->signature, d->signature);
  WaitingRetry::destroy(w);
  return *d;
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
        attempt(unpark(&w));
      }
    }
  }
}

}  // namespace fanout::engine
