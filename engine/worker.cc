#include "engine/worker.h"

#include <pthread.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "engine/client_options.h"

namespace fanout::engine {

namespace {

// Deliveries started per inbox wake-up before the loop gets back to I/O.
constexpr std::size_t kInboxBatch = 256;
constexpr std::size_t kInboxCapPerTurn = 8192;
// Bytes of a receiver's answer a delivery keeps (transport::Request::max_body_excerpt).
constexpr std::size_t kBodyExcerpt = 256;
// How often a worker looks for targets of deleted or changed subscriptions (loop time). A sweep
// costs one pin when the routing table did not change, a walk of the worker's targets when it did.
constexpr std::uint64_t kTargetSweepMs = 1'000;

// The attempt number as text in the attempt's buffer (what snprintf("%u") wrote there,
// truncated to its 3 characters, without snprintf's cost on every attempt).
std::string_view attempt_text(std::uint32_t attempts, AttemptHeaders& h) noexcept {
  char digits[10];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, attempts);
  (void)ec;  // ten digits hold any uint32
  const std::size_t n =
      std::min<std::size_t>(static_cast<std::size_t>(end - digits), sizeof h.attempt_text - 1);
  std::memcpy(h.attempt_text, digits, n);
  h.attempt_text[n] = '\0';
  return {h.attempt_text, n};
}

}  // namespace

void name_this_thread(const char* prefix, unsigned index) noexcept {
  char name[16];
  std::snprintf(name, sizeof name, "%s%u", prefix, index);
  pthread_setname_np(pthread_self(), name);
}

