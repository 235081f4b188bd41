// Internals of the engine: a Delivery (one accepted event on its way), and a Worker (one thread,
// one uv loop, one inbox, one client, one timer wheel). Not part of the public API.
//
// Delivery states (owned by exactly one place at a time):
//
//   producer ──enqueue──► inbox ──► attempting (in the client) ──► done (outcome batch) ──► freed
//                            │         ▲            │ 5xx / retryable failure
//                            │         └─ waiting ◄─┘ (a WaitingRetry: backoff entry in the timer
//                            │                          wheel; unpark() makes it a Delivery again)
//                            └─ resumed, not due yet ─► waiting (capped at the policy's cap_ms)
//   stop(): inbox and waiting ──► unfinished; attempting ──► finishes by the drain deadline, or is
//           cancelled ──► unfinished
//
// Next attempt time of a hand-back (Unfinished::next_attempt_unix_ms, wall clock): waiting →
// now + what is left of its backoff entry (loop time converted to wall time at stop); retry
// decided while draining → now + a fresh backoff; inbox → the delivery's not_before_unix_ms (0
// unless resumed); cancelled in flight → 0.
//
// Invariants: Engine::Shared::in_flight counts deliveries from accept to their outcome batch (or
// hand-back); a Delivery is touched only by its worker's thread once dequeued; the body and
// signature never change after publish() (a WaitingRetry keeps them as they were); a waiting
// delivery is a WaitingRetry, in the waiting list exactly while its backoff entry is armed, or
// while its backoff has run out but its hold is not yet released (hold_retries: held_due;
// waiting_ counts the list); a waiting delivery with a hold is in holds_.
#pragma once

#include <uv.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

// moodycamel's queue trips GCC's flow-based -Wnull-dereference once inlined into our code (the
// pointers it follows are never null by its own invariants); the warning stays on everywhere else.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <concurrentqueue/concurrentqueue.h>
#pragma GCC diagnostic pop

#include "engine/budget.h"
#include "engine/delivery_pool.h"
#include "engine/journal.h"
#include "engine/sign_pool.h"
#include "engine/signer.h"
#include "engine/standard_webhooks.h"
#include "fanout/engine.h"
#include "routing/routing_table.h"
#include "transport/client/client.h"
#include "transport/intrusive_list.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"

