// fanout as a library: publish events from any thread; fanout routes each to the one
// subscription of its (org_id, event_type), POSTs it with Partoo's delivery rules
// (docs/webhook-contract.md §4) from per-core worker loops, and tells an Observer each event's
// final outcome.
//
//   Producer::publish(json)        any thread, never blocks: parse (simdjson), route (lock-free
//     │                            snapshot), build the body once (and sign it once), enqueue
//     ▼                            on worker hash(org_id) % N (moodycamel queue + uv_async)
//   worker k (thread + uv loop)    attempt: HTTP/2 or HTTP/1.1 POST through the pooled client
//     ├─ 2xx ───────────────────► delivered
//     ├─ 3xx, 4xx ──────────────► rejected (never retried, redirects never followed)
//     └─ 5xx, timeout, reset... ─► backoff in the worker's timer wheel ─► retry, or exhausted
//   Observer::on_outcomes(batch)   on the worker thread, once per event: delivered, rejected,
//                                  exhausted or dropped
//
// Threading. Engine's member functions may be called from any thread unless stated. A Producer
// belongs to one thread at a time. The Observer is called on worker threads (several at once).
//
// No libuv, nghttp2 or SSL type appears here. Errors are values, never exceptions.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "routing/catalogue.h"
#include "routing/envelope.h"
#include "routing/subscription.h"