std::int64_t now_unix_ms() noexcept {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  return static_cast<std::int64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

Delivery* Delivery::make(DeliveryPool* pool, std::size_t id_size, std::size_t body_size) {
  const std::size_t size = sizeof(Delivery) + id_size + kWebhookGap + body_size;
  std::uint8_t cls = DeliveryPool::kUnpooled;
  void* block = pool != nullptr ? pool->take(size, cls) : ::operator new(size);
  auto* d = new (block) Delivery;
  d->pool_ = pool;
  d->pool_class_ = cls;
  // Only the status matters to a delivery; a waiting retry must not hold a large error page.
  d->max_body_excerpt = kBodyExcerpt;
  d->event_id = std::string_view(d->id_data(), id_size);
  d->body_bytes = std::string_view(d->body_data(), body_size);
  return d;
}

void Delivery::destroy(Delivery* d) noexcept {
  DeliveryPool* pool = d->pool_;
  const std::uint8_t cls = d->pool_class_;
  d->~Delivery();
  if (pool != nullptr) {
    pool->give(d, cls);
  } else {
    ::operator delete(static_cast<void*>(d));
  }
}

WaitingRetry* WaitingRetry::make(std::size_t id_size, std::size_t body_size) {
  auto* w = new (::operator new(sizeof(WaitingRetry) + id_size + body_size)) WaitingRetry;
  w->id_size = static_cast<std::uint32_t>(id_size);
  w->body_size = static_cast<std::uint32_t>(body_size);
  return w;
}

void WaitingRetry::destroy(WaitingRetry* w) noexcept {
  w->~WaitingRetry();
  ::operator delete(static_cast<void*>(w));
}

void Worker::release_budget(Engine::Shared& sh, const DeliveryState& d) noexcept {
  sh.in_flight_bytes.fetch_sub(d.budget_bytes, std::memory_order_relaxed);
  release_tenant_budgets(d);
}

void Worker::release_tenant_budgets(const DeliveryState& d) noexcept {
  if (d.org_budget != nullptr) BudgetTable::give_back(*d.org_budget, d.budget_bytes);
  if (d.origin_budget != nullptr) BudgetTable::give_back(*d.origin_budget, d.budget_bytes);
}

void Delivery::on_response(const transport::Response& response) {
  worker->on_response(*this, response);
}

Worker::Worker(Engine& engine, unsigned index) : engine_(engine), index_(index) {
  drain_timer_.bind<&Worker::on_drain_deadline>(this);
}

Worker::~Worker() {
  assert(!thread_.joinable() && "stop() the worker before destroying it");
  while (AttemptHeaders* h = free_headers_) {
    free_headers_ = h->next_free;
    delete h;
  }
}

tl::expected<void, std::string> Worker::start() {
  thread_ = std::thread([this] { run(); });
  // Wait for the loop to be set up (or to fail) so start() reports errors.
  while (started_.load(std::memory_order_acquire) == 0) std::this_thread::yield();
  if (started_.load(std::memory_order_acquire) < 0) {
    thread_.join();
    return tl::unexpected(start_error_);
  }
  return {};
}

void Worker::run() {
  name_this_thread("fanout-w", index_);
  uv_loop_init(&loop_);
  streams_ = std::make_unique<transport::StreamLoop>(&loop_);
  timers_ = std::make_unique<transport::LoopTimer>(&loop_);
  auto client = transport::Client::create(*streams_, *timers_, client_options(engine_.options_));
  if (!client) {
    start_error_ = client.error();
    streams_->close();
    timers_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    started_.store(-1, std::memory_order_release);
    return;
  }
  client_ = std::move(*client);
  sweep_timer_.bind<&Worker::sweep_targets>(this);
  timers_->schedule_after(sweep_timer_, kTargetSweepMs);
  reader_.emplace(engine_.table_->make_reader());
  consumer_.emplace(inbox_);
  uv_async_init(&loop_, &async_, on_async);
  async_.data = this;
  // A prepare handle runs after every callback of an iteration and before the loop blocks, so
  // outcomes made in any phase (I/O, timers) reach the observer without waiting for more I/O.
  uv_prepare_init(&loop_, &flush_);
  flush_.data = this;
  uv_prepare_start(&flush_, on_flush);
  uv_unref(reinterpret_cast<uv_handle_t*>(&flush_));
  started_.store(1, std::memory_order_release);

  uv_run(&loop_, UV_RUN_DEFAULT);

  client_.reset();
  reader_.reset();
  // Every delivery is gone, so no target is still referenced.
  idle_targets_.reset();
  idle_count_ = 0;
  for (auto& [id, t] : targets_) delete t;
  targets_.clear();
  count_targets(-static_cast<std::ptrdiff_t>(live_targets_));
  const int rc = uv_loop_close(&loop_);
  assert(rc == 0 && "a handle outlived the worker's loop");
  (void)rc;
}

void Worker::enqueue(moodycamel::ProducerToken& token, Delivery* d) {
  d->worker = this;
  inbox_.enqueue(token, d);
  uv_async_send(&async_);
}

void Worker::enqueue_bulk(moodycamel::ProducerToken& token, Delivery* const* ds, std::size_t n) {
  if (n == 0) return;
  // One at a time: moodycamel's enqueue_bulk trips GCC 12's -Wstringop-overflow once inlined,
  // and a tokened enqueue is a few stores; the wake-up is what is shared.
  for (std::size_t i = 0; i < n; ++i) inbox_.enqueue(token, ds[i]);
  uv_async_send(&async_);
}

void Worker::on_async(uv_async_t* handle) {
  auto* self = static_cast<Worker*>(handle->data);
  if (self->stop_requested_.load(std::memory_order_acquire) && !self->stopping_) {
    self->begin_stop();
    return;
  }
  self->drain_releases();
  self->drain_inbox();
}

void Worker::drain_inbox() {
  const transport::ClockScope clock;  // the batch's requests stamped with one clock read
  Delivery* batch[kInboxBatch];
  std::size_t total = 0;
  while (total < kInboxCapPerTurn) {
    const std::size_t n = inbox_.try_dequeue_bulk(*consumer_, batch, kInboxBatch);
    if (n == 0) return;
    total += n;
    for (std::size_t i = 0; i < n; ++i) {
      Delivery& d = *batch[i];
      if (stopping_) {
        hand_back(d, d.not_before_unix_ms);
      } else if (d.not_before_unix_ms != 0) [[unlikely]] {
        start_resumed(d);
      } else {
        attempt(d);
      }
    }
  }
  // More is queued: come back after the loop has served I/O (wake-ups coalesce, so ask again).
  uv_async_send(&async_);
}

Target* Worker::target_for(const routing::Subscription& s, std::uint64_t version) {
  auto it = targets_.find(s.id);
  if (it != targets_.end()) {
    Target* t = it->second;
    if (t->matches(s, version)) {
      if (t->refs == 0) {  // idle until now: the caller takes a reference
        transport::IntrusiveList<Target>::erase(t);
        --idle_count_;
      }
      return t;
    }
    // The subscription changed (URL, headers, signing or secret): later attempts use a fresh
    // copy; deliveries already in flight keep theirs.
    retire(t);
  }
  auto* t = new Target;
  t->subscription_id = s.id;
  t->url = s.url;
  t->parts = s.parts;
  t->headers = s.custom_headers;
  t->lower_names.reserve(t->headers.size());
  for (const routing::Header& h : t->headers) {
    std::string& lower = t->lower_names.emplace_back(h.name.size(), '\0');
    transport::lower_header_name(h.name, lower.data());
  }
  t->signing = s.signing;
  t->secret = s.webhook_secret;
  t->org_id = s.org_id;
  t->type = s.event_type;
  t->checked_sub = &s;
  t->checked_version = version;
  targets_.emplace(s.id, t);
  count_targets(1);
  return t;
}

void Worker::retire(Target* t) {
  t->stale = true;
  targets_.erase(t->subscription_id);
  if (t->refs == 0) {
    if (t->linked()) {
      transport::IntrusiveList<Target>::erase(t);
      --idle_count_;
    }
    delete t;
    count_targets(-1);
  }
}

void Worker::release(Delivery& d) {
  Target* t = std::exchange(d.dest, nullptr);
  if (t == nullptr) return;
  if (--t->refs != 0) return;
  if (t->stale) {
    delete t;
    count_targets(-1);
    return;
  }
  idle_targets_.push_back(t);
  if (++idle_count_ > kKeptIdleTargets) retire(idle_targets_.front());
}

void Worker::sweep_targets() noexcept {
  if (stopping_) return;
  {
    auto pin = reader_->pin();
    if (pin.version() != swept_version_) {
      swept_version_ = pin.version();
      for (auto it = targets_.begin(); it != targets_.end();) {
        Target* t = (it++)->second;  // retire() erases t's entry
        const routing::Subscription* s = pin.find(t->org_id, t->type);
        if (s == nullptr || s->id != t->subscription_id || !t->matches(*s, swept_version_)) {
          retire(t);
        }
      }
    }
  }
  move_bodies_to_disk();
  timers_->schedule_after(sweep_timer_, kTargetSweepMs);
}

void Worker::count_targets(std::ptrdiff_t delta) noexcept {
  live_targets_ = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(live_targets_) + delta);
  targets_count_.store(live_targets_, std::memory_order_relaxed);
}