namespace fanout {

namespace engine {
// A producer's flag for stop(): true from just before its running check to just after its
// enqueue. One cache line per producer, written only by that producer (and read by stop()).
struct alignas(64) PublishGate {
  std::atomic<bool> publishing{false};
};
}  // namespace engine

struct Engine::Shared {
  // Read by every publish, written by start() and stop() only: a line of its own, away from the
  // counters that producers and workers update.
  alignas(64) std::atomic<bool> running{false};
  // Every live producer's gate (registered by make_producer(), removed by ~Producer), so stop()
  // can wait for publishers already past their running check. Guarded by producers_mu.
  alignas(64) std::mutex producers_mu;
  std::vector<const engine::PublishGate*> producers;
  alignas(64) std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> in_flight_bytes{0};
  // Of in_flight, the deliveries waiting in a worker's timer wheel (Worker::wait() to unwait()):
  // in_flight - waiting is the backlog (EngineOptions::max_backlog). Written only when a
  // delivery starts or stops waiting, so publishes read it from a line the hot path leaves be.
  alignas(64) std::atomic<std::int64_t> waiting{0};
  // Per organisation and per origin (engine/budget.h); made by create().
  std::unique_ptr<engine::BudgetTable> org_budget, origin_budget;
  // Every delivery's block (worker.h, Delivery::make): recycled from the workers back to the
  // publishers. Declared before `journal`, so it outlives nothing that holds a delivery.
  engine::DeliveryPool delivery_pool;
  alignas(64) std::atomic<std::uint64_t> refused_org_busy{0}, refused_origin_busy{0},
      refused_backlog_busy{0};
  std::atomic<std::uint64_t> published{0}, refused_invalid{0}, refused_no_subscription{0},
      refused_busy{0};
  std::optional<engine::Signer> signer;
  // `signer` when deliveries carry the Partoo signature (EngineOptions::partoo_signature), else
  // null; set by create().
  const engine::Signer* partoo_signer = nullptr;
  // EngineOptions::signing_threads with a key: made by create() (after `signer`, which it
  // uses), started by start(), stopped by stop() before the workers drain.
  std::unique_ptr<engine::SignPool> sign_pool;
  std::unique_ptr<engine::Journal> journal;  // durability on
  std::atomic<std::uint64_t> refused_duplicate{0}, recovered{0};
  std::mutex history_mu;  // Engine::resend() and recover() share one producer
  bool stopped = false;
  std::mutex stop_mu;
};

namespace engine {

class Worker;
struct AttemptHeaders;

// What a delivery sends to: a worker-local copy of a subscription's target, shared by every
// delivery of that subscription version on the worker (non-atomic count: one thread). One no
// delivery uses (refs 0) is in the worker's idle list, oldest first, and freed once more than
// kKeptIdleTargets are idle: the cache follows the subscriptions in use, not every subscription
// ever delivered to (a million of them held 200 MB).
struct Target : transport::ListNode<Target> {
  std::int64_t subscription_id = 0;
  std::string url;
  routing::UrlParts parts;
  std::vector<routing::Header> headers;
  std::vector<std::string> lower_names;  // headers' names lower-cased, for HTTP/2 (HeaderView)
  std::uint32_t refs = 0;
  bool stale = false;  // replaced in the cache; freed when the last delivery lets go
  routing::WebhookSigning signing = routing::WebhookSigning::kDefault;
  std::string secret;       // Standard Webhooks v1 key (raw bytes); empty: none
  std::int64_t org_id = 0;  // the routing key, to find the subscription again (sweep_targets)
  routing::EventTypeId type = 0;
  // The subscription this copy was last found equal to, and the routing snapshot it was found
  // in: in the same snapshot the same object is the same subscription (immutable, alive under
  // the pin), so target_for() skips comparing URL, headers and secret again.
  const routing::Subscription* checked_sub = nullptr;
  std::uint64_t checked_version = 0;

