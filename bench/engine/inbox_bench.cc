// The engine's inbox and its waiting retries: moodycamel call styles for N producers -> 1
// consumer of pointers, and the memory one waiting retry costs.
//
// Run:
//   build/eb/bench/inbox_bench --benchmark_min_time=0.5
// FANOUT_BENCH_SMOKE=1 (the bench-smoke test) shrinks the batches, the producer sweep and the
// retry count so that every benchmark runs once, briefly.
//
// The inbox (engine/worker.h): every publishing thread owns a Producer holding one
// moodycamel::ProducerToken per worker and enqueues a Delivery* (then uv_async_send); the worker
// drains with try_dequeue_bulk and a ConsumerToken, 256 at a time. The four call styles below
// are the producer side {no token, ProducerToken} x the consumer side {one try_dequeue at a time,
// try_dequeue_bulk with a ConsumerToken}; the last one is the engine's.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// moodycamel's queue trips GCC's flow-based -Wnull-dereference once inlined (as in
// engine/worker.h); the warning stays on everywhere else.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include <concurrentqueue/concurrentqueue.h>
#pragma GCC diagnostic pop

#include "bench/checked_main.h"
#include "engine/worker.h"
#include "transport/timer_wheel.h"

namespace fanout::engine {
namespace {

bool smoke() {
  return std::getenv("FANOUT_BENCH_SMOKE") != nullptr;
}

// Items moved from the producers to the consumer per benchmark iteration.
std::size_t batch_items() {
  return smoke() ? 4096 : 65536;
}

struct Item {
  std::uint64_t value = 0;
};

// P producer threads (state.range(0)) enqueue `batch_items()` pointers in total per iteration;
// the benchmark thread is the consumer and dequeues them all. Producers live for the whole
// benchmark run, as a Producer's tokens do, and start each iteration on a generation counter.
template <bool kProducerToken, bool kBulk>
void inbox_round_trips(benchmark::State& state) {
  const auto producers = static_cast<std::size_t>(state.range(0));
  const std::size_t items = batch_items();
  const std::size_t per_producer = items / producers;
  const std::size_t total = per_producer * producers;
  std::vector<Item> storage(total);

  moodycamel::ConcurrentQueue<Item*> queue;
  moodycamel::ConsumerToken consumer(queue);
  std::atomic<std::uint64_t> generation{0};
  std::atomic<bool> quit{false};
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      std::unique_ptr<moodycamel::ProducerToken> token;
      if constexpr (kProducerToken) token = std::make_unique<moodycamel::ProducerToken>(queue);
      std::uint64_t seen = 0;
      Item* mine = storage.data() + p * per_producer;
      for (;;) {
        std::uint64_t g = 0;
        while ((g = generation.load(std::memory_order_acquire)) == seen) {
          if (quit.load(std::memory_order_acquire)) return;
          std::this_thread::yield();
        }
        seen = g;
        for (std::size_t i = 0; i < per_producer; ++i) {
          if constexpr (kProducerToken) {
            queue.enqueue(*token, mine + i);
          } else {
            queue.enqueue(mine + i);
          }
        }
      }
    });
  }

  Item* buf[256];
  std::uint64_t checksum = 0;
  for (auto _ : state) {
    generation.fetch_add(1, std::memory_order_release);
    std::size_t got = 0;
    while (got < total) {
      if constexpr (kBulk) {
        const std::size_t n = queue.try_dequeue_bulk(consumer, buf, std::size(buf));
        for (std::size_t i = 0; i < n; ++i) checksum += buf[i]->value;
        got += n;
        if (n == 0) std::this_thread::yield();
      } else {
        Item* item = nullptr;
        if (queue.try_dequeue(item)) {
          checksum += item->value;
          ++got;
        } else {
          std::this_thread::yield();
        }
      }
    }
  }
  quit.store(true, std::memory_order_release);
  for (auto& t : threads) t.join();
  benchmark::DoNotOptimize(checksum);
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(total));
  state.counters["producers"] = static_cast<double>(producers);
}

void producer_sweep(benchmark::internal::Benchmark* b) {
  b->ArgName("producers")->UseRealTime();
  b->Arg(1);
  if (!smoke()) b->Arg(2)->Arg(4);
}

// enqueue(item) / try_dequeue(item): the implicit producer (a thread-local lookup per enqueue)
// and a consumer that scans producers per item. The baseline of the sweep.
void BM_InboxPlainEnqueueSingleDequeue(benchmark::State& state) {
  inbox_round_trips<false, false>(state);
}
BENCHMARK(BM_InboxPlainEnqueueSingleDequeue)->Apply(producer_sweep);