void Worker::attempt(Delivery& d) {
  const routing::Subscription* s = nullptr;
  Target* t = nullptr;
  {
    auto pin = reader_->pin();
    s = pin.find(d.org_id, d.type);
    if (s != nullptr && s->id == d.subscription_id) t = target_for(*s, pin.version());
  }
  if (t == nullptr) {
    // Its subscription is gone or replaced: so is the target this worker kept for it.
    if (auto it = targets_.find(d.subscription_id); it != targets_.end()) retire(it->second);
    finish(d, OutcomeKind::kDropped);
    if (engine_.shared_->journal != nullptr && d.did != 0) {
      journal_notes_.push_back(
          Journal::Note::final_only(d.did, now_unix_ms(), OutcomeKind::kDropped, d.attempts));
    }
    return;
  }
  ++t->refs;
  d.dest = t;
  d.tls = t->parts.scheme == routing::Scheme::kHttps;
  d.host = t->parts.host;
  d.port = t->parts.port;
  d.target = t->parts.target;
  AttemptHeaders& hv = lend_headers(d);
  std::size_t n = 0;
  // Names lowered once (the target's, and literals here) rather than by the client on every
  // request: HeaderView::lower_name.
  for (std::size_t i = 0; i < t->headers.size(); ++i) {
    hv.views[n++] = {t->headers[i].name, t->headers[i].value, false, t->lower_names[i]};
  }
  hv.views[n++] = {"X-Partoo-Event-Id", d.event_id, /*never_index=*/true, "x-partoo-event-id"};
  ++d.attempts;
  hv.views[n++] = {"X-Partoo-Attempt", attempt_text(d.attempts, hv), false, "x-partoo-attempt"};
  // Signed once, on the worker's thread at the first attempt unless a signing thread did it
  // (not on the publishing thread: Ed25519 costs more than everything else publish() does).
  const Signer* partoo = engine_.shared_->partoo_signer;
  if (!d.has_signature && partoo != nullptr) d.sign(*partoo);
  // A delivery saved signed and resumed by a daemon that no longer sends the header: not sent.
  if (d.has_signature && partoo != nullptr) {
    hv.views[n++] = {"X-Partoo-Signature-v1",
                     std::string_view(d.signature, Signer::kSignatureBase64Size),
                     /*never_index=*/true, "x-partoo-signature-v1"};
  }
  if (t->signing != routing::WebhookSigning::kOff &&
      (t->signing != routing::WebhookSigning::kDefault ||
       engine_.options_.standard_webhooks > routing::WebhookSigning::kOff)) [[unlikely]] {
    n = standard_webhooks(d, hv, *t, n);
  }
  d.headers = std::span<const transport::HeaderView>(hv.views.data(), n);
  d.body = d.body_bytes;
  ++attempting_;
  bump(attempts_);
  client_->submit(d);
}

