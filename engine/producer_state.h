// Producer::State (fanout/engine.h's Producer): what one publishing thread holds, and the
// publish path itself (the id pool, the stop gate, the prefetch of the routing key, enqueue,
// restart). Shared by producer.cc (Producer's calls) and engine.cc (recovery and resend, which
// restart journal deliveries through a producer). Internal to the engine.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <sodium.h>

#include "engine/worker.h"
#include "fanout/engine.h"
#include "routing/routing_table.h"

namespace fanout {

struct Producer::State {
  engine::PublishGate gate;  // first: its own cache line (alignas(64))
  Engine* engine = nullptr;
  routing::RoutingTable::Reader reader;
  routing::EnvelopeParser parser;
  std::vector<moodycamel::ProducerToken> tokens;
  std::optional<moodycamel::ProducerToken> sign_token;  // with a sign pool
  // Generated event ids: 128 bits each, drawn 4 KiB at a time (ChaCha20 keyed by 32 bytes of
  // getrandom, through libsodium) so that an id costs no system call (one per 256 ids). With
  // EngineOptions::random (tests), ids come from that source instead, reproducibly.
  std::array<unsigned char, 4096> random_pool{};
  std::size_t random_used = 4096;
  char id_buf[32] = {};
  std::string last_id;  // the id returned by the last publish (capacity reused)

  State(Engine* e, routing::RoutingTable::Reader r)
      : engine(e), reader(std::move(r)), parser(e->catalogue_, [&] {
          routing::EnvelopeOptions o;
          o.max_event_bytes = e->options_.max_event_bytes;
          return o;
        }()) {
    for (auto& w : e->workers_) tokens.emplace_back(w->inbox());
    Engine::Shared& sh = *e->shared_;
    if (sh.sign_pool) sign_token.emplace(sh.sign_pool->make_token());
    std::lock_guard lock(sh.producers_mu);
    sh.producers.push_back(&gate);
  }

  ~State() {
    Engine::Shared& sh = *engine->shared_;
    std::lock_guard lock(sh.producers_mu);
    std::erase(sh.producers, &gate);
  }

  State(const State&) = delete;
  State& operator=(const State&) = delete;

  // Brackets publish() and resume() for stop(): entered before the running check, left after
  // the enqueue (or the refusal). The Dekker pattern, with Engine::stop() as the other side:
  //   here:   gate.publishing = true (seq_cst);  load running (seq_cst)
  //   stop(): running = false (seq_cst);         load each gate (seq_cst)
  // All four are in one total order S. If our store of true precedes stop's store of false in
  // S, stop's later load of our gate sees true (it waits) or our release store of false that
  // ends this call (which then happens-before stop's return: everything we enqueued is in the
  // inbox before the workers drain); it cannot see the false of an earlier call, which happens
  // before our store of true. Otherwise stop's store precedes our load of running in S, so we
  // read false and return kStopped before touching any queue. Acquire/release alone would not
  // do: both sides could read the old value (store-buffer reordering), the one case stop() must
  // exclude. Cost: one locked store to a line only this producer writes, and a plain store; no
  // line is shared between producers.
  struct Entered {
    engine::PublishGate& gate;
    explicit Entered(engine::PublishGate& g) noexcept : gate(g) {
      gate.publishing.store(true, std::memory_order_seq_cst);
    }
    ~Entered() { gate.publishing.store(false, std::memory_order_release); }
    Entered(const Entered&) = delete;
    Entered& operator=(const Entered&) = delete;
  };