  // Whether this copy still matches `s` (same URL, headers, signing and secret), `s` as found
  // in the snapshot of `version` (pinned by the caller); remembered when it does.
  bool matches(const routing::Subscription& s, std::uint64_t version) noexcept {
    if (checked_version == version && checked_sub == &s) return true;
    if (url != s.url || headers != s.custom_headers || signing != s.signing ||
        secret != s.webhook_secret) {
      return false;
    }
    checked_sub = &s;
    checked_version = version;
    return true;
  }
};

// What a delivery is, whichever form it has: a Delivery (in the inbox, attempting, done) or a
// WaitingRetry (waiting in the timer wheel). Both derive from it, so the one moves into the
// other by one assignment. Packed: it is most of a waiting retry's size.
struct DeliveryState {
  std::int64_t org_id = 0;
  std::int64_t subscription_id = 0;
  std::int64_t did = 0;   // the journal's delivery id (durability on), else 0
  std::uint64_t tag = 0;  // PublishOptions::tag
  // PublishOptions::hold_retries: while `hold` is non-zero the next attempt waits for
  // Producer::release_retry(hold); `held_due` says its backoff already ran out.
  std::uint64_t hold = 0;
  std::uint64_t published_ns = 0;
  // What this delivery holds of the budgets (released with it: release_budget()).
  BudgetTable::Entry* org_budget = nullptr;
  BudgetTable::Entry* origin_budget = nullptr;
  std::int64_t budget_bytes = 0;
  std::uint32_t attempts = 0;
  int last_status = 0;
  std::uint32_t last_duration_us = 0;
  std::uint32_t last_response_us = 0;  // Outcome::last_response_us
  routing::EventTypeId type = 0;
  transport::Failure last_failure = transport::Failure::kNone;
  OutcomeKind kind = OutcomeKind::kDelivered;
  bool hold_retries = false;
  bool held_due = false;
  bool has_signature = false;  // the Partoo signature is made (at the first attempt)
  // A WaitingRetry's body is in the journal only (DurabilityOptions::bodies_on_disk_after_ms),
  // read back by did when the retry is due; false on a Delivery. (In the struct's padding.)
  bool body_on_disk = false;
};

// One heap block per accepted event: the Delivery, then its id, kWebhookGap bytes, and its body
// (make()). The id and body never change after publish(), so they are views into that tail. The
// gap receives "." + timestamp + "." at each attempt that carries Standard Webhooks headers, so
// that the signed content id.timestamp.body is contiguous without a copy. Its ListNode links it
// into its worker's done list. What only an attempt in progress needs (the header views and
// their per-attempt text) is an AttemptHeaders lent by the worker for the attempt's time, not
// part of the block: a delivery in the backlog does not carry it. A delivery that waits for a
// retry is not a Delivery meanwhile but a WaitingRetry (below), in a smaller block.
class Delivery final : public transport::Request,
                       public transport::ListNode<Delivery>,
                       public DeliveryState {
 public:
  // Custom headers, event id, attempt, Partoo signature, webhook-id, -timestamp, -signature.
  static constexpr std::size_t kMaxHeaders = routing::kMaxCustomHeaders + 6;

  // A Delivery with room for an id of `id_size` bytes and a body of `body_size` bytes after it:
  // event_id and body_bytes point there (filled by the caller through id_data()/body_data()).
  // The block comes from `pool` (recycled; nullptr: operator new) and goes back with destroy().
  [[nodiscard]] static Delivery* make(DeliveryPool* pool, std::size_t id_size,
                                      std::size_t body_size);
  // Ends `d` and gives its block back to the pool it came from.
  static void destroy(Delivery* d) noexcept;
  [[nodiscard]] char* id_data() noexcept { return reinterpret_cast<char*>(this + 1); }
  [[nodiscard]] char* body_data() noexcept { return id_data() + event_id.size() + kWebhookGap; }

  Worker* worker = nullptr;
  std::string_view event_id;    // in this block's tail
  std::string_view body_bytes;  // in this block's tail, after the id
  char signature[Signer::kSignatureBase64Size] = {};
  // Producer::resume(): no attempt before this wall-clock time (ms since the epoch). 0 for
  // publish(), so the inbox path pays one compare; cleared when the worker takes it from the inbox.
  std::int64_t not_before_unix_ms = 0;
  Target* dest = nullptr;                     // what this attempt was sent to
  AttemptHeaders* attempt_headers = nullptr;  // lent by the worker while an attempt is out

  void on_response(const transport::Response& response) override;
  // Makes the Partoo signature of the body (the worker at the first attempt, or a signing
  // thread before it: sign_pool.h).
  void sign(const Signer& signer) noexcept {
    signer.sign_base64(body_bytes, signature);
    has_signature = true;
  }

 private:
  Delivery() = default;
  // Only destroy() ends a delivery (its block may belong to a pool): `delete d` does not compile.
  static void operator delete(void* p) noexcept { ::operator delete(p); }

  DeliveryPool* pool_ = nullptr;
  std::uint8_t pool_class_ = DeliveryPool::kUnpooled;
};

// A delivery waiting for its next attempt (a backoff retry, or a resumed delivery not due yet):
// its state, its backoff entry and its signature in raw form, then its id and body, in one block
// of exactly that size (operator new: no size class to round up to). Worker::wait() makes one
// from a Delivery and frees the Delivery; when it is due, Worker::unpark() makes a Delivery
// again. What a Delivery carries besides (the client's per-request state, the views, the base64
// signature) is rebuilt or not needed while it waits: sizeof 240, so 280 bytes beside a 600-byte
// body with a 32-character id (malloc's header and rounding included), against ~1,000 for the
// Delivery in its pool block before (bench/engine/inbox_bench.cc). In its worker's waiting list
// exactly while its backoff entry is armed, or while its hold is not released after it fired.
// The list of waiting retries whose body could go to disk once the journal's database has it
// (Worker::bodies_in_memory_).
struct BodyInMemoryTag {};

struct WaitingRetry final : transport::ListNode<WaitingRetry>,
                            transport::ListNode<WaitingRetry, BodyInMemoryTag>,
                            DeliveryState {
  // A WaitingRetry with room for an id of `id_size` bytes and a body of `body_size` bytes after
  // it (filled by the caller through id_data()/body_data()); destroy() is the way to end it.
  [[nodiscard]] static WaitingRetry* make(std::size_t id_size, std::size_t body_size);
  static void destroy(WaitingRetry* w) noexcept;
  [[nodiscard]] char* id_data() noexcept { return reinterpret_cast<char*>(this + 1); }
  [[nodiscard]] char* body_data() noexcept { return id_data() + id_size; }
  [[nodiscard]] std::string_view event_id() noexcept { return {id_data(), id_size}; }
  [[nodiscard]] std::string_view body() noexcept { return {body_data(), body_size}; }
  // The whole block, what it costs.
  [[nodiscard]] std::size_t block_size() const noexcept {
    return sizeof(WaitingRetry) + id_size + body_size;
  }

  Worker* worker = nullptr;
  transport::TimerEntry backoff;
  std::uint32_t id_size = 0;
  std::uint32_t body_size = 0;                          // 0 when body_on_disk
  std::uint8_t signature[Signer::kSignatureSize] = {};  // when has_signature
};

// What one attempt sends besides the delivery's own bytes: the header views the client reads
// (until the request is answered) and the per-attempt text they point at. A worker lends one to
// a delivery from attempt() to on_response() and keeps up to kKeptAttemptHeaders free ones in a
// list; one given back beyond that is freed. (A burst submits attempts far beyond the streams a
// connection carries, all lent at once: kept, 100,000 of them held 62 MB after the burst.)
struct AttemptHeaders {
  std::array<transport::HeaderView, Delivery::kMaxHeaders> views{};
  char attempt_text[4] = {};
  // This attempt's Standard Webhooks webhook-timestamp and webhook-signature values.
  char webhook_timestamp[20] = {};
  char webhook_signature[kWebhookSignatureMaxSize] = {};
  AttemptHeaders* next_free = nullptr;
};

// Wall-clock milliseconds since the Unix epoch: the clock of Unfinished::next_attempt_unix_ms,
// which must mean the same after a restart (loop time does not).
[[nodiscard]] std::int64_t now_unix_ms() noexcept;

// Names the calling thread "<prefix><index>" (e.g. "fanout-w0") for top -H, perf and /proc;
// Linux keeps at most 15 characters.
void name_this_thread(const char* prefix, unsigned index) noexcept;

// The worker's own counters have one writer (its thread) and are only read elsewhere (stats()):
// a plain load and store, not a locked read-modify-write on every event.
inline void bump(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}
inline void drop(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
}

class Worker {
 public:
  // Targets no delivery uses that a worker keeps (Target).
  static constexpr std::size_t kKeptIdleTargets = 10'000;