namespace fanout {

namespace engine {
class Journal;
class Worker;
class Delivery;
}  // namespace engine
namespace routing {
class RoutingTable;  // routing/routing_table.h; the engine's own, behind Engine::table_
}  // namespace routing

// The final outcome of an accepted event (docs/webhook-contract.md §4).
enum class OutcomeKind : std::uint8_t {
  kDelivered,  // the receiver answered 2xx
  kRejected,   // 3xx or 4xx (429 too by default), or a target fanout will not contact (address
               // refused by the guard, http:// outside insecure mode)
  kExhausted,  // every attempt failed with 5xx or a retryable network failure
  kDropped,    // the subscription was deleted (or replaced) before an attempt
};
[[nodiscard]] std::string_view to_string(OutcomeKind kind) noexcept;

struct Outcome {
  std::string_view event_id;
  std::int64_t org_id = 0;
  std::string_view event_type;
  std::int64_t subscription_id = 0;
  OutcomeKind kind = OutcomeKind::kDelivered;
  std::uint32_t attempts = 0;     // attempts made (re-sends after a refusal before processing
                                  // are not attempts)
  int last_status = 0;            // HTTP status of the last attempt, 0 when it had none
  std::string_view last_failure;  // why the last attempt had no status, else empty
  std::uint64_t latency_us = 0;   // publish() to the final outcome
  // The last attempt's round trip: its first byte written to the receiver's answer (what
  // h2load calls the time for request); 0 when it got no answer.
  std::uint32_t last_response_us = 0;
  std::uint64_t tag = 0;  // PublishOptions::tag of the event (0: none given)
};

// A tagged delivery (PublishOptions::tag != 0) whose attempt failed retryably and that will be
// attempted again: what a broker source records so that the attempt count survives a takeover.
struct RetryNote {
  std::uint64_t tag = 0;
  std::string_view event_id;
  std::int64_t org_id = 0;
  std::uint32_t attempts = 0;             // attempts made so far
  std::int64_t next_attempt_unix_ms = 0;  // when the next is due (wall clock, ms)
  // Non-zero when the delivery was published with PublishOptions::hold_retries: the next
  // attempt waits, even past its due time, until Producer::release_retry(hold).
  std::uint64_t hold = 0;
};

// Receives final outcomes. Called on worker threads, in batches (one per loop turn at most);
// the views are valid during the call only. Must not block for long: it holds up its worker.
// It may publish (with a Producer of its own) and change routes, but must not call
// Engine::stop(), which waits for the very worker that is calling it.
class Observer {
 public:
  virtual ~Observer() = default;
  virtual void on_outcomes(std::span<const Outcome> outcomes) noexcept = 0;
  // Called on the worker thread for each tagged delivery whose attempt failed retryably, once
  // its next attempt is scheduled (also while stop() drains). Untagged deliveries never call it.
  virtual void on_retry(const RetryNote& note) noexcept { (void)note; }
};

// Retry schedule (docs/webhook-contract.md §4): attempt n+1 waits base_ms * factor^(n-1), capped at
// cap_ms, with ±jitter (a fraction) drawn from the engine's random source. Defaults: 30 s, 90 s,
// 4.5 min, 13.5 min, 40.5 min.
struct RetryPolicy {
  std::uint32_t max_retries = 5;  // so at most 6 attempts
  std::uint64_t base_ms = 30'000;
  double factor = 3.0;
  std::uint64_t cap_ms = 3'600'000;
  double jitter = 0.2;
  bool retry_429 = false;  // contract: 429 is a 4xx and is not retried by default
};

// The delay before retry number `retry` (1-based) under `policy`, with `unit` a uniform random
// number in [0, 1). Pure: tests call it with fixed values.
[[nodiscard]] std::uint64_t backoff_ms(const RetryPolicy& policy, std::uint32_t retry,
                                       double unit) noexcept;

// Durable acceptance (contract §6), off unless `dir` is set. The journal (DIR/journal.db, SQLite
// in WAL mode, fully synchronous commits) records every accepted delivery, each attempt's result
// and the next attempt time, and each final outcome, from a writer thread that commits in groups.
// Engine::start() resumes every delivery the journal holds without a final outcome. An accepted
// event is on disk once Engine::durable_seq() >= PublishResult::seq; `on_commit` says when.
struct DurabilityOptions {
  std::string dir;  // empty: durability off (the default: behind a broker, the broker is the log)
  // Final deliveries (and their attempts) stay for the history calls this long; 0: removed as
  // soon as they are final. At most `max_history_rows` final deliveries are kept (oldest go).
  std::uint64_t history_ms = 7ULL * 24 * 3600 * 1000;
  std::uint64_t max_history_rows = 1'000'000;
  // Idempotency: an (org_id, id) given by the publisher and accepted within this window is
  // answered kDuplicate; 0: off. At most `max_ids` ids are remembered (oldest forgotten first).
  std::uint64_t idempotency_ms = 24ULL * 3600 * 1000;
  std::size_t max_ids = 1'000'000;
  // Called on the journal's writer thread after each group commit that held records, with the
  // sequences of the deliveries accepted in it (first..last; 0, 0 when none). ok: on disk, and
  // Engine::durable_seq() has moved. Not ok: the commit failed and those events are not durable
  // (publish answers kBusy until a commit succeeds again). durable_seq() is a high-water mark:
  // a later successful commit moves it past a lost range, so a caller that promises durability
  // must remember the ranges reported lost here (fanoutd answers 503 for them).
  std::function<void(std::uint64_t first_seq, std::uint64_t last_seq, bool ok)> on_commit;
  // The accept log's segments (DIR/journal-log/) start anew past this size; a segment is retired
  // once every frame in it is in the database (two are kept as spares, reused as new segments).
  std::uint64_t log_segment_bytes = std::uint64_t{64} << 20;
  // How far the log may run ahead of the database (bytes of frames not yet copied): past it, the
  // writer waits for the indexer, so a burst is taken at the log's speed up to this much and a
  // longer run at the database's (the log's disk use is bounded by this plus a segment, and two
  // spare segments).
  std::uint64_t max_log_backlog_bytes = std::uint64_t{256} << 20;
  // A retry that waits at least this long keeps its body in the journal only, not in memory
  // (a waiting retry is then 288 bytes with a 32-byte id, whatever its body): its worker reads
  // the body back when the retry is due (stop() hands it back without: Unfinished). For
  // deliveries already copied into the journal's database (others move once they are); 0: every
  // waiting retry keeps its body in memory.
  std::uint64_t bodies_on_disk_after_ms = 10'000;
  // A history call (deliveries, find, resend, recover) first waits up to this long for the
  // indexer to copy every record made before it, and takes the indexer out of the background
  // meanwhile (where the process may: CAP_SYS_NICE); past it the call answers from what the
  // database has, a moment behind under a burst larger than the wait.
  std::uint64_t history_wait_ms = 1'000;
  // Tests only: when set and it returns true, the next commit fails as a disk error would.
  std::function<bool()> fail_commit;
  // Tests only: called on the indexer thread before each copy of the log into the database (a
  // test may block in it to keep the database behind the log).
  std::function<void()> before_index;
};

struct EngineOptions {
  unsigned workers = 0;                   // 0: one per core
  std::size_t max_in_flight = 1'000'000;  // accepted, not yet final (waiting retries included)
  // Budgets beside max_in_flight, in events and in bytes (an event's id and delivery body), so
  // that one tenant or one dead receiver cannot fill the engine for everyone (0: no limit).
  // Past one, publish() answers kBusy with reason "busy" (global), "org_busy" or "origin_busy"
  // (an origin is scheme, host and port). Resumed deliveries count but are never refused.
  std::size_t max_in_flight_bytes = std::size_t{4} << 30;           // 4 GiB
  std::size_t org_max_in_flight = 100'000;                          // per organisation
  std::size_t org_max_in_flight_bytes = std::size_t{512} << 20;     // 512 MiB
  std::size_t origin_max_in_flight = 100'000;                       // per origin
  std::size_t origin_max_in_flight_bytes = std::size_t{512} << 20;  // 512 MiB
  // The backlog: accepted deliveries not waiting for a retry (queued for their next attempt, or
  // in it). Past it publish() answers kBusy, reason "busy", until attempts are answered: a burst
  // that arrives faster than the workers attempt waits at the door (its publisher retries)
  // instead of in memory, ~1-1.5 KiB a delivery. Waiting retries do not count: they are bounded
  // by max_in_flight. 0: no limit.
  std::size_t max_backlog = 65'536;
  // Counters per organisation and per origin kept apart (engine/budget.h); past that many keys
  // seen, further ones share one counter with one key's limits.
  std::size_t budget_slots = 16'384;
  std::size_t max_event_bytes = routing::kDefaultMaxEventBytes;
  RetryPolicy retry;
  std::uint32_t connect_timeout_ms = 5'000;
  std::uint32_t response_timeout_ms = 10'000;
  std::uint32_t idle_timeout_ms = 60'000;
  std::uint32_t max_connections_per_origin = 8;
  std::uint32_t max_streams_per_connection = 256;
  std::size_t max_pending_per_origin = 65'536;
  // DNS (each worker's client resolves with c-ares on its own loop): name servers
  // "ip[:port],..." (empty: /etc/resolv.conf), the wait per try (c-ares doubles it for its second
  // try), and how long an origin with no connection and nothing queued is kept (0: forever).
  std::string dns_servers;
  std::uint32_t dns_timeout_ms = 2'000;
  std::uint32_t idle_origin_ms = 60'000;
  // HTTP/1.1 only: http:// speaks HTTP/1.1 instead of h2c with prior knowledge, and https://
  // offers only http/1.1 in ALPN. Default: h2c for http://, ALPN h2 then http/1.1 for https://.
  bool http1_only = false;
  // Insecure mode (docs/webhook-contract.md §1, §5): http:// URLs and no TLS verification. Tests
  // only.
  bool insecure = false;
  std::string ca_file;                     // extra trust anchors (PEM)
  std::vector<std::string> allow_subnets;  // address-guard exceptions, e.g. "127.0.0.1/32"
  std::vector<std::string> extra_event_types;
  // PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`); empty: unsigned.
  std::string signing_key_pem;
  // Whether deliveries carry X-Partoo-Signature-v1 (made with the key above; Partoo's header,
  // docs/webhook-contract.md §4: "when a signing key is configured"). false: the key signs only
  // Standard Webhooks `v1a` (below), for receivers that verify those or nothing. Default true.
  bool partoo_signature = true;
  // Threads that make the Partoo signature (with the key above) of each new delivery between
  // publish() and its worker (engine/sign_pool.h); 0 (the default): the worker signs at the first
  // attempt. An Ed25519 signature costs several times what sending the request costs, and one
  // organisation's events all go to one worker: with threads here, signing spreads over the
  // cores the scheduler finds free and the worker keeps to the network. Order within an
  // organisation stays best-effort, as with several workers. Ignored without a key or without
  // partoo_signature; at most 256.
  unsigned signing_threads = 0;
  // Standard Webhooks headers (docs/webhook-contract.md §8, engine/standard_webhooks.h) for
  // subscriptions whose own `signing` is kDefault: kOff (the default: Partoo's headers only), kV1a
  // (Ed25519 with the key above; none without one), kV1 (HMAC-SHA256 with the subscription's
  // webhook_secret; none without one) or kBoth. Signed on every attempt (the timestamp is the
  // attempt's), on the worker thread. kDefault here means kOff.
  routing::WebhookSigning standard_webhooks = routing::WebhookSigning::kOff;
  // Source of uniform 64-bit random numbers for jitter and generated event ids (tests: a fixed
  // source makes both reproducible). Empty: jitter from a per-thread generator seeded by
  // std::random_device, and ids of 128 bits from libsodium (ChaCha20 keyed from getrandom,
  // reseeded every 256 ids). Called on
  // worker and producer threads: must be thread-safe.
  std::function<std::uint64_t()> random;
  DurabilityOptions durability;
};

// What a caller may add to one publish() (a broker source uses all of it). Defaults: none.
struct PublishOptions {
  // Opaque to the engine; handed back in Outcome::tag, RetryNote::tag and Unfinished::tag.
  std::uint64_t tag = 0;
  // The event id when the envelope has none (a broker's entry id, stable across redeliveries);
  // empty: one is generated.
  std::string_view default_id;
  // Attempts already made elsewhere (an event taken over from another consumer): attempts
  // continue from here, so the retry cap holds. With next_attempt_unix_ms as Unfinished's.
  std::uint32_t attempts = 0;
  std::int64_t next_attempt_unix_ms = 0;
  // false: not written to the engine's journal even when durability is on (the broker holds
  // the event until its outcome); no idempotency check either.
  bool journal = true;
  // Non-empty: an event of any other organisation is refused (kInvalid, reason
  // "org_not_allowed") before anything is queued. Sorted ascending. Empty: every organisation.
  std::span<const std::int64_t> allowed_orgs;
  // true: after each retryable failure the next attempt is held until the caller has recorded
  // this RetryNote and calls Producer::release_retry(note.hold) (a broker source writes the
  // attempt count beside the entry first, so that a crash can never make attempt numbers go
  // back). A hold released before the retry is due costs nothing; one released late delays
  // the attempt until then. Needs a tag.
  bool hold_retries = false;
};

enum class PublishStatus : std::uint8_t {
  kAccepted,        // queued; exactly one Outcome will follow
  kInvalid,         // refused at the door: `reason` is the envelope's reason code
  kNoSubscription,  // nobody subscribed to (org_id, type): dropped and counted, no Outcome
  kBusy,            // over a budget (reason: busy, org_busy, origin_busy): slow down, retry
  kStopped,         // the engine is not running
  kDuplicate,       // durability: this (org_id, id) was accepted within the idempotency window
};
[[nodiscard]] std::string_view to_string(PublishStatus s) noexcept;

struct PublishResult {
  PublishStatus status = PublishStatus::kAccepted;
  std::string_view reason;    // kInvalid: e.g. "unknown_type"
  std::string_view event_id;  // kAccepted: the event's id (given, or generated);
                              // kNoSubscription: the event's own id, or empty
  // kAccepted and kNoSubscription after publish(): the envelope as parsed, so that callers
  // need not parse the event again (resume() leaves payload empty).
  std::int64_t org_id = 0;
  routing::EventTypeId type = 0;
  std::string_view payload;  // the payload object's exact bytes
  // kAccepted (and kDuplicate) with durability: the event is on disk once
  // Engine::durable_seq() >= seq. 0 without durability.
  std::uint64_t seq = 0;
  // Every view is valid until the next publish() or resume() on the same Producer.
};

// A delivery that was not final when the engine stopped: enough to persist it and resume it.
//
// next_attempt_unix_ms: when its next attempt is due, in milliseconds since the Unix epoch on the
// wall clock (std::chrono::system_clock), so that it survives a restart. 0 means "as soon as
// possible"; a time already past means the same. Set by stop() as follows:
//   - waiting for a retry: the time its backoff timer was due to fire (stop's wall-clock time
//     plus what was left of the wait);
//   - its attempt failed retryably while stop() was draining: stop's wall-clock time plus the
//     backoff that retry would have waited (a fresh draw, jitter included);
//   - queued in the worker's inbox: 0 for a published event; for a resumed one, the time it was
//     resumed with (unchanged, not capped);
//   - in flight and cut by the drain deadline (the attempt is not counted): 0.
// Producer::resume() honours it: see there.
struct Unfinished {
  std::string event_id;
  std::int64_t org_id = 0;
  std::string event_type;
  std::string body;  // the delivery body {"type":...,"payload":...}; empty when body_in_journal
  std::int64_t subscription_id = 0;
  std::uint32_t attempts = 0;             // attempts already made
  std::int64_t next_attempt_unix_ms = 0;  // wall clock, ms since the epoch; 0: at once
  std::uint64_t tag = 0;                  // PublishOptions::tag (a broker's delivery: the
                                          // broker still holds it; not to be saved elsewhere)
  // Durability on: a waiting retry whose body was left in the journal
  // (DurabilityOptions::bodies_on_disk_after_ms) is handed back without it, not read back at
  // stop: the journal resumes every delivery it holds at its next open, body included.
  bool body_in_journal = false;
};

// Delivery history (durability on): one delivery of an event to a subscription and its attempts.
struct AttemptRecord {
  std::uint32_t n = 0;          // 1..6
  std::int64_t at_unix_ms = 0;  // when its result came
  int status = 0;               // HTTP status, 0 when none
  std::string failure;          // why there was no status ("timeout", "reset", ...), else empty
  std::uint32_t duration_us = 0;
};
struct DeliveryRecord {
  std::string event_id;
  std::string event_type;
  std::int64_t created_unix_ms = 0;
  std::optional<OutcomeKind> outcome;  // nullopt: pending
  std::int64_t finished_unix_ms = 0;   // 0 while pending
  std::uint32_t attempts_made = 0;
  std::int64_t next_attempt_unix_ms = 0;  // pending: when the next attempt is due (0: now)
  bool resent = false;                    // a resend of an earlier delivery
  std::vector<AttemptRecord> attempts;
};
struct DeliveryPage {
  std::int64_t count = 0;  // over all pages
  std::vector<DeliveryRecord> items;
};

struct EngineStats {
  std::uint64_t published = 0;  // accepted
  std::uint64_t refused_invalid = 0;
  std::uint64_t refused_no_subscription = 0;
  std::uint64_t refused_busy = 0;          // every budget; of them:
  std::uint64_t refused_org_busy = 0;      // an organisation's budget
  std::uint64_t refused_origin_busy = 0;   // an origin's budget
  std::uint64_t refused_backlog_busy = 0;  // max_backlog
  std::uint64_t in_flight_bytes = 0;       // ids and bodies of the deliveries in flight
  std::uint64_t in_flight = 0;             // accepted and not final
  std::uint64_t waiting_retry = 0;  // in a timer wheel: backoff, or a resumed delivery not due
  // The blocks those waiting retries hold (state, id and body each; engine/worker.h WaitingRetry).
  std::uint64_t waiting_retry_bytes = 0;
  // Of waiting_retry, those whose body is in the journal only (bodies_on_disk_after_ms); the
  // bodies read back from it, and the reads that failed (the retry then waits again).
  std::uint64_t waiting_retry_on_disk = 0;
  std::uint64_t body_reads = 0, body_read_failures = 0;
  std::uint64_t delivered = 0, rejected = 0, exhausted = 0, dropped = 0;
  std::uint64_t attempts = 0;
  std::uint64_t attempts_2xx = 0, attempts_3xx = 0, attempts_4xx = 0, attempts_5xx = 0;
  std::uint64_t attempts_failed = 0;  // no status (network, TLS, timeout...)
  std::uint64_t connections_h2 = 0, connections_h1 = 0;
  // Subscription targets (URL, headers) the workers keep, replaced ones still in use included;
  // those of deleted or changed subscriptions are freed within about a second.
  std::uint64_t targets = 0;
  // Partoo signatures made by the signing threads (EngineOptions::signing_threads); the rest
  // are made on the workers.
  std::uint64_t signed_off_worker = 0;
  // Durability.
  std::uint64_t refused_duplicate = 0;
  std::uint64_t recovered = 0;  // deliveries resumed from the journal at start
  std::uint64_t journal_commits = 0, journal_commit_failures = 0, journal_records = 0,
                journal_bytes = 0;  // bytes of event data appended (ids, bodies)
  // The journal's copy of its log into the database: frames copied, copies that failed, the
  // times the log's writer waited for it (max_log_backlog_bytes), and the times it left the
  // background because the log neared that bound; the checkpointer's passes (copies of SQLite's
  // WAL into the database file, journal.h).
  std::uint64_t journal_frames_indexed = 0, journal_index_failures = 0, journal_backlog_waits = 0,
                journal_index_boosts = 0, journal_checkpoints = 0;
};

class Engine;

// Publishes events into an engine. One per thread (it keeps a routing reader, a parser and
// queue tokens); movable, not copyable; must not outlive its Engine.
class Producer {
 public:
  Producer(Producer&&) noexcept;
  Producer& operator=(Producer&&) = delete;
  Producer(const Producer&) = delete;
  Producer& operator=(const Producer&) = delete;
  ~Producer();

