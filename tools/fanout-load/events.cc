// fanout-load's events (events.h).
#include "tools/fanout-load/events.h"

#include <string_view>

#include "routing/catalogue.h"

namespace fanout::load {

namespace {

// The payload of the default size: a business_updated event as Partoo sends it (564 B; the
// delivery body {"type":"business_updated","payload":<this>} is 602 B).
constexpr std::string_view kBusinessPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5",)"
    R"("org_id":1042,"name":"Boulangerie Lef\u00e8vre","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","city":"Paris","zipcode":"75011","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"]}],)"
    R"("open_hours":{"tuesday":["07:00-13:30","15:30-20:00"],)"
    R"("saturday":["07:30-20:00"]},"website_url":"https://boulangerie-lefevre.fr/",)"
    R"("is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}})";

}  // namespace

// Exactly `bytes` bytes (events.h).
std::string make_payload(std::size_t bytes) {
  std::string base(bytes >= kBusinessPayload.size() ? kBusinessPayload : "{}");
  const std::size_t missing = bytes - base.size();
  base.pop_back();  // the closing brace
  const bool comma = base.size() > 1;
  const std::size_t field = (comma ? 1 : 0) + std::string_view(R"("pad":"")").size();
  if (missing >= field) {
    if (comma) base += ',';
    base += R"("pad":")";
    base.append(missing - field, 'x');
    base += '"';
  } else {
    base.append(missing, ' ');
  }
  base += '}';
  return base;
}

std::vector<std::string> event_types(std::uint32_t count) {
  const fanout::routing::EventCatalogue catalogue;
  std::vector<std::string> types;
  for (std::size_t i = 0; i < count; ++i) {
    types.emplace_back(
        catalogue.name(static_cast<fanout::routing::EventTypeId>((i + 1) % catalogue.size())));
  }
  return types;
}

}  // namespace fanout::load
