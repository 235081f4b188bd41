// The worker's way out (worker.h): outcomes handed to the observer in batches, deliveries handed
// back by stop(), the stop sequence itself, and the counters stats() reads. worker.cc has the
// way in and the attempts, worker_retry.cc the retries.
#include "engine/worker.h"

#include <algorithm>
#include <utility>

namespace fanout::engine {

void Worker::hand_back(Delivery& d, std::int64_t next_attempt_unix_ms) {
  Unfinished u;
  u.event_id = d.event_id;
  u.body = std::string(d.body_bytes);
  hand_back_state(std::move(u), d, next_attempt_unix_ms);
  Delivery::destroy(&d);
}

void Worker::hand_back(WaitingRetry& w, std::int64_t next_attempt_unix_ms) {
  Unfinished u;
  u.event_id = w.event_id();
  u.body_in_journal = w.body_on_disk;  // not read back: stop() stays quick (engine.h)
  if (!w.body_on_disk) u.body = std::string(w.body());
  hand_back_state(std::move(u), w, next_attempt_unix_ms);
  WaitingRetry::destroy(&w);
}

void Worker::hand_back_state(Unfinished&& u, const DeliveryState& s,
                             std::int64_t next_attempt_unix_ms) {
  u.org_id = s.org_id;
  u.event_type = std::string(engine_.catalogue_.name(s.type));
  u.subscription_id = s.subscription_id;
  u.attempts = s.attempts;
  u.next_attempt_unix_ms = next_attempt_unix_ms;
  u.tag = s.tag;
  unfinished_.push_back(std::move(u));
  release_budget(*engine_.shared_, s);
  engine_.shared_->in_flight.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::on_flush(uv_prepare_t* handle) {
  auto* w = static_cast<Worker*>(handle->data);
  w->flush_journal();
  w->flush_outcomes();
}

void Worker::flush_outcomes() {
  if (done_.empty()) return;
  outcome_buf_.clear();
  const std::uint64_t now = uv_hrtime();
  std::int64_t n = 0;
  static_assert(static_cast<int>(OutcomeKind::kDropped) == 3, "kinds[] covers every OutcomeKind");
  std::uint64_t kinds[4] = {};  // indexed by OutcomeKind
  // Each organisation's budget line is rarely in cache by the time its delivery ends: loaded
  // for the whole batch first (a plain load, as BudgetTable::prefetch does for a key), the
  // misses overlap instead of coming one after another.
  for (const Delivery* d = done_.front(); d != nullptr; d = done_.next(d)) {
    if (d->org_budget != nullptr) (void)d->org_budget->count.load(std::memory_order_relaxed);
  }
  std::int64_t bytes = 0;
  for (Delivery* d = done_.front(); d != nullptr; d = done_.next(d)) {
    Outcome o;
    o.event_id = d->event_id;
    o.org_id = d->org_id;
    o.event_type = engine_.catalogue_.name(d->type);
    o.subscription_id = d->subscription_id;
    o.kind = d->kind;
    o.attempts = d->attempts;
    o.last_status = d->last_status;
    o.last_failure = d->last_failure == transport::Failure::kNone
                         ? std::string_view()
                         : transport::to_string(d->last_failure);
    o.latency_us = (now - d->published_ns) / 1000;
    o.last_response_us = d->last_response_us;
    o.tag = d->tag;
    outcome_buf_.push_back(o);
    ++kinds[static_cast<std::size_t>(d->kind) & 3];
    bytes += d->budget_bytes;
    release_tenant_budgets(*d);
    ++n;
  }
  // Counted and out of every budget before the observer hears of them: an observer that
  // publishes again on an outcome finds the room that outcome made.
  bump(delivered_, kinds[static_cast<std::size_t>(OutcomeKind::kDelivered)]);
  bump(rejected_, kinds[static_cast<std::size_t>(OutcomeKind::kRejected)]);
  bump(exhausted_, kinds[static_cast<std::size_t>(OutcomeKind::kExhausted)]);
  bump(dropped_, kinds[static_cast<std::size_t>(OutcomeKind::kDropped)]);
  engine_.shared_->in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
  engine_.shared_->in_flight.fetch_sub(n, std::memory_order_relaxed);
  const transport::ClientStats cs = client_->stats();  // the connections, as of these outcomes
  conns_h2_.store(cs.connections_h2, std::memory_order_relaxed);
  conns_h1_.store(cs.connections_h1, std::memory_order_relaxed);
  engine_.observer_->on_outcomes(outcome_buf_);
  for (Delivery* d = done_.front(); d != nullptr;) {
    Delivery* next = done_.next(d);
    Delivery::destroy(d);
    d = next;
  }
  done_.reset();  // every delivery in it is freed
}

// --- Stopping -----------------------------------------------------------------------------------

void Worker::request_stop(std::chrono::milliseconds drain) {
  if (!thread_.joinable()) return;
  drain_ms_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, drain.count()));
  stop_requested_.store(true, std::memory_order_release);
  uv_async_send(&async_);
}