  std::string_view generate_id() {
    static constexpr char kHex[] = "0123456789abcdef";
    unsigned char bits[16];
    if (engine->options_.random) {
      const std::uint64_t hi = engine->options_.random(), lo = engine->options_.random();
      std::memcpy(bits, &hi, 8);
      std::memcpy(bits + 8, &lo, 8);
    } else {
      if (random_used + sizeof bits > random_pool.size()) {
        // A fresh 256-bit seed from the kernel (one getrandom()), stretched into the pool by
        // ChaCha20 in user space. randombytes_buf() of the whole pool would cost 16 system
        // calls: the kernel hands out at most 256 bytes per getrandom().
        unsigned char seed[randombytes_SEEDBYTES];
        randombytes_buf(seed, sizeof seed);
        randombytes_buf_deterministic(random_pool.data(), random_pool.size(), seed);
        sodium_memzero(seed, sizeof seed);
        random_used = 0;
      }
      std::memcpy(bits, random_pool.data() + random_used, sizeof bits);
      sodium_memzero(random_pool.data() + random_used, sizeof bits);  // each id used once
      random_used += sizeof bits;
    }
    for (std::size_t i = 0; i < sizeof bits; ++i) {
      id_buf[2 * i] = kHex[bits[i] >> 4];
      id_buf[2 * i + 1] = kHex[bits[i] & 15];
    }
    return {id_buf, sizeof id_buf};
  }

  // What enqueue() needs beyond the envelope. publish(): all defaults. resume() and resend
  // fill in the rest.
  struct Extra {
    std::string_view body;       // the delivery body when already built (resume, resend)
    std::uint32_t attempts = 0;  // attempts already made
    std::int64_t not_before_unix_ms = 0;
    std::int64_t subscription_id = 0;  // non-zero: no routing at the door (the worker routes)
    std::int64_t did = 0;              // already in the journal (recovered at start)
    std::int64_t resend_of = 0;        // a resend of this journal delivery
    bool check_id = false;             // the publisher gave the id: idempotency applies
    bool budget = true;                // false: already accepted once, never refused busy
    bool journal = true;               // false: a broker holds it (PublishOptions::journal)
    std::uint64_t tag = 0;             // PublishOptions::tag
    bool hold_retries = false;         // PublishOptions::hold_retries (with a tag)
    // publish(): the snapshot pinned before the parse (see Prefetch); others: enqueue() pins.
    const routing::RoutingTable::Pin* pin = nullptr;
  };

  // publish()'s KeyListener: once the parser has read the routing key, starts loading the
  // routing entry and the organisation's budget slot, so those cache misses (a few hundred ns
  // each with many organisations) overlap the walk over the payload instead of stalling
  // enqueue().
  struct Prefetch final : routing::KeyListener {
    Prefetch(const routing::RoutingTable::Pin& p, const engine::BudgetTable& b) noexcept
        : pin(p), org_budget(b) {}
    void on_key(std::int64_t org_id, routing::EventTypeId type) noexcept override {
      pin.prefetch(org_id, type);
      org_budget.prefetch(static_cast<std::uint64_t>(org_id));
    }
    const routing::RoutingTable::Pin& pin;
    const engine::BudgetTable& org_budget;
  };

  // Takes `bytes` from the global byte budget, then one event and `bytes` from the
  // organisation's and the origin's (null: none); all or nothing. Empty when taken, else the
  // refusal's reason. `limited` false (resumed deliveries): taken whatever the limits.
  std::string_view take_budgets(std::int64_t bytes, engine::BudgetTable::Entry* org_e,
                                engine::BudgetTable::Entry* origin_e, bool limited) {
    Engine::Shared& sh = *engine->shared_;
    const EngineOptions& o = engine->options_;
    auto limit = [limited](std::size_t v) { return limited ? static_cast<std::int64_t>(v) : 0; };
    const std::int64_t total = sh.in_flight_bytes.fetch_add(bytes, std::memory_order_relaxed);
    if (limit(o.max_in_flight_bytes) != 0 && total + bytes > limit(o.max_in_flight_bytes)) {
      sh.in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      sh.refused_busy.fetch_add(1, std::memory_order_relaxed);
      return "busy";
    }
    if (!engine::BudgetTable::take(*org_e, bytes, limit(o.org_max_in_flight),
                                   limit(o.org_max_in_flight_bytes))) {
      sh.in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      sh.refused_busy.fetch_add(1, std::memory_order_relaxed);
      sh.refused_org_busy.fetch_add(1, std::memory_order_relaxed);
      return "org_busy";
    }
    if (origin_e != nullptr &&
        !engine::BudgetTable::take(*origin_e, bytes, limit(o.origin_max_in_flight),
                                   limit(o.origin_max_in_flight_bytes))) {
      engine::BudgetTable::give_back(*org_e, bytes);
      sh.in_flight_bytes.fetch_sub(bytes, std::memory_order_relaxed);
      sh.refused_busy.fetch_add(1, std::memory_order_relaxed);
      sh.refused_origin_busy.fetch_add(1, std::memory_order_relaxed);
      return "origin_busy";
    }
    return {};
  }

