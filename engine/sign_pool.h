// Signing off the workers (EngineOptions::signing_threads): a few threads that make each new
// delivery's Partoo signature (X-Partoo-Signature-v1, Ed25519 over the body) between publish()
// and the worker's inbox. Not part of the public API.
//
//   producer ──submit──► queue ──► signing thread: sign, has_signature ──► d->worker's inbox
//
// Why: an Ed25519 signature costs ~18 µs of CPU, five times what sending the request costs, and
// one organisation's events all go to one worker. Signing on the worker makes that worker (and
// the core it runs on) the limit whatever the other cores do; the pool spreads the signing over
// as many threads as asked, wherever the scheduler finds a free core, and leaves the worker the
// network.
//
// Invariants: a delivery in the pool belongs to the pool (no other thread touches it) until it
// is in its worker's inbox; d->worker is set by the producer before submit(); every delivery
// submitted reaches its worker's inbox exactly once, signed unless the pool was stopping (a
// worker signs an unsigned one at its first attempt, as without the pool). Shared::in_flight
// still counts it throughout.
//
// Stop (Engine::stop(), after every publisher has left publish() and before any worker drains):
// stop() wakes the threads, joins them, then moves what is still queued to the inboxes itself,
// unsigned: the workers hand those back as unfinished. So the workers' own stop sees every
// delivery ever accepted.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <thread>
#include <vector>

// Same as worker.h: moodycamel trips GCC's -Wnull-dereference once inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <concurrentqueue/blockingconcurrentqueue.h>
#pragma GCC diagnostic pop

#include "engine/signer.h"

namespace fanout::engine {

class Delivery;
class Worker;

class SignPool {
 public:
  // Deliveries a thread takes from the queue at once (and forwards to an inbox at once).
  static constexpr std::size_t kBatch = 64;

  // `threads` threads (>= 1) signing with `signer` (which outlives the pool), forwarding to
  // `workers` (their inboxes); started by start().
  SignPool(const Signer& signer, std::vector<Worker*> workers, unsigned threads);
  ~SignPool();
  SignPool(const SignPool&) = delete;
  SignPool& operator=(const SignPool&) = delete;

  void start();
  // Any thread, each with its own token (make_token()). `d->worker` is set; `d` is the pool's.
  void submit(moodycamel::ProducerToken& token, Delivery* d);
  [[nodiscard]] moodycamel::ProducerToken make_token() { return moodycamel::ProducerToken(queue_); }
  // Signs nothing more; every queued delivery goes to its worker's inbox; threads joined.
  // Idempotent; safe before start().
  void stop();
  [[nodiscard]] std::uint64_t signed_count() const noexcept {
    return signed_.load(std::memory_order_relaxed);
  }

 private:
  void run(unsigned index);
  // Hands `n` deliveries to their workers' inboxes: each run of one worker's deliveries is one
  // Worker::enqueue_bulk() call, one wake-up. `tokens` holds this thread's producer token for each
  // worker's inbox.
  void forward(Delivery** batch, std::size_t n, std::vector<moodycamel::ProducerToken>& tokens);
  [[nodiscard]] std::vector<moodycamel::ProducerToken> inbox_tokens();

  const Signer& signer_;
  std::vector<Worker*> workers_;
  unsigned thread_count_;
  moodycamel::BlockingConcurrentQueue<Delivery*> queue_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false};
  std::atomic<std::uint64_t> signed_{0};
};

}  // namespace fanout::engine