// enqueue(ProducerToken, item) / try_dequeue(item): what the producer token alone buys.
void BM_InboxTokenEnqueueSingleDequeue(benchmark::State& state) {
  inbox_round_trips<true, false>(state);
}
BENCHMARK(BM_InboxTokenEnqueueSingleDequeue)->Apply(producer_sweep);

// enqueue(item) / try_dequeue_bulk(ConsumerToken, 256): what bulk draining alone buys.
void BM_InboxPlainEnqueueBulkDequeue(benchmark::State& state) {
  inbox_round_trips<false, true>(state);
}
BENCHMARK(BM_InboxPlainEnqueueBulkDequeue)->Apply(producer_sweep);

// enqueue(ProducerToken, item) / try_dequeue_bulk(ConsumerToken, 256): the engine's pattern.
// The sweep over producers shows whether the single consumer keeps up as publishers are added
// (on a 2-core machine, 4 producers are oversubscribed: the rate then measures contention).
void BM_InboxTokenEnqueueBulkDequeue(benchmark::State& state) {
  inbox_round_trips<true, true>(state);
}
BENCHMARK(BM_InboxTokenEnqueueBulkDequeue)->Apply(producer_sweep);

// --- memory per waiting retry ------------------------------------------------------------------

std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// glibc malloc's chunk for a request of n bytes on 64-bit: n + 8 bytes of header, rounded up to
// 16, at least 32.
std::size_t malloc_chunk(std::size_t n) {
  return std::max<std::size_t>(32, (n + 8 + 15) & ~std::size_t{15});
}

// What a delivery waiting for its retry holds, measured: state.range(0) WaitingRetry blocks
// (engine/worker.h: what Worker::wait() makes of a Delivery), each with a 600-byte body and a
// 32-character generated event id, each with its backoff entry armed in a timer wheel (an hour
// ahead, spread over a minute). Targets are shared per subscription and not counted. Counters:
// bytes_per_retry (heap growth from mallinfo2 divided by the count), analytic_bytes (the one
// block of state, id and body as a glibc chunk), beyond_body (analytic_bytes less the body),
// sizeof_waiting_retry and, for comparison, sizeof_delivery (what waited until 2026-12-06).
// The sweep shows the cost is linear (constant per retry).
void BM_WaitingRetryMemory(benchmark::State& state) {
  const auto count = static_cast<std::size_t>(state.range(0));
  const std::string body(600, 'x');
  const std::string id(32, 'a');
  std::vector<WaitingRetry*> retries;
  double per_retry = 0;
  for (auto _ : state) {
    retries.reserve(count);  // outside the measured difference below
    transport::TimerWheel wheel(1'000'000);
    const std::size_t before = heap_in_use();
    for (std::size_t i = 0; i < count; ++i) {
      WaitingRetry* w = WaitingRetry::make(id.size(), body.size());
      w->org_id = static_cast<std::int64_t>(i);
      std::memcpy(w->id_data(), id.data(), id.size());
      std::memcpy(w->body_data(), body.data(), body.size());
      w->attempts = 1;
      w->backoff.set_callback([](transport::TimerEntry&, void*) noexcept {}, w);
      wheel.schedule(w->backoff, 1'000'000 + 3'600'000 + i % 60'000);
      retries.push_back(w);
    }
    const std::size_t after = heap_in_use();
    per_retry = static_cast<double>(after - before) / static_cast<double>(count);
    benchmark::DoNotOptimize(retries.data());
    for (WaitingRetry* w : retries) {
      wheel.cancel(w->backoff);
      WaitingRetry::destroy(w);
    }
    retries.clear();
  }
  const std::size_t analytic = malloc_chunk(sizeof(WaitingRetry) + id.size() + body.size());
  state.counters["bytes_per_retry"] = per_retry;
  state.counters["analytic_bytes"] = static_cast<double>(analytic);
  state.counters["beyond_body"] = static_cast<double>(analytic - body.size());
  state.counters["sizeof_waiting_retry"] = static_cast<double>(sizeof(WaitingRetry));
  state.counters["sizeof_delivery"] = static_cast<double>(sizeof(Delivery));
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(count));
}
void retry_counts(benchmark::internal::Benchmark* b) {
  b->ArgName("retries")->Iterations(1)->Unit(benchmark::kMillisecond);
  if (smoke()) {
    b->Arg(10'000);
  } else {
    b->Arg(100'000)->Arg(1'000'000);
  }
}
BENCHMARK(BM_WaitingRetryMemory)->Apply(retry_counts);

}  // namespace
}  // namespace fanout::engine

FANOUT_BENCHMARK_MAIN();
