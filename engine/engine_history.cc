// Engine's durability calls (fanout/engine.h): the journal's sequence numbers, a subscription's
// delivery history, and deliveries started again (resend, recover). Engine::resend_one, which
// needs the Producer's state, is in engine.cc.
#include "fanout/engine.h"

#include <mutex>
#include <string>
#include <utility>

#include "engine/journal.h"
#include "engine/worker.h"

namespace fanout {

bool Engine::durable() const noexcept {
  return shared_->journal != nullptr;
}

std::uint64_t Engine::durable_seq() const noexcept {
  return shared_->journal ? shared_->journal->durable_seq() : 0;
}

std::uint64_t Engine::last_seq() const noexcept {
  return shared_->journal ? shared_->journal->last_seq() : 0;
}

namespace {
tl::unexpected<std::string> durability_off() {
  return tl::unexpected(std::string("delivery history needs durability (it is off)"));
}
}  // namespace

tl::expected<DeliveryPage, std::string> Engine::deliveries(std::int64_t subscription_id,
                                                           std::string_view outcome,
                                                           std::int64_t offset,
                                                           std::int64_t limit) {
  if (!shared_->journal) return durability_off();
  return shared_->journal->deliveries(subscription_id, outcome, offset, limit);
}

tl::expected<Engine::Resent, std::string> Engine::resend(std::int64_t subscription_id,
                                                         std::string_view event_id) {
  if (!shared_->journal) return durability_off();
  std::int64_t did = 0;
  auto found = shared_->journal->find(subscription_id, event_id, did);
  if (!found) return tl::unexpected(std::move(found.error()));
  Resent out;
  if (!*found) return out;
  std::lock_guard lock(shared_->history_mu);
  resend_one(**found, did, out);
  return out;
}

tl::expected<Engine::Resent, std::string> Engine::recover(std::int64_t subscription_id,
                                                          std::int64_t since_unix_ms) {
  if (!shared_->journal) return durability_off();
  auto list = shared_->journal->exhausted_since(subscription_id, since_unix_ms);
  if (!list) return tl::unexpected(std::move(list.error()));
  Resent out;
  std::lock_guard lock(shared_->history_mu);
  for (const engine::Journal::Recovered& r : *list) resend_one(r.u, r.did, out);
  return out;
}

}  // namespace fanout
