// The "signing" field of webhook bodies (api_signing.cc), shared by the create and update
// parsers in api.cc.
#pragma once

#include <string>

#include <simdjson.h>

#include "routing/subscription.h"
#include "tools/fanoutd/api.h"

namespace fanout::daemon::api_detail {

// "default", "off", "v1a", "v1" or "both" into `out`; false with a field error on `name`.
[[nodiscard]] bool signing_field(simdjson::dom::element value, const std::string& name,
                                 routing::WebhookSigning& out, Api::FieldErrors& errors);

}  // namespace fanout::daemon::api_detail
