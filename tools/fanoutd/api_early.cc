// Early refusal (transport::HttpRequestHandler::on_headers): a request that carries a body is
// authenticated on its headers, before the server reads or buffers the body. Without it, an
// unauthenticated client could make fanoutd hold up to ingest.max_body_bytes (16 MiB) per
// request (and 1024 streams per HTTP/2 connection) before the key was ever looked at.
#include <string_view>

#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/metrics.h"

namespace fanout::daemon {

using namespace api_detail;

transport::EarlyAnswer Api::on_headers(const transport::HttpRequest& head) {
  const std::string_view path = head.target.substr(0, head.target.find('?'));
  // Only the API's routes take keys; everything else is answered (404, 405) by on_request.
  if (path.substr(0, 4) != "/v2/") return {};
  ApiKey key;
  early_ = Reply();
  if (lookup_key(head, key, early_)) return {};  // on_request checks again (cached)
  const std::string_view route = path == "/v2/events" ? "/v2/events" : "/v2/webhooks";
  deps_.metrics->record_request(method_label(head.method), route, early_.status);
  early_headers_.clear();
  early_headers_.push_back({"content-type", early_.content_type});
  for (const auto& [n, v] : early_.headers) early_headers_.push_back({n, v});
  return {early_.status, early_headers_, early_.body};
}

}  // namespace fanout::daemon