  // Takes one event as JSON (docs/webhook-contract.md §3) and answers at once; never blocks. The
  // bytes are copied: `event_json` may be freed on return.
  PublishResult publish(std::string_view event_json);
  PublishResult publish(std::string_view event_json, const PublishOptions& options);
  // Publishes each event in turn; results[i] answers events[i] (same size). Within a Batch.
  void publish_batch(std::span<const std::string_view> events, std::span<PublishResult> results);

  // With durability on: the events this thread publishes while a Batch is open are handed to
  // the journal's writer together when the (outermost) Batch closes, so that they share one
  // group commit instead of the first waking the writer and being synced (nearly) alone. For a
  // caller that answers many events at once, after all of them are durable (fanoutd's ingest
  // does, per request). Nothing waits on it: durable_seq() moves once the Batch is closed and
  // the frame synced (best effort: a writer awake for another reason may take part of the batch
  // earlier). Durability off: nothing. Keep a Batch short (one request, one read from a broker).
  class Batch {
   public:
    explicit Batch(Producer& producer) noexcept;
    ~Batch();
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

   private:
    engine::Journal* journal_;
    engine::Journal* outer_;
  };
  // Re-injects a delivery handed back by Engine::stop() (after a restart): attempts continue
  // from `u.attempts`. kNoSubscription when its subscription is gone (then nothing follows).
  // When `u.next_attempt_unix_ms` is in the future (by the worker's wall clock when it takes the
  // delivery), the delivery waits in its worker's timer wheel like a backoff retry (counted in
  // EngineStats::waiting_retry, handed back by stop() with its remaining time) and is attempted
  // then; the wait is capped at the retry policy's cap_ms, so a clock that jumped (or a bad
  // value) cannot park it for days. Otherwise (0, or past) it is attempted at once.
  PublishResult resume(const Unfinished& u);
  // Lets the retry held by RetryNote::hold go when it is due (any thread; never blocks). A hold
  // unknown to the engine (already released, or its delivery handed back by stop()) is ignored.
  void release_retry(std::uint64_t hold) noexcept;

