// RedisSource's inside, shared by redis_source.cc (life cycle: resolve, connect, set up,
// reconnect, close, stats), redis_flow.cc (the entry flow in: read, publish, refresh and claim)
// and redis_acks.cc (the way out: acknowledge, record retries).
//
// Phases (one loop thread):
//   kIdle -start()-> kResolving -> kConnecting -(both connections ready)-> kSetup
//   kSetup: owed XACKs sent, XGROUP CREATE ... MKSTREAM answered -> kOwnPending
//   kOwnPending: XREADGROUP ... STREAMS s <cursor> from 0 until an empty answer -> kLive
//   kLive: XREADGROUP ... BLOCK ... STREAMS s >, plus the claim and refresh timers
//   any of kConnecting..kLive -(a connection lost)-> kDown -(backoff)-> kResolving
//   close() -> kClosing -(owed XACKs answered, or the deadline)-> kClosed
//
// Invariants:
//   - an entry is held (table_) from its accepted publish until its outcome note is drained;
//     it is then in to_ack_, in an XACK batch in flight, or in unacked_ until Redis confirms;
//   - reading starts only after every owed XACK was answered on the command connection (its
//     replies are in order), so an entry acknowledged here is never read again as pending;
//   - room() = max_in_flight - held - blocked - parked: a read asks for at most that many;
//   - blocked (a global busy) stops reading; parked (one organisation's or origin's budget)
//     does not: those entries wait for their own room while the others flow;
//   - a retry's next attempt is held by the engine until Redis has answered the HSET of its
//     attempts record (a record lost with the connection is written again after the
//     reconnect, before any read), so a takeover never sees fewer attempts than were made
//     before the one in flight.
#pragma once

#include <uv.h>

#include <concurrentqueue/concurrentqueue.h>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "fanout/redis_source.h"
#include "source/redis/entries.h"
#include "source/redis/redis_conn.h"
#include "transport/loop_timer.h"

struct redisReply;

namespace fanout::source {

// Entry ids per XACK, HDEL, HSET or XCLAIM command, at most.
inline constexpr std::size_t kIdsPerCommand = 1000;

// What the engine's threads tell the loop about a tagged delivery.
struct Note {
  std::uint64_t tag = 0;
  std::uint32_t attempts = 0;
  std::int64_t due_unix_ms = 0;
  std::uint64_t hold = 0;  // a retry: Producer::release_retry(hold) once it is recorded
  bool final = false;      // an outcome (else a retry was scheduled)
};

// An entry copied out of a reply (own pending and claimed entries wait for their attempt
// records; blocked ones for room in the engine).
struct Taken {
  EntryId id;
  std::string event;
  bool has_event = false;
  bool has_record = false;  // an attempts record exists in Redis
  bool gone = false;        // claimed, then found acknowledged by its late owner: skipped
  std::uint32_t attempts = 0;
  std::int64_t due_unix_ms = 0;
};

struct RedisSource::Impl {
  enum class Phase : std::uint8_t {
    kIdle,
    kResolving,
    kConnecting,
    kSetup,
    kOwnPending,
    kLive,
    kDown,
    kClosing,
    kClosed
  };

  Impl(RedisOptions options, RedisEndpoint endpoint, Engine& engine, uv_loop_s* loop);

  // --- life cycle (redis_source.cc) ---
  void start();
  void resolve();
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res);
  static void on_conn_ready(RedisConn& conn, void* data) noexcept;
  static void on_conn_lost(RedisConn& conn, void* data) noexcept;
  void on_connect_deadline() noexcept;
  void go_down(const std::string& why);
  void on_reconnect() noexcept;
  void setup();
  static void on_group_created(redisAsyncContext* ctx, void* reply, void* data);
  void close(std::uint32_t deadline_ms, std::function<void()> done);
  void maybe_finish_close();
  void handle_closed() noexcept;
  void on_close_deadline() noexcept;
  void on_info() noexcept;
  static void on_info_reply(redisAsyncContext* ctx, void* reply, void* data);
  void log(std::string_view level, const std::string& message) const;

