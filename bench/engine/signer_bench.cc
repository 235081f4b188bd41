// Ed25519 signing of delivery bodies: libsodium against BoringSSL, and fanout's full header path.
// Run (repetitions interleaved at random, so load from other processes hits both libraries alike):
//   build/release/bench/signer_bench --benchmark_min_time=0.5 --benchmark_repetitions=5
//   --benchmark_enable_random_interleaving=true
// After the usual table it prints, for each body size, libsodium signatures/s divided by
// BoringSSL signatures/s measured in this run (the reason engine/signer.cc uses libsodium), and
// what the base64 header path keeps of the raw libsodium rate.
//
// Ed25519 signing is one fixed-base scalar multiplication plus two SHA-512 passes over the body,
// so the sweep over body sizes shows where hashing starts to matter: at ~600 B (a typical
// webhook) the curve arithmetic dominates; at 64 KiB hashing does.
#include <benchmark/benchmark.h>
#include <openssl/curve25519.h>
#include <sodium.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench/checked_main.h"
#include "engine/signer.h"
#include "engine/standard_webhooks.h"

namespace fanout::engine {
namespace {

// Nothing here grows with the arguments, so the bench-smoke run (FANOUT_BENCH_SMOKE=1) needs no
// cap; it only shortens the sweep to the headline size.
bool smoke() {
  return std::getenv("FANOUT_BENCH_SMOKE") != nullptr;
}

std::string body_of(std::int64_t size) {
  std::string body(static_cast<std::size_t>(size), '\0');
  std::uint32_t x = 2463534242u;
  for (char& c : body) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>('a' + x % 26);
  }
  return body;
}

std::array<std::uint8_t, 32> fixed_seed() {
  std::array<std::uint8_t, 32> seed{};
  for (std::size_t i = 0; i < seed.size(); ++i) seed[i] = static_cast<std::uint8_t>(i * 7 + 1);
  return seed;
}

// With --benchmark_repetitions, "max" is the best repetition of each column: for items/s the
// fastest run, the estimate least disturbed by other processes on a shared machine (the median
// is reported too).
double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::ranges::max_element(v);
}

void body_sizes(benchmark::internal::Benchmark* b) {
  b->Arg(600);
  if (!smoke()) b->Arg(64)->Arg(4096)->Arg(65536);
  b->ComputeStatistics("max", max_of);
}