  PublishResult enqueue(std::int64_t org_id, routing::EventTypeId type, std::string_view id,
                        std::string_view payload, const Extra& x) {
    Engine& e = *engine;
    Engine::Shared& sh = *e.shared_;
    const std::uint32_t n = static_cast<std::uint32_t>(e.workers_.size());
    // Routing: the subscription at publish time; each attempt routes again on its worker.
    std::int64_t sub_id = x.subscription_id;
    std::uint64_t origin = 0;  // the origin's budget key; 0: unknown (subscription gone)
    {
      std::optional<routing::RoutingTable::Pin> own;
      if (x.pin == nullptr) own.emplace(reader.pin());
      const routing::RoutingTable::Pin& pin = x.pin != nullptr ? *x.pin : *own;
      const routing::Subscription* s = pin.find(org_id, type);
      if (sub_id == 0) {
        if (s == nullptr) {
          sh.refused_no_subscription.fetch_add(1, std::memory_order_relaxed);
          return {PublishStatus::kNoSubscription, {}, id, org_id, type, payload};
        }
        sub_id = s->id;
      }
      if (s != nullptr && s->id == sub_id) {
        origin = engine::origin_key(s->parts.scheme == routing::Scheme::kHttps, s->parts.host,
                                    s->parts.port);
      }
    }
    const std::int64_t before = sh.in_flight.fetch_add(1, std::memory_order_relaxed);
    if (x.budget) {
      // The count, then the backlog: what is neither final nor waiting for a retry. (Two relaxed
      // reads, not one snapshot: a bound within the few deliveries changing state meanwhile.)
      const auto max_backlog = static_cast<std::int64_t>(e.options_.max_backlog);
      const bool over_count = before >= static_cast<std::int64_t>(e.options_.max_in_flight);
      const bool over_backlog = !over_count && max_backlog != 0 &&
                                before - sh.waiting.load(std::memory_order_relaxed) >= max_backlog;
      if (over_count || over_backlog) [[unlikely]] {
        sh.in_flight.fetch_sub(1, std::memory_order_relaxed);
        sh.refused_busy.fetch_add(1, std::memory_order_relaxed);
        if (over_backlog) sh.refused_backlog_busy.fetch_add(1, std::memory_order_relaxed);
        return {PublishStatus::kBusy, "busy", {}, 0, 0, {}};
      }
    }
    const std::string_view event_id = id.empty() ? generate_id() : id;
    const std::string_view name = x.body.empty() ? e.catalogue_.name(type) : std::string_view();
    const std::size_t body_size =
        x.body.empty() ? routing::delivery_body_size(name, payload) : x.body.size();
    // The other budgets: bytes in flight, then the organisation's and the origin's.
    const auto bytes = static_cast<std::int64_t>(event_id.size() + body_size);
    engine::BudgetTable::Entry* org_e = sh.org_budget->find(static_cast<std::uint64_t>(org_id));
    engine::BudgetTable::Entry* origin_e = origin != 0 ? sh.origin_budget->find(origin) : nullptr;
    if (std::string_view over = take_budgets(bytes, org_e, origin_e, x.budget); !over.empty()) {
      sh.in_flight.fetch_sub(1, std::memory_order_relaxed);
      return {PublishStatus::kBusy, over, {}, 0, 0, {}};
    }
    // One allocation: the Delivery, the id and the body (built in place).
    engine::Delivery* d = engine::Delivery::make(&sh.delivery_pool, event_id.size(), body_size);
    d->org_budget = org_e;
    d->origin_budget = origin_e;
    d->budget_bytes = bytes;
    d->org_id = org_id;
    d->type = type;
    d->subscription_id = sub_id;
    std::memcpy(d->id_data(), event_id.data(), event_id.size());
    if (x.body.empty()) {
      routing::write_delivery_body(name, payload, d->body_data());
    } else {
      std::memcpy(d->body_data(), x.body.data(), x.body.size());
    }
    d->did = x.did;
    std::uint64_t seq = 0;
    d->tag = x.tag;
    d->hold_retries = x.hold_retries && x.tag != 0;
    if (sh.journal && d->did == 0 && x.journal) {
      // On disk (at the next group commit) before it is answered; the caller waits for
      // durable_seq() >= seq.
      const auto admit = sh.journal->accept(org_id, type, d->event_id, d->body_bytes, sub_id,
                                            x.check_id, x.resend_of, d->did);
      if (admit != engine::Journal::Admit::kAccepted) {
        engine::Worker::release_budget(sh, *d);
        engine::Delivery::destroy(d);
        sh.in_flight.fetch_sub(1, std::memory_order_relaxed);
        if (admit == engine::Journal::Admit::kFailing) {
          sh.refused_busy.fetch_add(1, std::memory_order_relaxed);
          return {PublishStatus::kBusy, {}, {}, 0, 0, {}};
        }
        sh.refused_duplicate.fetch_add(1, std::memory_order_relaxed);
        // Answered once the original is on disk too.
        return {PublishStatus::kDuplicate, {}, id, org_id, type, payload, sh.journal->last_seq()};
      }
      seq = static_cast<std::uint64_t>(d->did);
    }
    d->attempts = x.attempts;
    d->not_before_unix_ms = x.not_before_unix_ms;  // 0 for publish(): attempted at once
    d->published_ns = uv_hrtime();
    // One organisation's events stay on one worker (best-effort order, local limits).
    const std::uint64_t h = static_cast<std::uint64_t>(org_id) * 0x9E3779B97F4A7C15ULL;
    const std::uint32_t k = static_cast<std::uint32_t>((h >> 32) % n);
    sh.published.fetch_add(1, std::memory_order_relaxed);
    // The worker may finish and free `d` as soon as it is queued: answer with our own copy.
    last_id.assign(d->event_id);
    if (sign_token) {
      d->worker = e.workers_[k].get();
      sh.sign_pool->submit(*sign_token, d);
    } else {
      e.workers_[k]->enqueue(tokens[k], d);
    }
    return {PublishStatus::kAccepted, {}, last_id, org_id, type, payload, seq};
  }

  // A delivery read from the journal, started again: recovered at start (`did` set, attempts
  // continue) or a resend (a new delivery, attempts from 1).
  PublishResult restart(const Unfinished& u, std::int64_t did, std::int64_t resend_of) {
    Engine::Shared& sh = *engine->shared_;
    const Entered entered(gate);
    if (!sh.running.load(std::memory_order_seq_cst))
      return {PublishStatus::kStopped, {}, {}, 0, 0, {}};
    const auto type = engine->catalogue_.find(u.event_type);
    if (!type || u.body.empty()) return {PublishStatus::kInvalid, "unknown_type", {}, 0, 0, {}};
    Extra x;
    x.body = u.body;
    x.subscription_id = u.subscription_id;
    x.did = did;
    x.resend_of = resend_of;
    if (did != 0) {
      x.attempts = u.attempts;
      x.not_before_unix_ms = u.next_attempt_unix_ms;
      x.budget = false;
    }
    return enqueue(u.org_id, *type, u.event_id, {}, x);
  }
};

}  // namespace fanout