  // Gives back what `d` holds of the byte, organisation and origin budgets (the global count,
  // Shared::in_flight, is the caller's). Called exactly once, where the delivery leaves the
  // engine's care.
  static void release_budget(Engine::Shared& sh, const DeliveryState& d) noexcept;
  // The organisation's and the origin's part of it (flush_outcomes() gives the bytes back once
  // per batch).
  static void release_tenant_budgets(const DeliveryState& d) noexcept;

  Worker(Engine& engine, unsigned index);
  ~Worker();

  [[nodiscard]] tl::expected<void, std::string> start();
  // Any thread. The delivery is the worker's from here on.
  void enqueue(moodycamel::ProducerToken& token, Delivery* d);
  // Any thread: `n` deliveries whose `worker` is this one, one wake-up (the sign pool).
  void enqueue_bulk(moodycamel::ProducerToken& token, Delivery* const* ds, std::size_t n);
  [[nodiscard]] unsigned index() const noexcept { return index_; }
  [[nodiscard]] moodycamel::ConcurrentQueue<Delivery*>& inbox() noexcept { return inbox_; }
  // Asks the loop to stop: in-flight attempts get `drain` to finish (every worker drains at
  // once: Engine::stop() asks them all before joining any).
  void request_stop(std::chrono::milliseconds drain);
  // Any thread: the retry held by `hold` may go once due (drained on the loop).
  void release_hold(std::uint64_t hold) noexcept;
  // The worker index a hold value belongs to (its top byte, minus one).
  [[nodiscard]] static std::uint64_t hold_worker(std::uint64_t hold) noexcept {
    return (hold >> 56) - 1;
  }
  // Waits for the thread; returns what was not final.
  std::vector<Unfinished> join();
  void add_stats(EngineStats& st) const;