AttemptHeaders& Worker::lend_headers(Delivery& d) {
  AttemptHeaders* h = free_headers_;
  if (h != nullptr) {
    free_headers_ = h->next_free;
    --free_headers_count_;
  } else {
    h = new AttemptHeaders;
  }
  d.attempt_headers = h;
  return *h;
}

void Worker::take_back_headers(Delivery& d) noexcept {
  AttemptHeaders* h = d.attempt_headers;
  if (h == nullptr) return;
  d.attempt_headers = nullptr;
  d.headers = {};
  if (free_headers_count_ >= kKeptAttemptHeaders) {
    delete h;
    return;
  }
  h->next_free = free_headers_;
  free_headers_ = h;
  ++free_headers_count_;
}

std::size_t Worker::standard_webhooks(Delivery& d, AttemptHeaders& h, const Target& t,
                                      std::size_t n) {
  using routing::WebhookSigning;
  const WebhookSigning mode =
      t.signing == WebhookSigning::kDefault ? engine_.options_.standard_webhooks : t.signing;
  const bool v1 =
      (mode == WebhookSigning::kV1 || mode == WebhookSigning::kBoth) && !t.secret.empty();
  const Signer* signer = engine_.shared_->signer ? &*engine_.shared_->signer : nullptr;
  const bool v1a =
      (mode == WebhookSigning::kV1a || mode == WebhookSigning::kBoth) && signer != nullptr;
  if (!v1 && !v1a) return n;
  // This attempt's time: a retry is signed afresh, so a receiver can refuse stale replays.
  const auto [end, ec] = std::to_chars(
      h.webhook_timestamp, h.webhook_timestamp + sizeof h.webhook_timestamp, now_unix_ms() / 1000);
  (void)ec;  // 20 chars hold any int64
  const std::string_view ts(h.webhook_timestamp,
                            static_cast<std::size_t>(end - h.webhook_timestamp));
  const std::span<const std::uint8_t> secret(reinterpret_cast<const std::uint8_t*>(t.secret.data()),
                                             t.secret.size());
  std::size_t sig_size = 0;
  if (ts.size() == kWebhookTimestampDigits) [[likely]] {
    // id, then ".TIMESTAMP." in the gap before the body: signed in place.
    char* gap = d.id_data() + d.event_id.size();
    gap[0] = '.';
    std::memcpy(gap + 1, ts.data(), ts.size());
    gap[kWebhookGap - 1] = '.';
    const std::string_view content(d.id_data(),
                                   d.event_id.size() + kWebhookGap + d.body_bytes.size());
    sig_size = write_webhook_signature(v1, v1a, secret, signer, content, h.webhook_signature);
  } else {
    // A clock before 2001 (or after 2286): the gap does not fit; a copy does.
    std::string content;
    content.reserve(d.event_id.size() + ts.size() + 2 + d.body_bytes.size());
    content.append(d.event_id).append(".").append(ts).append(".").append(d.body_bytes);
    sig_size = write_webhook_signature(v1, v1a, secret, signer, content, h.webhook_signature);
  }
  h.views[n++] = {"webhook-id", d.event_id, /*never_index=*/true, "webhook-id"};
  h.views[n++] = {"webhook-timestamp", ts, false, "webhook-timestamp"};
  h.views[n++] = {"webhook-signature", std::string_view(h.webhook_signature, sig_size),
                  /*never_index=*/true, "webhook-signature"};
  return n;
}

