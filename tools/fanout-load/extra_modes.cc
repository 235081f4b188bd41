// fanout-load's helper modes for the benchmarks: --waiting-retries (memory per waiting retry)
// and --sign-rate-only (Ed25519 signatures/s, engine Signer and raw BoringSSL).
#include <malloc.h>
#include <openssl/curve25519.h>
#include <openssl/mem.h>

#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "routing/envelope.h"
#include "tools/common/resident.h"
#include "tools/fanout-load/events.h"
#include "tools/fanout-load/measure.h"
#include "tools/fanout-load/modes.h"
#include "tools/fanout-load/observer.h"
#include "tools/fanout-load/options.h"

namespace fanout::load {

namespace {

std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

// Consumes one byte of every signature so the compiler cannot drop the signing.
volatile unsigned g_sink = 0;

}  // namespace

// Publishes N events whose first attempt fails (503) and then wait an hour for their retry;
// prints the heap and RSS growth per waiting retry.
int run_waiting_retries(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes, o.event_id);
  LoadObserver observer;
  const std::uint64_t n = o.events;
  const std::unique_ptr<fanout::Engine> engine = make_engine(o, src, &observer, n);
  fanout::Producer producer = engine->make_producer();
  const auto deadline = Clock::now() + to_duration(o.duration_max_s);
  const std::size_t heap_before = heap_in_use();
  const std::size_t rss_before = static_cast<std::size_t>(proc::resident_bytes());
  std::string event;
  for (std::uint64_t i = 0; i < n; ++i) {
    event.clear();
    src.append(i, &event);
    observer.add_accepted();
    if (producer.publish(event).status != fanout::PublishStatus::kAccepted) observer.take_back();
  }
  // Every accepted event ends up waiting for its retry (or, if the receiver said 2xx/4xx,
  // final): poll the engine's stats until nothing is attempting any more.
  bool cut = false;
  std::uint64_t waiting = 0;
  for (;;) {
    const fanout::EngineStats st = engine->stats();
    waiting = st.waiting_retry;
    if (waiting + observer.done() >= observer.accepted()) break;
    if (Clock::now() > deadline) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::size_t heap_after = heap_in_use();
  const std::size_t rss_after = static_cast<std::size_t>(proc::resident_bytes());
  const std::size_t handed_back = engine->stop(std::chrono::milliseconds(0)).size();
  const double w = static_cast<double>(waiting);
  const double heap_per =
      waiting > 0 ? (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / w : 0;
  const double rss_per =
      waiting > 0 ? (static_cast<double>(rss_after) - static_cast<double>(rss_before)) / w : 0;
  if (o.json) {
    JsonObject j;
    j.text("mode", "waiting-retries")
        .text("url", o.url)
        .num("events", n)
        .num("published", observer.accepted())
        .num("waiting_retry", waiting)
        .num("final", observer.done())
        .num("heap_bytes_before", heap_before)
        .num("heap_bytes_after", heap_after)
        .real("heap_bytes_per_waiting_retry", heap_per, 1)
        .num("rss_bytes_before", rss_before)
        .num("rss_bytes_after", rss_after)
        .real("rss_bytes_per_waiting_retry", rss_per, 1)
        .num("handed_back", handed_back)
        .boolean("cut", cut);
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("fanout-load --waiting-retries %s: %" PRIu64 " events, %" PRIu64
                " waiting for a retry\n",
                o.url.c_str(), n, waiting);
    std::printf("  heap (mallinfo2) %zu -> %zu bytes: %.0f bytes per waiting retry\n", heap_before,
                heap_after, heap_per);
    std::printf("  RSS              %zu -> %zu bytes: %.0f bytes per waiting retry\n", rss_before,
                rss_after, rss_per);
    std::printf("  handed back by stop(): %zu\n", handed_back);
  }
  return (!cut && waiting == n) ? 0 : 1;
}

int run_sign_rate_only(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes, o.event_id);
  const std::string body = fanout::routing::build_delivery_body(src.types()[0], src.payload());
  const fanout::engine::Signer signer = fanout::engine::Signer::generate();
  char header[fanout::engine::Signer::kSignatureBase64Size];
  // Warm-up, then N signatures with the engine's Signer (what publish() runs when signing).
  for (int i = 0; i < 100; ++i) signer.sign_base64(body, header);
  Clock::time_point t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.events; ++i) {
    signer.sign_base64(body, header);
    g_sink = g_sink + static_cast<unsigned char>(header[i % sizeof header]);
  }
  const double signer_s = seconds_between(t0, Clock::now());

  // Raw BoringSSL on the same key and body: the baseline the signed rate is compared with.
  std::uint8_t public_key[ED25519_PUBLIC_KEY_LEN];
  std::uint8_t private_key[ED25519_PRIVATE_KEY_LEN];
  ED25519_keypair_from_seed(public_key, private_key, signer.seed().data());
  std::uint8_t signature[ED25519_SIGNATURE_LEN];
  const auto* message = reinterpret_cast<const std::uint8_t*>(body.data());
  for (int i = 0; i < 100; ++i) ED25519_sign(signature, message, body.size(), private_key);
  t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.events; ++i) {
    ED25519_sign(signature, message, body.size(), private_key);
    g_sink = g_sink + signature[i % sizeof signature];
  }
  const double boring_s = seconds_between(t0, Clock::now());
  OPENSSL_cleanse(private_key, sizeof private_key);

  const double signer_rate = per_second(o.events, signer_s);
  const double boring_rate = per_second(o.events, boring_s);
  if (o.json) {
    JsonObject j;
    j.text("mode", "sign-rate-only")
        .num("signatures", o.events)
        .num("body_bytes", body.size())
        .real("signer_per_s", signer_rate, 1)
        .real("boringssl_per_s", boring_rate, 1);
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("Ed25519 on one thread, %zu B body, %" PRIu64 " signatures each:\n", body.size(),
                o.events);
    std::printf("  engine Signer::sign_base64 (libsodium + base64) %.0f/s\n", signer_rate);
    std::printf("  raw BoringSSL ED25519_sign                      %.0f/s\n", boring_rate);
  }
  return 0;
}
}  // namespace fanout::load
