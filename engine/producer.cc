// The publishing side of the engine (fanout/engine.h): Producer's state per publishing thread
// (producer_state.h: routing reader, envelope parser, inbox tokens, random event ids), publish()
// (parse, route, budget, build the body, journal, enqueue), publish_batch(), resume() and the
// held retries' release; Engine::make_producer(). The engine's set-up and stop: engine.cc.
#include "engine/producer_state.h"

namespace fanout {

std::string_view to_string(PublishStatus s) noexcept {
  switch (s) {
    case PublishStatus::kAccepted:
      return "accepted";
    case PublishStatus::kInvalid:
      return "invalid";
    case PublishStatus::kNoSubscription:
      return "no_subscription";
    case PublishStatus::kBusy:
      return "busy";
    case PublishStatus::kStopped:
      return "stopped";
    case PublishStatus::kDuplicate:
      return "duplicate";
  }
  return "unknown";
}

// --- Producer -----------------------------------------------------------------------------------

Producer::Producer(std::unique_ptr<State> state) noexcept : state_(std::move(state)) {}
Producer::Producer(Producer&&) noexcept = default;
Producer::~Producer() = default;

PublishResult Producer::publish(std::string_view event_json) {
  static const PublishOptions kNone;
  return publish(event_json, kNone);
}

PublishResult Producer::publish(std::string_view event_json, const PublishOptions& options) {
  Engine::Shared& sh = *state_->engine->shared_;
  // Entered before the running check so stop() can wait for publishers already past it.
  const State::Entered entered(state_->gate);
  if (!sh.running.load(std::memory_order_seq_cst))
    return {PublishStatus::kStopped, {}, {}, 0, 0, {}};
  // Pinned before the parse so that the parser's KeyListener can prefetch what enqueue() looks
  // up; held until enqueue() returns.
  const routing::RoutingTable::Pin pin = state_->reader.pin();
  State::Prefetch prefetch(pin, *sh.org_budget);
  auto env = state_->parser.parse(event_json, &prefetch);
  if (!env) {
    sh.refused_invalid.fetch_add(1, std::memory_order_relaxed);
    return {PublishStatus::kInvalid, routing::reason_code(env.error()), {}, 0, 0, {}};
  }
  if (!options.allowed_orgs.empty() &&
      !std::binary_search(options.allowed_orgs.begin(), options.allowed_orgs.end(), env->org_id)) {
    sh.refused_invalid.fetch_add(1, std::memory_order_relaxed);
    return {PublishStatus::kInvalid, "org_not_allowed", {}, 0, 0, {}};
  }
  State::Extra x;
  x.check_id = !env->id.empty() && options.journal;
  x.journal = options.journal;
  x.tag = options.tag;
  x.hold_retries = options.hold_retries;
  x.attempts = options.attempts;
  x.not_before_unix_ms = options.next_attempt_unix_ms;
  x.pin = &pin;
  const std::string_view id = env->id.empty() ? options.default_id : env->id;
  return state_->enqueue(env->org_id, env->type, id, env->payload, x);
}

Producer::Batch::Batch(Producer& producer) noexcept
    : journal_(producer.state_->engine->shared_->journal.get()),
      outer_(engine::Journal::hold(journal_)) {}

Producer::Batch::~Batch() {
  engine::Journal::release(journal_, outer_);
}

void Producer::publish_batch(std::span<const std::string_view> events,
                             std::span<PublishResult> results) {
  const Batch batch(*this);
  const std::size_t n = std::min(events.size(), results.size());
  for (std::size_t i = 0; i < n; ++i) results[i] = publish(events[i]);
}

PublishResult Producer::resume(const Unfinished& u) {
  Engine::Shared& sh = *state_->engine->shared_;
  const State::Entered entered(state_->gate);
  if (!sh.running.load(std::memory_order_seq_cst))
    return {PublishStatus::kStopped, {}, {}, 0, 0, {}};
  const auto type = state_->engine->catalogue_.find(u.event_type);
  if (!type || u.body.empty()) {
    sh.refused_invalid.fetch_add(1, std::memory_order_relaxed);
    return {PublishStatus::kInvalid, "unknown_type", {}, 0, 0, {}};
  }
  // The worker decides whether it is due (its clock, at dequeue) and waits if not. Already
  // accepted once: never refused busy.
  State::Extra x;
  x.body = u.body;
  x.attempts = u.attempts;
  x.not_before_unix_ms = u.next_attempt_unix_ms;
  x.budget = false;
  x.tag = u.tag;
  x.journal = u.tag == 0;  // a broker's delivery stays the broker's
  return state_->enqueue(u.org_id, *type, u.event_id, {}, x);
}

void Producer::release_retry(std::uint64_t hold) noexcept {
  // Behind the same gate as publish(): once stop() has begun, the workers' wake-up handles may
  // be closing, and a stopping worker hands its held deliveries back anyway.
  const State::Entered entered(state_->gate);
  if (!state_->engine->shared_->running.load(std::memory_order_seq_cst)) return;
  const std::uint64_t w = engine::Worker::hold_worker(hold);
  auto& workers = state_->engine->workers_;
  if (w < workers.size()) workers[w]->release_hold(hold);
}

Producer Engine::make_producer() {
  return Producer(std::make_unique<Producer::State>(this, table_->make_reader()));
}

}  // namespace fanout
