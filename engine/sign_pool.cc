#include "engine/sign_pool.h"

#include <chrono>
#include <utility>

#include "engine/worker.h"

namespace fanout::engine {

namespace {
// How long an idle signing thread sleeps before it looks at the stop flag again. stop() also
// wakes every thread at once; this only bounds a wake-up lost to one thread taking another's.
constexpr auto kIdleWait = std::chrono::milliseconds(100);

// stop()'s wake-ups are null entries: dropped. Returns how many deliveries are left in front.
std::size_t drop_wakeups(Delivery** batch, std::size_t n) noexcept {
  std::size_t kept = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (batch[i] != nullptr) batch[kept++] = batch[i];
  }
  return kept;
}
}  // namespace

SignPool::SignPool(const Signer& signer, std::vector<Worker*> workers, unsigned threads)
    : signer_(signer), workers_(std::move(workers)), thread_count_(threads) {}

SignPool::~SignPool() {
  stop();
}

void SignPool::start() {
  threads_.reserve(thread_count_);
  for (unsigned i = 0; i < thread_count_; ++i) threads_.emplace_back([this, i] { run(i); });
}

void SignPool::submit(moodycamel::ProducerToken& token, Delivery* d) {
  queue_.enqueue(token, d);
}

std::vector<moodycamel::ProducerToken> SignPool::inbox_tokens() {
  std::vector<moodycamel::ProducerToken> tokens;
  tokens.reserve(workers_.size());
  for (Worker* w : workers_) tokens.emplace_back(w->inbox());
  return tokens;
}

void SignPool::forward(Delivery** batch, std::size_t n,
                       std::vector<moodycamel::ProducerToken>& tokens) {
  std::size_t i = 0;
  while (i < n) {
    Worker* w = batch[i]->worker;
    std::size_t j = i + 1;
    while (j < n && batch[j]->worker == w) ++j;
    w->enqueue_bulk(tokens[w->index()], batch + i, j - i);
    i = j;
  }
}

void SignPool::run(unsigned index) {
  name_this_thread("fanout-s", index);
  moodycamel::ConsumerToken consumer(queue_);
  std::vector<moodycamel::ProducerToken> tokens = inbox_tokens();
  Delivery* batch[kBatch];
  while (true) {
    const std::size_t n =
        drop_wakeups(batch, queue_.wait_dequeue_bulk_timed(consumer, batch, kBatch, kIdleWait));
    const bool stopping = stopping_.load(std::memory_order_acquire);
    if (!stopping && n != 0) {
      for (std::size_t i = 0; i < n; ++i) batch[i]->sign(signer_);
      signed_.fetch_add(n, std::memory_order_relaxed);
    }
    forward(batch, n, tokens);
    if (stopping) return;  // stop() moves what is left
  }
}

void SignPool::stop() {
  if (stopping_.exchange(true, std::memory_order_acq_rel)) return;
  for (std::size_t i = 0; i < threads_.size(); ++i) queue_.enqueue(nullptr);
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  // What the threads left (every publisher has left publish(), so nothing more arrives).
  std::vector<moodycamel::ProducerToken> tokens = inbox_tokens();
  Delivery* batch[kBatch];
  while (true) {
    const std::size_t n = queue_.try_dequeue_bulk(batch, kBatch);
    if (n == 0) return;
    forward(batch, drop_wakeups(batch, n), tokens);
  }
}

}  // namespace fanout::engine