 private:
  friend class Engine;
  struct State;
  explicit Producer(std::unique_ptr<State> state) noexcept;
  std::unique_ptr<State> state_;
};

class Engine {
 public:
  // Validates the options (signing key, subnets, event types) and prepares the workers; nothing
  // runs until start(). `observer` must outlive the engine.
  [[nodiscard]] static tl::expected<std::unique_ptr<Engine>, std::string> create(
      EngineOptions options, Observer* observer);
  // Stops with no drain time if still running.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Starts the worker threads. Errors: a worker's loop or TLS context could not be set up.
  [[nodiscard]] tl::expected<void, std::string> start();

  // Stops accepting (publish answers kStopped), lets in-flight attempts finish for up to
  // `drain`, then cancels the rest; returns every accepted delivery that has no final outcome
  // (waiting for a retry, queued, or cut by the deadline), each with the wall-clock time its
  // next attempt is due (Unfinished::next_attempt_unix_ms). Every worker's handles are closed
  // and its loop closed before this returns. Idempotent (a second call returns nothing).
  std::vector<Unfinished> stop(std::chrono::milliseconds drain);

  [[nodiscard]] Producer make_producer();

  // Routing changes take effect for later attempts without stopping delivery. An attempt whose
  // subscription was deleted (or replaced by one with another id) meanwhile ends as kDropped.
  // `s` must be valid (routing::validate made it); any thread.
  void upsert(routing::Subscription s);
  bool remove(std::int64_t org_id, std::string_view event_type);
  void load(std::vector<routing::Subscription> subscriptions);
  // Validates `spec` against the engine's catalogue and insecure mode, then upserts it with `id`.
  [[nodiscard]] tl::expected<routing::Subscription, std::vector<routing::Violation>> upsert(
      std::int64_t id, const routing::SubscriptionSpec& spec);