void Worker::on_response(Delivery& d, const transport::Response& r) {
  --attempting_;
  take_back_headers(d);
  release(d);
  d.last_status = r.status;
  d.last_failure = r.failure;
  d.last_duration_us = static_cast<std::uint32_t>(std::min<std::uint64_t>(r.total_us, UINT32_MAX));
  d.last_response_us =
      static_cast<std::uint32_t>(std::min<std::uint64_t>(r.response_us, UINT32_MAX));
  bool retry = false;
  if (r.failure == transport::Failure::kNone) {
    const int cls = r.status / 100;
    bump(cls == 2 ? a2xx_ : cls == 3 ? a3xx_ : cls == 4 ? a4xx_ : a5xx_);
    if (cls == 2) {
      finish(d, OutcomeKind::kDelivered);
    } else if (cls == 5 || cls == 1 || (r.status == 429 && engine_.options_.retry.retry_429)) {
      retry = true;
    } else {
      finish(d, OutcomeKind::kRejected);  // 3xx (never followed) and 4xx
    }
  } else if (r.failure == transport::Failure::kQueueFull) [[unlikely]] {
    // Refused here, before anything was sent (the origin's queue is full): not an attempt.
    // The delivery waits in the parked FIFO and goes again as completions free the queue.
    --d.attempts;
    drop(attempts_);
    if (stopping_) {
      hand_back(d, 0);
    } else {
      parked_.push_back(&d);
    }
    maybe_close();
    return;
  } else {
    bump(afailed_);
    if (r.failure == transport::Failure::kCancelled && stopping_) {
      --d.attempts;  // cut by the shutdown: not an attempt the receiver saw through
      hand_back(d, 0);
      maybe_close();
      return;
    }
    if (transport::is_retryable(r.failure)) {
      retry = true;
    } else {
      finish(d, OutcomeKind::kRejected);  // address refused, http:// outside insecure mode
    }
  }
  if (!retry) {
    journal_attempt(d, 0, /*final=*/true);
  } else if (d.attempts > engine_.options_.retry.max_retries) {
    finish(d, OutcomeKind::kExhausted);
    journal_attempt(d, 0, /*final=*/true);
  } else if (stopping_) {
    // The retry is due after its backoff, restart or not.
    const std::int64_t due = now_unix_ms() + static_cast<std::int64_t>(draw_backoff_ms(d));
    journal_attempt(d, due, /*final=*/false);
    note_retry(d, d.event_id, due);
    hand_back(d, due);
  } else {
    const std::uint64_t delay = draw_backoff_ms(d);
    const std::int64_t due = now_unix_ms() + static_cast<std::int64_t>(delay);
    if (d.hold_retries) {
      d.hold = next_hold();
      d.held_due = false;
    }
    journal_attempt(d, due, /*final=*/false);
    WaitingRetry& w = wait(d, delay);  // d is gone: a WaitingRetry from here on
    note_retry(w, w.event_id(), due);
  }
  // A completion made room in some origin's queue: one parked delivery goes again.
  // (One that ends without being sent, dropped, does not count: the next one goes instead.)
  while (!parked_.empty() && !stopping_) {
    Delivery* next = parked_.front();
    parked_.pop_front();
    const std::size_t before = attempting_;
    attempt(*next);
    if (attempting_ != before) break;
  }
  maybe_close();
}

void Worker::journal_attempt(const Delivery& d, std::int64_t next_ms, bool final) {
  if (engine_.shared_->journal == nullptr || d.did == 0) return;
  journal_notes_.push_back({d.did, now_unix_ms(), next_ms, d.attempts, d.last_status,
                            d.last_duration_us, d.last_failure, true,
                            final ? std::optional<OutcomeKind>(d.kind) : std::nullopt});
}

void Worker::flush_journal() {
  if (journal_notes_.empty()) return;
  engine_.shared_->journal->record(journal_notes_);
  journal_notes_.clear();
}

void Worker::finish(Delivery& d, OutcomeKind kind) {
  d.kind = kind;
  done_.push_back(&d);
}

}  // namespace fanout::engine
