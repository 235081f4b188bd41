// Envelope benchmarks: parsing events as they enter fanout, building the bodies that leave it.
// Run: build/release/bench/envelope_bench
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "bench/checked_main.h"
#include "routing/envelope.h"

namespace fanout::routing {
namespace {

// A business_updated event as Partoo sends it, about `target` bytes long. The small one is a
// bare listing; larger ones add the services a full listing carries (accented text, escaped
// quotes, nested prices, numbers), which is what makes real events reach tens of KiB.
std::string make_event(std::size_t target) {
  std::string payload =
      R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5","org_id":1042,"name":"Boulangerie Lef\u00e8vre",)"
      R"("status":"open","address_full":"12 Rue Oberkampf","city":"Paris","zipcode":"75011","country":"FR",)"
      R"("phone":"+33 1 43 57 00 00",)"
      R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
      R"("open_hours":{"monday":[],"tuesday":["07:00-13:30","15:30-20:00"],"sunday":["07:30-13:00"]},)"
      R"("website_url":"https://boulangerie-lefevre.fr/","is_closed":false,"modified":1732724044.929678,)"
      R"("services":[)";
  const std::string head =
      R"({"id":"evt_01HF8Z3K9Q2W4E6R8T0Y1U3I5O","org_id":1042,"type":"business_updated","payload":)";
  const std::string tail = "]}}}";
  for (int i = 0;; ++i) {
    const std::string service =
        std::string(i > 0 ? "," : "") + R"({"id":)" + std::to_string(880000 + i) +
        R"(,"name":"G\u00e2teau \"fa\u00e7on grand-m\u00e8re\" n\u00b0)" + std::to_string(i) +
        R"(","description":"Pâte feuilletée pur beurre, crème d'amande — 6 parts 🥧",)"
        R"("price":{"amount":)" +
        std::to_string(12 + i % 30) +
        R"(.50,"currency":"EUR"},"tags":["sucré","maison"],)"
        R"("available":true,"position":)" +
        std::to_string(i) + "}";
    if (head.size() + payload.size() + service.size() + tail.size() > target) break;
    payload += service;
  }
  return head + payload + tail;
}

EventCatalogue& catalogue() {
  static EventCatalogue c;
  return c;
}

// parse() on one event: copy into the padded buffer, stage 1, and the validating walk over
// every value. The 600 B event shows the fixed cost per event (setup, the four envelope
// fields); the 16 KiB one shows the per-byte cost of validating a large payload, so events/s
// falls while bytes/s rises with size. Compare with BM_SimdjsonDomParseBaseline below.
void BM_EnvelopeParse(benchmark::State& state) {
  const std::string event = make_event(static_cast<std::size_t>(state.range(0)));
  EnvelopeParser parser(catalogue());
  if (!parser.parse(event)) {
    state.SkipWithError("sample event refused");
    return;
  }
  for (auto _ : state) {
    auto envelope = parser.parse(event);
    benchmark::DoNotOptimize(envelope);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(event.size()));
  state.SetLabel(std::to_string(event.size()) + " B");
}
BENCHMARK(BM_EnvelopeParse)->Arg(600)->Arg(16 * 1024);

// Baseline for BM_EnvelopeParse: simdjson's DOM parser on the same bytes, which also validates
// everything (stage 1 plus a full tape build) but extracts nothing and copies no input. The
// ratio (about 2 when this was written) is what strictness costs On-Demand: its lazy iterator
// does per-value work that DOM's tape builder does in one tight loop, plus the input copy.
void BM_SimdjsonDomParseBaseline(benchmark::State& state) {
  const simdjson::padded_string event(make_event(static_cast<std::size_t>(state.range(0))));
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (parser.parse(event).get(root) != simdjson::SUCCESS) {
    state.SkipWithError("sample event refused by simdjson");
    return;
  }
  for (auto _ : state) {
    auto error = parser.parse(event).get(root);
    benchmark::DoNotOptimize(error);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(event.size()));
  state.SetLabel(std::to_string(event.size()) + " B");
}
BENCHMARK(BM_SimdjsonDomParseBaseline)->Arg(600)->Arg(16 * 1024);

// write_delivery_body() into a buffer reused across calls, as a worker does per delivery: three
// small copies and one payload-sized memcpy, so it should run at memory bandwidth for 16 KiB and
// be dominated by call overhead for 600 B; either way far below the parse cost.
void BM_DeliveryBodyBuild(benchmark::State& state) {
  const std::string event = make_event(static_cast<std::size_t>(state.range(0)));
  EnvelopeParser parser(catalogue());
  const auto envelope = parser.parse(event);
  if (!envelope) {
    state.SkipWithError("sample event refused");
    return;
  }
  const std::string_view type_name = catalogue().name(envelope->type);
  const std::size_t size = delivery_body_size(type_name, envelope->payload);
  std::vector<char> buffer(size);
  for (auto _ : state) {
    const std::size_t written = write_delivery_body(type_name, envelope->payload, buffer.data());
    benchmark::DoNotOptimize(written);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(size));
  state.SetLabel(std::to_string(size) + " B");
}
BENCHMARK(BM_DeliveryBodyBuild)->Arg(600)->Arg(16 * 1024);

}  // namespace
}  // namespace fanout::routing

FANOUT_BENCHMARK_MAIN();