  // --- the entry flow (redis_flow.cc) ---
  [[nodiscard]] std::size_t room() const noexcept;
  void read_next();
  static void on_read(redisAsyncContext* ctx, void* reply, void* data);
  void take_entries(const redisReply& entries, bool own_pending);
  void fetch_attempts(std::vector<Taken> taken, bool from_read);
  static void on_attempts(redisAsyncContext* ctx, void* reply, void* data);
  void publish_taken(std::vector<Taken>& taken);
  // Publishes one entry; false when the engine is busy (the entry goes to blocked_).
  bool publish_one(const EntryId& id, std::string_view event, bool has_event,
                   std::uint32_t attempts = 0, std::int64_t due_unix_ms = 0,
                   bool has_record = false);
  bool publish_one(const Taken& t) {
    return publish_one(t.id, t.event, t.has_event, t.attempts, t.due_unix_ms, t.has_record);
  }
  void dead_letter(const EntryId& id, std::string_view reason, std::string_view event);
  void on_busy_retry() noexcept;
  void arm_busy_retry() noexcept;  // when something waits in blocked or parked
  static void on_async(uv_async_t* handle);
  void drain_notes();
  // Sends the attempt records and the acknowledgements that wait (batched: see kAckBatch;
  // acks_now sends them however few).
  void flush_writes(bool acks_now = false);
  // HSETs of what to_hset holds; each batch's holds are released when Redis answers.
  void send_records();
  static void on_record_reply(redisAsyncContext* ctx, void* reply, void* data);
  void send_acks(std::vector<EntryId> ids, std::vector<EntryId> hdel);
  static void on_ack_reply(redisAsyncContext* ctx, void* reply, void* data);
  void on_refresh() noexcept;
  // The acknowledgement batch's delay ran out: what waits is sent now.
  void on_ack_due() noexcept;
  void on_claim_tick() noexcept;
  void claim_next();
  static void on_claim(redisAsyncContext* ctx, void* reply, void* data);
  // Arena-formatted entry id: valid until the arena is cleared.
  std::string_view text(const EntryId& id);

  RedisOptions o;
  RedisEndpoint ep;
  Engine& engine;
  uv_loop_s* loop;
  Producer producer;
  std::string attempts_key, dead_key, block_text, count_text, claim_idle_text;
  std::uint64_t claim_idle_ms = 0;

  transport::LoopTimer timers;
  transport::TimerEntry reconnect_timer, connect_deadline, claim_timer, refresh_timer, info_timer,
      busy_timer, close_deadline, ack_timer;
  uv_async_t async{};
  uv_getaddrinfo_t resolve_req{};
  bool resolving = false;
  std::string ip;
  RedisConn reader, cmd;
  Phase phase = Phase::kIdle;
  std::uint32_t backoff_ms = 0;

  bool reading = false;    // an XREADGROUP (or its attempts lookup) in flight
  bool stop_read = false;  // stop_reading() called
  bool claiming = false;   // an XAUTOCLAIM (or its attempts lookup) in flight
  bool paused = false;     // at the budget: read_next() when room comes back
  std::string pending_cursor = "0";
  std::string claim_cursor = "0-0";

  EntryTable table;
  std::deque<Taken> blocked;  // refused busy by the engine: published again first
  // Refused for one organisation's or origin's budget (org_busy, origin_busy): retried on the
  // busy timer while reading and publishing go on for everyone else.
  std::deque<Taken> parked;
  bool scoped_busy = false;  // the last publish_one() refusal was org_busy or origin_busy
  // Where an entry the engine refused waits: parked (a scoped refusal, nothing blocked yet), or
  // blocked (in order, behind which everything waits).
  void hold_back(Taken t) {
    if (blocked.empty() && scoped_busy) {
      parked.push_back(std::move(t));
    } else {
      blocked.push_back(std::move(t));
    }
  }
  moodycamel::ConcurrentQueue<Note> notes;
  std::atomic<bool> notes_open{true};
  std::vector<Note> note_buf;
  std::vector<EntryId> to_ack, to_hdel, unacked;
  struct RetryRecord {
    EntryId id;
    std::uint32_t attempts;
    std::int64_t due_unix_ms;
    std::uint64_t hold;  // released once Redis has the record
  };
  std::vector<RetryRecord> to_hset;
  std::size_t acks_in_flight = 0;
  std::vector<char> arena;           // id texts of the command being built
  std::vector<std::string> scratch;  // other texts of the command being built
  RedisArgs args;
  std::function<void()> close_done;
  int closing_handles = 0;

  struct Counters {
    std::atomic<std::uint64_t> read{0}, acknowledged{0}, claimed{0}, dead_lettered{0},
        no_subscription{0}, held{0}, reconnects{0}, paused{0};
    std::atomic<std::int64_t> group_pending{-1}, group_lag{-1};
    std::atomic<bool> connected{false};
  } counters;
};

// Small reply helpers.
[[nodiscard]] bool is_error(const redisReply* r) noexcept;
[[nodiscard]] std::string_view str(const redisReply* r) noexcept;

}  // namespace fanout::source