// Raw libsodium crypto_sign_detached on a body of state.range(0) bytes: the signatures/s one
// core reaches with the library the engine uses.
void BM_SignLibsodium(benchmark::State& state) {
  if (sodium_init() < 0) state.SkipWithError("sodium_init failed");
  const std::string body = body_of(state.range(0));
  const auto seed = fixed_seed();
  std::uint8_t public_key[crypto_sign_PUBLICKEYBYTES];
  std::uint8_t secret_key[crypto_sign_SECRETKEYBYTES];
  crypto_sign_seed_keypair(public_key, secret_key, seed.data());
  std::uint8_t signature[crypto_sign_BYTES];
  const auto* message = reinterpret_cast<const std::uint8_t*>(body.data());
  for (auto _ : state) {
    crypto_sign_detached(signature, nullptr, message, body.size(), secret_key);
    benchmark::DoNotOptimize(signature);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SignLibsodium)->Apply(body_sizes);

// Raw BoringSSL ED25519_sign on the same body and key: the baseline issue 4 measured (18-24k/s)
// and the rate the signed end-to-end benchmark is judged against.
void BM_SignBoringssl(benchmark::State& state) {
  const std::string body = body_of(state.range(0));
  const auto seed = fixed_seed();
  std::uint8_t public_key[ED25519_PUBLIC_KEY_LEN];
  std::uint8_t private_key[ED25519_PRIVATE_KEY_LEN];
  ED25519_keypair_from_seed(public_key, private_key, seed.data());
  std::uint8_t signature[ED25519_SIGNATURE_LEN];
  const auto* message = reinterpret_cast<const std::uint8_t*>(body.data());
  for (auto _ : state) {
    ED25519_sign(signature, message, body.size(), private_key);
    benchmark::DoNotOptimize(signature);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SignBoringssl)->Apply(body_sizes);

// Signer::sign_base64, what a worker runs once per signed event: libsodium's sign plus the
// base64 encoding into the 88-char header value. Its gap to BM_SignLibsodium is our overhead.
void BM_SignBase64(benchmark::State& state) {
  const std::string body = body_of(state.range(0));
  const auto seed = fixed_seed();
  const auto signer = Signer::from_seed(seed);
  if (!signer) {
    state.SkipWithError(signer.error().c_str());
    return;
  }
  char header[Signer::kSignatureBase64Size];
  for (auto _ : state) {
    signer->sign_base64(body, header);
    benchmark::DoNotOptimize(header);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_SignBase64)->Apply(body_sizes);

// Standard Webhooks (engine/standard_webhooks.h), what a worker runs per attempt when they are
// on: write_webhook_signature over "id.timestamp.body" (a 32-char id, 10 digits, the body), for
// v1 (HMAC-SHA256, the subscription's 32-byte secret), v1a (Ed25519: as BM_SignBase64 on 43
// more bytes) and both. v1 should cost ~1 µs at 600 B, v1a ~20-50 µs: the per-attempt price of
// each mode, against the once-per-event X-Partoo-Signature-v1.
void webhook_signature(benchmark::State& state, bool v1, bool v1a) {
  const std::string content =
      "0123456789abcdef0123456789abcdef.1764931200." + body_of(state.range(0));
  const auto seed = fixed_seed();
  const auto signer = Signer::from_seed(seed);
  if (!signer) {
    state.SkipWithError(signer.error().c_str());
    return;
  }
  std::array<std::uint8_t, kWebhookSecretBytes> secret{};
  for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<std::uint8_t>(i);
  char header[kWebhookSignatureMaxSize];
  for (auto _ : state) {
    benchmark::DoNotOptimize(write_webhook_signature(v1, v1a, secret, &*signer, content, header));
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * state.range(0));
}
void BM_WebhookSignatureV1(benchmark::State& state) {
  webhook_signature(state, true, false);
}
void BM_WebhookSignatureV1a(benchmark::State& state) {
  webhook_signature(state, false, true);
}
void BM_WebhookSignatureBoth(benchmark::State& state) {
  webhook_signature(state, true, true);
}
BENCHMARK(BM_WebhookSignatureV1)->Apply(body_sizes);
BENCHMARK(BM_WebhookSignatureV1a)->Apply(body_sizes);
BENCHMARK(BM_WebhookSignatureBoth)->Apply(body_sizes);

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  // Keeps items/s per (estimator, body size, benchmark); the estimator is "run" without
  // repetitions, else "median" and "max".
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.error_occurred || run.run_name.args.empty()) continue;
      const std::string estimator = run.run_type == Run::RT_Iteration ? "run" : run.aggregate_name;
      if (estimator == "run" && run.repetitions > 1) continue;
      if (estimator != "run" && estimator != "median" && estimator != "max") continue;
      const auto items = run.counters.find("items_per_second");
      if (items == run.counters.end()) continue;
      rates_[estimator][std::stol(run.run_name.args)][run.run_name.function_name] =
          items->second.value;
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    for (auto& [estimator, by_size] : rates_) {
      std::printf("\nEd25519 signatures/s on one core, same run (%s):\n",
                  estimator == "run"   ? "single run per benchmark"
                  : estimator == "max" ? "best repetition"
                                       : "median repetition");
      for (auto& [size, rate] : by_size) {
        const double sodium = rate["BM_SignLibsodium"];
        const double boring = rate["BM_SignBoringssl"];
        const double base64 = rate["BM_SignBase64"];
        if (sodium <= 0 || boring <= 0) continue;
        std::printf(
            "  %6ld B body: libsodium %8.0f/s  BoringSSL %8.0f/s  libsodium/BoringSSL %5.2fx  "
            "sign_base64 %8.0f/s (%.3f of libsodium)\n",
            size, sodium, boring, sodium / boring, base64, base64 / sodium);
      }
    }
  }

 private:
  // estimator -> body size -> benchmark -> items/s
  std::map<std::string, std::map<long, std::map<std::string, double>>> rates_;
};

}  // namespace
}  // namespace fanout::engine

int main(int argc, char** argv) {
  fanout::engine::RatioReporter reporter;
  return fanout::bench::run_checked(argc, argv, &reporter);
}