  void on_response(Delivery& d, const transport::Response& r);

 private:
  void run();
  static void on_async(uv_async_t* handle);
  static void on_flush(uv_prepare_t* handle);
  void drain_inbox();
  void attempt(Delivery& d);
  // A resumed delivery from the inbox: waits until not_before_unix_ms (capped), or attempts now.
  void start_resumed(Delivery& d);
  [[nodiscard]] std::uint64_t draw_backoff_ms(const Delivery& d) const;
  // Tells the journal (if any) how the attempt that just ended went.
  void journal_attempt(const Delivery& d, std::int64_t next_ms, bool final);
  // What journal_attempt() and a drop noted, to the journal under one lock (on_flush, and at
  // close): before the outcomes are told, so that an observer that hears of one finds it there.
  void flush_journal();
  // Observer::on_retry for a tagged delivery whose next attempt is due at `due_unix_ms`. For one
  // that waits here, called once it waits (Shared::waiting counts it).
  void note_retry(const DeliveryState& d, std::string_view event_id, std::int64_t due_unix_ms);
  // Ends `d` and parks what it was as a WaitingRetry in the waiting list and the timer wheel
  // (and in holds_ if d.hold is set): attempted again after `delay_ms` of loop time.
  WaitingRetry& wait(Delivery& d, std::uint64_t delay_ms);
  // Takes `w` out of the waiting list (its backoff entry has fired or is cancelled) and out of
  // waiting_ and waiting_bytes_.
  void unwait(WaitingRetry& w) noexcept;
  // A Delivery again, from the WaitingRetry `w`: taken out of the waiting list and freed. Null
  // when its body is on disk and could not be read: `w` then waits kBodyRetryMs more.
  [[nodiscard]] Delivery* unpark(WaitingRetry* w);
  // A waiting retry's backoff ran out (data: the WaitingRetry): attempted, unless held.
  static void on_backoff(transport::TimerEntry& entry, void* data) noexcept;
  // The body of `w` (body_on_disk) from the journal into `out`, on this worker's own reader
  // (opened at the first read); false when that failed (counted).
  bool read_body(const WaitingRetry& w, std::string& out);
  // The retry of a hold_retries delivery: its hold value, so that it waits for its release too.
  [[nodiscard]] std::uint64_t next_hold() noexcept;
  void drain_releases();
  void finish(Delivery& d, OutcomeKind kind);
  void hand_back(Delivery& d, std::int64_t next_attempt_unix_ms);
  void hand_back(WaitingRetry& w, std::int64_t next_attempt_unix_ms);
  // Both hand_back()s: `u` (id and body filled) with what `s` knows, then the budgets.
  void hand_back_state(Unfinished&& u, const DeliveryState& s, std::int64_t next_attempt_unix_ms);
  void flush_outcomes();
  void begin_stop();
  void on_drain_deadline() noexcept;
  void maybe_close();
  void close_handles();
  // `s` as found in the routing snapshot of `version` (a pin held by the caller).
  Target* target_for(const routing::Subscription& s, std::uint64_t version);
  // Adds webhook-id, webhook-timestamp and webhook-signature to h.views[n..] when the target's
  // signing (or the engine's) asks for them; returns the new header count.
  std::size_t standard_webhooks(Delivery& d, AttemptHeaders& h, const Target& t, std::size_t n);
  // Lends `d` an AttemptHeaders for its attempt (d.attempt_headers), and takes it back.
  AttemptHeaders& lend_headers(Delivery& d);
  void take_back_headers(Delivery& d) noexcept;
  void release(Delivery& d);
  // Takes `t` out of targets_ (and the idle list); freed now, or by release() when the last
  // delivery lets go.
  void retire(Target* t);
  // Retires every target whose subscription was deleted or changed; runs only when the routing
  // table's version moved since the last sweep. Every kTargetSweepMs of loop time, with
  // move_bodies_to_disk().
  void sweep_targets() noexcept;
  // Waiting retries that waited for the journal's database to have their delivery: those it
  // now has, still due in a second or more, trade their block for one without the body.
  void move_bodies_to_disk();
  void count_targets(std::ptrdiff_t delta) noexcept;

