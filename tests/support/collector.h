// An Observer for engine tests: keeps a copy of every outcome and lets the test thread wait for
// them (a condition variable, never a sleep).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "fanout/engine.h"

namespace fanout::testing {

class Collector final : public Observer {
 public:
  struct Copy {
    std::string event_id;
    std::int64_t org_id = 0;
    std::string event_type;
    std::int64_t subscription_id = 0;
    OutcomeKind kind = OutcomeKind::kDelivered;
    std::uint32_t attempts = 0;
    int last_status = 0;
    std::string last_failure;
    std::uint64_t tag = 0;
    std::uint32_t last_response_us = 0;
  };
  struct Retry {
    std::uint64_t tag = 0;
    std::string event_id;
    std::uint32_t attempts = 0;
    std::int64_t next_attempt_unix_ms = 0;
    std::uint64_t hold = 0;
  };

  void on_outcomes(std::span<const Outcome> outcomes) noexcept override {
    {
      std::lock_guard lock(mu_);
      for (const Outcome& o : outcomes) {
        got_.push_back({std::string(o.event_id), o.org_id, std::string(o.event_type),
                        o.subscription_id, o.kind, o.attempts, o.last_status,
                        std::string(o.last_failure), o.tag, o.last_response_us});
      }
    }
    cv_.notify_all();
  }

  void on_retry(const RetryNote& note) noexcept override {
    {
      std::lock_guard lock(mu_);
      retries_.push_back({note.tag, std::string(note.event_id), note.attempts,
                          note.next_attempt_unix_ms, note.hold});
    }
    cv_.notify_all();
  }

  // True once `n` retry notes arrived; false after `limit`.
  bool wait_for_retries(std::size_t n, std::chrono::seconds limit = std::chrono::seconds(120)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return retries_.size() >= n; });
  }

  std::vector<Retry> retries() {
    std::lock_guard lock(mu_);
    return retries_;
  }

  // True once `n` outcomes arrived; false after `limit` (a failure, never a timing assertion).
  bool wait_for(std::size_t n, std::chrono::seconds limit = std::chrono::seconds(120)) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, limit, [&] { return got_.size() >= n; });
  }

  // After kBusy: returns once at most `outstanding` of the `accepted` events lack an outcome,
  // or once release() was called. The engine frees budget just after reporting, so a publish
  // right after this may still be busy: the caller simply waits again (half the budget as
  // `outstanding` keeps that rare).
  void wait_for_room(const std::atomic<std::uint64_t>& accepted, std::size_t outstanding) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return released_ || got_.size() + outstanding >= accepted.load(); });
  }

  // Wakes every wait_for_room() for good (the engine is stopping).
  void release() {
    {
      std::lock_guard lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
  }

  std::vector<Copy> outcomes() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Copy> got_;
  std::vector<Retry> retries_;
  bool released_ = false;
};

}  // namespace fanout::testing
