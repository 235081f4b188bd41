// SubscriptionSync (sync.h).
#include "tools/fanoutd/sync.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "tools/fanoutd/log.h"

namespace fanout::daemon {

SubscriptionSync::SubscriptionSync(Store& store, Engine& engine) noexcept
    : store_(store), engine_(engine) {
  entry_.bind<&SubscriptionSync::on_timer>(this);
}

SubscriptionSync::~SubscriptionSync() {
  stop();
}

tl::expected<std::size_t, std::string> SubscriptionSync::load_all() {
  // data_version first: a commit after this read, even one the load below already sees, moves
  // it, so the first poll reads the log from the load's position and misses nothing.
  auto version = store_.data_version();
  if (!version) return tl::unexpected(std::move(version.error()));
  std::int64_t seq = 0;
  auto subs = store_.all_subscriptions(&seq);
  if (!subs) return tl::unexpected(std::move(subs.error()));
  const std::size_t n = subs->size();
  engine_.load(std::move(*subs));
  version_ = *version;
  seq_ = seq;
  return n;
}

void SubscriptionSync::start(transport::LoopTimer& timers, Api* api) noexcept {
  timers_ = &timers;
  api_ = api;
  timers_->schedule_after(entry_, kPollMs);
}

void SubscriptionSync::stop() noexcept {
  // Once the LoopTimer closed (it disarms every entry) it may be gone: touch it only while armed.
  if (timers_ != nullptr && entry_.armed()) timers_->cancel(entry_);
}

void SubscriptionSync::on_timer() noexcept {
  (void)poll();
  timers_->schedule_after(entry_, kPollMs);
}

bool SubscriptionSync::poll() {
  ++stats_.polls;
  auto version = store_.data_version();
  if (!version) {
    failed("reading data_version", version.error());
    return false;
  }
  if (*version == version_ && !failing_) {
    // Nobody else committed since the last read: the log's rows after seq_ are this instance's
    // own, applied when made. Moving past them keeps them from pushing seq_ out of the log
    // (kChangesKept), which would cost a full reload at the next change from elsewhere.
    seq_ = std::max(seq_, store_.own_changes_seq());
    return true;
  }
  ++stats_.reads;
  auto changes = store_.changes_since(seq_);
  if (!changes) {
    failed("reading subscription changes", changes.error());
    return false;
  }
  if (!changes->complete) {
    if (!reload()) return false;
    version_ = *version;
    return true;
  }
  for (const std::string& why : changes->skipped) {
    log::warn("subscription changed elsewhere not applied", {{"error", why}});
  }
  for (routing::Subscription& s : changes->upserts) engine_.upsert(std::move(s));
  for (const Store::Changes::Key& k : changes->removed) {
    (void)engine_.remove(k.org_id, k.event_type);
  }
  stats_.upserts += changes->upserts.size();
  stats_.removals += changes->removed.size();
  if (changes->count >= 0 && api_ != nullptr) {
    api_->set_subscriptions(static_cast<std::uint64_t>(changes->count));
  }
  if (!changes->upserts.empty() || !changes->removed.empty()) {
    log::debug("subscriptions changed elsewhere applied",
               {{"upserts", std::to_string(changes->upserts.size())},
                {"removals", std::to_string(changes->removed.size())},
                {"seq", std::to_string(changes->seq)}});
  }
  if (failing_) log::info("subscription changes readable again");
  failing_ = false;
  version_ = *version;
  seq_ = changes->seq;
  return true;
}

bool SubscriptionSync::reload() {
  ++stats_.reloads;
  std::int64_t seq = 0;
  auto subs = store_.all_subscriptions(&seq);
  if (!subs) {
    failed("reloading subscriptions", subs.error());
    return false;
  }
  const std::size_t n = subs->size();
  engine_.load(std::move(*subs));
  if (api_ != nullptr) api_->set_subscriptions(n);
  log::info(
      "subscriptions reloaded (the change log no longer reached back to this instance's "
      "position)",
      {{"subscriptions", std::to_string(n)}, {"seq", std::to_string(seq)}});
  failing_ = false;
  seq_ = seq;
  return true;
}

void SubscriptionSync::failed(const std::string& what, const std::string& error) {
  if (!failing_) {
    log::warn("subscription sync failed; retrying every poll", {{"step", what}, {"error", error}});
  }
  failing_ = true;
}

}  // namespace fanout::daemon