  Engine& engine_;
  unsigned index_;
  std::thread thread_;
  moodycamel::ConcurrentQueue<Delivery*> inbox_;
  moodycamel::ConcurrentQueue<std::uint64_t> releases_;  // Producer::release_retry()
  std::atomic<bool> stop_requested_{false};
  std::uint64_t drain_ms_ = 0;

  // Loop-thread state.
  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_prepare_t flush_{};  // outcomes go out before the loop waits for I/O
  std::unique_ptr<transport::StreamLoop> streams_;
  std::unique_ptr<transport::LoopTimer> timers_;
  std::unique_ptr<transport::Client> client_;
  std::optional<routing::RoutingTable::Reader> reader_;
  std::optional<moodycamel::ConsumerToken> consumer_;
  std::unordered_map<std::int64_t, Target*> targets_;
  std::size_t live_targets_ = 0;  // in targets_, and retired ones still referenced
  // Targets in targets_ with refs 0, least recently used first (at most kKeptIdleTargets).
  transport::IntrusiveList<Target> idle_targets_;
  std::size_t idle_count_ = 0;
  std::uint64_t swept_version_ = 0;
  transport::TimerEntry sweep_timer_;
  transport::IntrusiveList<WaitingRetry> waiting_list_;
  // Held retries by hold value (each also in the waiting list); at most one per delivery.
  std::unordered_map<std::uint64_t, WaitingRetry*> holds_;
  std::uint64_t hold_serial_ = 0;
  // Refused by a full origin queue (not an attempt): submitted again, one per completion.
  std::deque<Delivery*> parked_;
  // Free AttemptHeaders, linked by next_free (at most kKeptAttemptHeaders; the lent ones are
  // their deliveries' until given back).
  static constexpr std::size_t kKeptAttemptHeaders = 1024;
  AttemptHeaders* free_headers_ = nullptr;
  std::size_t free_headers_count_ = 0;
  transport::IntrusiveList<Delivery> done_;  // outcomes for the next flush_outcomes()
  std::vector<Outcome> outcome_buf_;
  std::vector<Journal::Note> journal_notes_;  // this loop iteration's, for flush_journal()
  std::vector<Unfinished> unfinished_;
  std::size_t attempting_ = 0;
  bool stopping_ = false;
  bool closing_ = false;
  transport::TimerEntry drain_timer_;
  std::string start_error_;
  std::atomic<int> started_{0};  // 1 ok, -1 failed

  // Counters read by stats() from other threads.
  std::atomic<std::uint64_t> delivered_{0}, rejected_{0}, exhausted_{0}, dropped_{0};
  std::atomic<std::uint64_t> attempts_{0}, a2xx_{0}, a3xx_{0}, a4xx_{0}, a5xx_{0}, afailed_{0};
  std::atomic<std::uint64_t> waiting_{0}, waiting_bytes_{0}, conns_h2_{0}, conns_h1_{0},
      targets_count_{0};
  std::atomic<std::uint64_t> waiting_on_disk_{0}, body_reads_{0}, body_read_failures_{0};
  // Waiting retries' bodies read back from the journal (read_body()).
  std::unique_ptr<Journal::BodyReader> body_reader_;
  // Waiting retries that wait long enough to leave their body on disk but whose delivery the
  // journal's database did not have yet, in the order they began to wait (roughly by did).
  transport::IntrusiveList<WaitingRetry, BodyInMemoryTag> bodies_in_memory_;
  std::string body_buf_;
};

}  // namespace engine
}  // namespace fanout