std::vector<Unfinished> Worker::join() {
  if (!thread_.joinable()) return {};
  thread_.join();
  // Anything enqueued after the loop drained its inbox (none: stop() waits for publishers).
  Delivery* d = nullptr;
  while (inbox_.try_dequeue(d)) hand_back(*d, d->not_before_unix_ms);
  return std::move(unfinished_);
}

void Worker::begin_stop() {
  stopping_ = true;
  drain_inbox();  // queued deliveries are handed back (stopping_)
  // Waiting deliveries keep their due time across the restart: what is left of the wait in loop
  // time, from the wall clock now. Both clocks are read once, the loop's freshly.
  uv_update_time(&loop_);
  const std::uint64_t loop_now = timers_->now();
  const std::int64_t wall_now = now_unix_ms();
  for (Delivery* d : parked_) hand_back(*d, 0);
  parked_.clear();
  holds_.clear();  // every held delivery is in the waiting list, handed back below
  while (WaitingRetry* w = waiting_list_.front()) {
    const std::uint64_t due = w->backoff.deadline();
    const std::uint64_t left = due > loop_now ? due - loop_now : 0;
    timers_->cancel(w->backoff);
    unwait(*w);
    hand_back(*w, wall_now + static_cast<std::int64_t>(left));
  }
  if (attempting_ == 0) {
    timers_->schedule(drain_timer_, timers_->now());
  } else {
    timers_->schedule_after(drain_timer_, drain_ms_);
  }
}

void Worker::on_drain_deadline() noexcept {
  // Whatever is still in flight is cut: the client completes it with kCancelled (handed back).
  close_handles();
}

void Worker::maybe_close() {
  // Through the timer wheel, never from inside a client callback: closing the client there
  // would tear down the connection whose callback is on the stack.
  if (stopping_ && attempting_ == 0 && !closing_) timers_->schedule(drain_timer_, timers_->now());
}

void Worker::close_handles() {
  if (closing_) return;
  closing_ = true;
  timers_->cancel(drain_timer_);
  client_->close(
      [](void* data) {
        auto* w = static_cast<Worker*>(data);
        w->flush_journal();
        w->flush_outcomes();
        uv_close(reinterpret_cast<uv_handle_t*>(&w->async_), nullptr);
        uv_close(reinterpret_cast<uv_handle_t*>(&w->flush_), nullptr);
        w->streams_->close();
        w->timers_->close();
      },
      this);
}

void Worker::add_stats(EngineStats& st) const {
  st.delivered += delivered_.load(std::memory_order_relaxed);
  st.rejected += rejected_.load(std::memory_order_relaxed);
  st.exhausted += exhausted_.load(std::memory_order_relaxed);
  st.dropped += dropped_.load(std::memory_order_relaxed);
  st.attempts += attempts_.load(std::memory_order_relaxed);
  st.attempts_2xx += a2xx_.load(std::memory_order_relaxed);
  st.attempts_3xx += a3xx_.load(std::memory_order_relaxed);
  st.attempts_4xx += a4xx_.load(std::memory_order_relaxed);
  st.attempts_5xx += a5xx_.load(std::memory_order_relaxed);
  st.attempts_failed += afailed_.load(std::memory_order_relaxed);
  st.waiting_retry += waiting_.load(std::memory_order_relaxed);
  st.waiting_retry_bytes += waiting_bytes_.load(std::memory_order_relaxed);
  st.waiting_retry_on_disk += waiting_on_disk_.load(std::memory_order_relaxed);
  st.body_reads += body_reads_.load(std::memory_order_relaxed);
  st.body_read_failures += body_read_failures_.load(std::memory_order_relaxed);
  st.connections_h2 += conns_h2_.load(std::memory_order_relaxed);
  st.targets += targets_count_.load(std::memory_order_relaxed);
  st.connections_h1 += conns_h1_.load(std::memory_order_relaxed);
}

}  // namespace fanout::engine
