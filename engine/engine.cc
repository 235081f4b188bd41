#include "fanout/engine.h"

#include <algorithm>
#include <cmath>
#include <thread>

#include <sodium.h>

#include "engine/producer_state.h"
#include "engine/worker.h"
#include "fanout/version.h"
#include "routing/routing_table.h"

namespace fanout {

using engine::Worker;

std::string_view to_string(OutcomeKind kind) noexcept {
  switch (kind) {
    case OutcomeKind::kDelivered:
      return "delivered";
    case OutcomeKind::kRejected:
      return "rejected";
    case OutcomeKind::kExhausted:
      return "exhausted";
    case OutcomeKind::kDropped:
      return "dropped";
  }
  return "unknown";
}

std::uint64_t backoff_ms(const RetryPolicy& policy, std::uint32_t retry, double unit) noexcept {
  if (retry == 0) retry = 1;
  double delay = static_cast<double>(policy.base_ms) * std::pow(policy.factor, retry - 1.0);
  delay = std::min(delay, static_cast<double>(policy.cap_ms));
  // unit in [0, 1) maps to a factor in [1 - jitter, 1 + jitter).
  delay *= 1.0 + policy.jitter * (2.0 * unit - 1.0);
  return delay <= 0 ? 0 : static_cast<std::uint64_t>(std::llround(delay));
}

// --- Engine -------------------------------------------------------------------------------------

Engine::Engine(EngineOptions options, Observer* observer)
    : options_(std::move(options)),
      observer_(observer),
      table_(std::make_unique<routing::RoutingTable>()),
      shared_(std::make_unique<Shared>()) {
  shared_->org_budget = std::make_unique<engine::BudgetTable>(options_.budget_slots);
  shared_->origin_budget = std::make_unique<engine::BudgetTable>(options_.budget_slots);
}

tl::expected<std::unique_ptr<Engine>, std::string> Engine::create(EngineOptions options,
                                                                  Observer* observer) {
  if (observer == nullptr) return tl::unexpected(std::string("an Observer is required"));
  // Generated event ids use libsodium's CSPRNG (idempotent and thread-safe).
  if (sodium_init() < 0) return tl::unexpected(std::string("libsodium failed to initialise"));
  if (options.workers == 0) options.workers = std::max(1u, std::thread::hardware_concurrency());
  if (options.retry.factor < 1.0 || options.retry.jitter < 0 || options.retry.jitter >= 1) {
    return tl::unexpected(std::string("retry: factor must be >= 1 and jitter in [0, 1)"));
  }
  if (options.signing_threads > 256) {
    return tl::unexpected(std::string("signing_threads: at most 256"));
  }
  std::unique_ptr<Engine> e(new Engine(std::move(options), observer));
  for (const std::string& t : e->options_.extra_event_types) {
    auto r = e->catalogue_.add(t);
    if (!r) {
      return tl::unexpected("event type \"" + t +
                            "\": " + std::string(routing::to_string(r.error())));
    }
  }
  for (const std::string& cidr : e->options_.allow_subnets) {
    auto s = transport::Subnet::parse(cidr);
    if (!s) {
      return tl::unexpected("allow-subnet \"" + cidr +
                            "\": " + std::string(transport::to_string(s.error())));
    }
    // Only checked here: the workers' clients take the list through client_options().
  }
  if (!e->options_.signing_key_pem.empty()) {
    auto signer = engine::Signer::from_pem(e->options_.signing_key_pem);
    if (!signer) return tl::unexpected("signing key: " + signer.error());
    e->shared_->signer = std::move(*signer);
    if (e->options_.partoo_signature) e->shared_->partoo_signer = &*e->shared_->signer;
  }
  if (!e->options_.durability.dir.empty()) {
    auto journal = engine::Journal::open(e->options_.durability, e->catalogue_);
    if (!journal) return tl::unexpected(std::move(journal.error()));
    e->shared_->journal = std::move(*journal);
  }
  for (unsigned i = 0; i < e->options_.workers; ++i) {
    e->workers_.push_back(std::make_unique<Worker>(*e, i));
  }
  if (e->shared_->partoo_signer != nullptr && e->options_.signing_threads > 0) {
    std::vector<Worker*> workers;
    for (auto& w : e->workers_) workers.push_back(w.get());
    e->shared_->sign_pool = std::make_unique<engine::SignPool>(
        *e->shared_->partoo_signer, std::move(workers), e->options_.signing_threads);
  }
  return e;
}

Engine::~Engine() {
  (void)stop(std::chrono::milliseconds(0));
}

tl::expected<void, std::string> Engine::start() {
  for (auto& w : workers_) {
    auto r = w->start();
    if (!r) {
      (void)stop(std::chrono::milliseconds(0));
      return r;
    }
  }
  if (shared_->sign_pool) shared_->sign_pool->start();
  shared_->running.store(true, std::memory_order_seq_cst);
  if (engine::Journal* j = shared_->journal.get()) {
    j->start();
    // Every accepted delivery without a final outcome goes back to its worker, attempts and
    // due time as recorded; the worker routes it again (dropped if its subscription is gone).
    Producer producer = make_producer();
    for (const engine::Journal::Recovered& r : j->take_recovered()) {
      const PublishResult p = producer.state_->restart(r.u, r.did, 0);
      if (p.status == PublishStatus::kAccepted) {
        shared_->recovered.fetch_add(1, std::memory_order_relaxed);
      } else {
        j->final(r.did, OutcomeKind::kDropped, r.u.attempts);  // its event type is gone
      }
    }
  }
  return {};
}

std::vector<Unfinished> Engine::stop(std::chrono::milliseconds drain) {
  std::lock_guard lock(shared_->stop_mu);
  std::vector<Unfinished> out;
  if (shared_->stopped) return out;
  shared_->stopped = true;
  shared_->running.store(false, std::memory_order_seq_cst);
  // Publishers already past their running check finish enqueueing before workers drain (the
  // argument is at Producer::State::Entered). A producer made from now on reads running false:
  // registering it after this lock is released orders it after the store above.
  {
    std::lock_guard producers_lock(shared_->producers_mu);
    for (const engine::PublishGate* gate : shared_->producers) {
      while (gate->publishing.load(std::memory_order_seq_cst)) std::this_thread::yield();
    }
  }
  // What the signing threads hold goes to the inboxes (unsigned if not signed yet) before any
  // worker drains.
  if (shared_->sign_pool) shared_->sign_pool->stop();
  // Every worker drains at once: the whole stop takes one `drain`, not one per worker.
  for (auto& w : workers_) w->request_stop(drain);
  for (auto& w : workers_) {
    auto u = w->join();
    out.insert(out.end(), std::make_move_iterator(u.begin()), std::make_move_iterator(u.end()));
  }
  // The last attempts' results reach the disk before stop() returns.
  if (shared_->journal) shared_->journal->stop();
  return out;
}

void Engine::upsert(routing::Subscription s) {
  table_->upsert(std::move(s));
}

bool Engine::remove(std::int64_t org_id, std::string_view event_type) {
  const auto type = catalogue_.find(event_type);
  return type && table_->remove({org_id, *type});
}

void Engine::load(std::vector<routing::Subscription> subscriptions) {
  table_->load(std::move(subscriptions));
}

tl::expected<routing::Subscription, std::vector<routing::Violation>> Engine::upsert(
    std::int64_t id, const routing::SubscriptionSpec& spec) {
  routing::ValidationOptions vo;
  vo.allow_insecure_http = options_.insecure;
  auto s = routing::validate(spec, catalogue_, vo);
  if (!s) return s;
  s->id = id;
  table_->upsert(*s);
  return s;
}

EngineStats Engine::stats() const {
  EngineStats st;
  st.published = shared_->published.load(std::memory_order_relaxed);
  st.refused_invalid = shared_->refused_invalid.load(std::memory_order_relaxed);
  st.refused_no_subscription = shared_->refused_no_subscription.load(std::memory_order_relaxed);
  st.refused_busy = shared_->refused_busy.load(std::memory_order_relaxed);
  st.refused_org_busy = shared_->refused_org_busy.load(std::memory_order_relaxed);
  st.refused_origin_busy = shared_->refused_origin_busy.load(std::memory_order_relaxed);
  st.refused_backlog_busy = shared_->refused_backlog_busy.load(std::memory_order_relaxed);
  const std::int64_t bytes = shared_->in_flight_bytes.load(std::memory_order_relaxed);
  st.in_flight_bytes = bytes > 0 ? static_cast<std::uint64_t>(bytes) : 0;
  const std::int64_t in_flight = shared_->in_flight.load(std::memory_order_relaxed);
  st.in_flight = in_flight > 0 ? static_cast<std::uint64_t>(in_flight) : 0;
  for (const auto& w : workers_) w->add_stats(st);
  if (shared_->sign_pool) st.signed_off_worker = shared_->sign_pool->signed_count();
  st.refused_duplicate = shared_->refused_duplicate.load(std::memory_order_relaxed);
  st.recovered = shared_->recovered.load(std::memory_order_relaxed);
  if (shared_->journal) {
    const auto js = shared_->journal->stats();
    st.journal_commits = js.commits;
    st.journal_commit_failures = js.commit_failures;
    st.journal_records = js.records;
    st.journal_bytes = js.bytes;
    st.journal_frames_indexed = js.indexed;
    st.journal_index_failures = js.index_failures;
    st.journal_backlog_waits = js.backlog_waits;
    st.journal_index_boosts = js.index_boosts;
    st.journal_checkpoints = js.checkpoints;
  }
  return st;
}

// --- durability (the rest: engine_history.cc) --------------------------------------------------

void Engine::resend_one(const Unfinished& u, std::int64_t did, Resent& out) {
  if (!history_producer_) history_producer_ = std::make_unique<Producer>(make_producer());
  const PublishResult r = history_producer_->state_->restart(u, 0, did);
  if (r.status == PublishStatus::kAccepted) {
    ++out.count;
    out.seq = r.seq;
  } else if (r.status == PublishStatus::kBusy || r.status == PublishStatus::kStopped) {
    ++out.busy;
  }
}

}  // namespace fanout