  // --- durability (errors when it is off) ---
  [[nodiscard]] bool durable() const noexcept;
  // The highest delivery sequence on disk, and the highest handed out (0 when not durable).
  [[nodiscard]] std::uint64_t durable_seq() const noexcept;
  [[nodiscard]] std::uint64_t last_seq() const noexcept;
  // A subscription's deliveries, newest first; `outcome` filters ("delivered", "rejected",
  // "exhausted", "dropped", "pending"; empty: all). Any thread, one call at a time.
  [[nodiscard]] tl::expected<DeliveryPage, std::string> deliveries(std::int64_t subscription_id,
                                                                   std::string_view outcome,
                                                                   std::int64_t offset,
                                                                   std::int64_t limit);
  struct Resent {
    std::size_t count = 0;  // deliveries started again
    std::size_t busy = 0;   // not started: over max_in_flight, journal failing, or stopping
    std::uint64_t seq = 0;  // on disk once durable_seq() >= seq
  };
  // A new delivery of the newest delivery of `event_id` to `subscription_id`: same body and
  // event id, attempts from 1, a final outcome of its own. count 0: no such delivery.
  [[nodiscard]] tl::expected<Resent, std::string> resend(std::int64_t subscription_id,
                                                         std::string_view event_id);
  // resend() of every exhausted delivery to `subscription_id` created at or after `since`
  // (wall clock, ms) and not sent again already.
  [[nodiscard]] tl::expected<Resent, std::string> recover(std::int64_t subscription_id,
                                                          std::int64_t since_unix_ms);

  [[nodiscard]] const routing::EventCatalogue& catalogue() const noexcept { return catalogue_; }
  [[nodiscard]] EngineStats stats() const;
  [[nodiscard]] const EngineOptions& options() const noexcept { return options_; }

 private:
  friend class Producer;
  friend class engine::Worker;
  Engine(EngineOptions options, Observer* observer);
  // resend() and recover(): one delivery `did` started again as a new one (under history_mu).
  void resend_one(const Unfinished& u, std::int64_t did, Resent& out);

  EngineOptions options_;
  Observer* observer_;
  routing::EventCatalogue catalogue_;
  // Behind a pointer, so that this header does not include routing/routing_table.h. Declared
  // before workers_ and shared_: every Reader (producers', workers') is gone before it.
  std::unique_ptr<routing::RoutingTable> table_;
  std::vector<std::unique_ptr<engine::Worker>> workers_;
  struct Shared;
  std::unique_ptr<Shared> shared_;
  std::unique_ptr<Producer> history_producer_;  // resend() and recover(); destroyed first
};

}  // namespace fanout
