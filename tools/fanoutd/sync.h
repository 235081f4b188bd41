// SubscriptionSync: keeps this instance's routing table in step with the subscription changes
// that other fanoutd processes make in the shared store (tools/fanoutd/README.md, "Several
// instances on one host").
//
//   every kPollMs on the main loop (a TimerEntry of the daemon's LoopTimer)
//     Store::data_version()            one prepared statement: no allocation, no I/O beyond
//        │ unchanged → done             SQLite's shared WAL index
//        ▼ moved (another connection committed: an instance, or `fanoutd apikey`)
//     Store::changes_since(seq)        one read transaction: the pairs other writers touched
//        │ complete                     since `seq`, each with what it holds now
//        ├──► Engine::upsert / Engine::remove per pair, Api::set_subscriptions(count)
//        ▼ the log was trimmed past `seq` (this instance fell far behind)
//     Store::all_subscriptions(&seq)   one read transaction → Engine::load (the whole table)
//
// So a change made through another instance reaches this routing table within kPollMs plus
// one read, well inside the 1 s the README promises. The pairs this instance changed itself are
// applied by the API right after its commit and are not read back (the log tags each row with
// its Store); applying a pair again would be harmless anyway, since the current row is read,
// not the change. data_version is read before the log, so a commit that lands between the two
// reads moves it again and is picked up at the next poll: nothing is missed.
//
// This instance's own commits do not move data_version, so a poll that finds it unchanged also
// moves the position past them (Store::own_changes_seq(): every row after the position is then
// this Store's). Without that, an instance whose API made more than kChangesKept changes found
// itself out of the log at the next change from elsewhere (a `fanoutd apikey create` is one) and
// reloaded every subscription: at a million, a second routing table built beside the first and
// ~300 MB left free but held by the allocator (bench/README.md, "A million subscriptions").
//
// Errors (the database unreadable for a while) are logged once and retried every poll; the
// position moves only when a read succeeded.
//
// Threading and lifetime: the loop's thread only. The object must outlive the LoopTimer's
// close() (which disarms the entry) or be stop()ped first; store, engine and api must outlive
// it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <tl/expected.hpp>

#include "fanout/engine.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/store.h"
#include "transport/loop_timer.h"
#include "transport/timer_wheel.h"

namespace fanout::daemon {

class SubscriptionSync {
 public:
  static constexpr std::uint64_t kPollMs = 200;

  SubscriptionSync(Store& store, Engine& engine) noexcept;
  ~SubscriptionSync();  // stops polling
  SubscriptionSync(const SubscriptionSync&) = delete;
  SubscriptionSync& operator=(const SubscriptionSync&) = delete;

  // Start-up: data_version, then every subscription and the log's position in one read
  // transaction, and Engine::load. Returns how many subscriptions were loaded.
  [[nodiscard]] tl::expected<std::size_t, std::string> load_all();
  // Polls every kPollMs on `timers` from now on (after load_all()). `api` (may be null) is told
  // the number of subscriptions whenever a change from elsewhere was applied.
  void start(transport::LoopTimer& timers, Api* api) noexcept;
  // No more polls. Idempotent.
  void stop() noexcept;

  // One poll now (what the timer runs); false when the store could not be read.
  bool poll();

  struct Stats {
    std::uint64_t polls = 0;     // data_version reads
    std::uint64_t reads = 0;     // change-log reads (data_version had moved)
    std::uint64_t reloads = 0;   // full reloads after falling behind the log
    std::uint64_t upserts = 0;   // subscriptions applied from elsewhere
    std::uint64_t removals = 0;  // subscriptions removed from elsewhere
  };
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  void on_timer() noexcept;
  bool reload();
  void failed(const std::string& what, const std::string& error);

  Store& store_;
  Engine& engine_;
  Api* api_ = nullptr;
  transport::LoopTimer* timers_ = nullptr;
  transport::TimerEntry entry_;
  std::int64_t version_ = 0;  // data_version at the last successful read
  std::int64_t seq_ = 0;      // change-log position applied up to
  bool failing_ = false;      // the last read failed (logged once until one succeeds)
  Stats stats_;
};

}  // namespace fanout::daemon
