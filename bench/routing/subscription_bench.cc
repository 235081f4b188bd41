#include <benchmark/benchmark.h>

#include <utility>

#include "bench/checked_main.h"
#include "routing/subscription.h"

namespace fanout::routing {
namespace {

// What an operator typically sends: an https URL with a path and a query, three custom headers.
SubscriptionSpec valid_spec() {
  SubscriptionSpec spec;
  spec.org_id = 4242;
  spec.event_type = "message_created";
  spec.url = "https://hooks.crm.example.com:8443/v1/partoo/webhooks?tenant=acme&channel=reviews";
  spec.custom_headers = {
      {"X-Api-Key", "sk_live_51HqLyjWDarjtT1zdp7dcXpLyjWDarjtT1zdp7dc"},
      {"X-Tenant-Id", "acme-eu-west-1"},
      {"X-Request-Source", "partoo webhooks \xc3\xa9tape 2"},
  };
  return spec;
}

// One spec that breaks a rule in every field, so every error path and message builder runs.
SubscriptionSpec invalid_spec() {
  SubscriptionSpec spec;
  spec.org_id = 0;
  spec.event_type = "Message_Created";
  spec.url = "http://admin:pw@hooks_crm.example.com:99999/v1/hook#frag";
  spec.custom_headers = {
      {"Authorization", "Bearer abc"},
      {"X-Partoo-Signature", "forged"},
      {"X-Trace:Id", "a\tb"},
      {"x-trace:id", " \xc0\xaf "},
  };
  return spec;
}

// Cost of one validate() call: the URL parse, every header rule and, on success, the copy into a
// Subscription; on failure, building every violation message. The valid case is what a create
// call pays per item; the invalid case bounds what a stream of bad requests costs.
void BM_SubscriptionValidate(benchmark::State& state, SubscriptionSpec spec, bool expect_valid) {
  const EventCatalogue catalogue;
  for (auto _ : state) {
    auto result = validate(spec, catalogue);
    benchmark::DoNotOptimize(result);
    if (result.has_value() != expect_valid) {
      state.SkipWithError("validate() gave an unexpected verdict");
      break;
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()));
}

// A realistic valid subscription: https URL with port, path and query; three custom headers.
BENCHMARK_CAPTURE(BM_SubscriptionValidate, valid, valid_spec(), true);
// A subscription invalid in every field (15 violations): the full error path.
BENCHMARK_CAPTURE(BM_SubscriptionValidate, invalid, invalid_spec(), false);

}  // namespace
}  // namespace fanout::routing

FANOUT_BENCHMARK_MAIN();
