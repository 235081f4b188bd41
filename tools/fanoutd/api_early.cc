// Early refusal (transport::HttpRequestHandler::on_headers): a request that carries a body is
// routed and authenticated on its headers, before the server reads or buffers the body. Without
// it, an unauthenticated client could make fanoutd hold up to ingest.max_body_bytes (16 MiB) per
// request (and 1024 streams per HTTP/2 connection) before the key was ever looked at.
//
// The headers go through dispatch() itself, in a probing mode that stops at authenticate(): so
// the order of checks is the one on_request follows (route 404/405, then 401/429), and the
// answer is the one it would give, with the same metrics.
#include <string_view>

#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/metrics.h"

namespace fanout::daemon {

using namespace api_detail;

transport::EarlyAnswer Api::on_headers(const transport::HttpRequest& head) {
  std::string_view route = "other";
  early_ = Reply();
  probing_ = true;
  probe_passed_ = false;
  (void)dispatch(head, transport::HttpResponder(), route, early_);
  probing_ = false;
  // A good key (the body is needed from here on), or nothing refused before authentication.
  if (probe_passed_ || early_.status < 400) return {};
  deps_.metrics->record_request(method_label(head.method), route, early_.status);
  early_headers_.clear();
  early_headers_.push_back({"content-type", early_.content_type});
  for (const auto& [n, v] : early_.headers) early_headers_.push_back({n, v});
  return {early_.status, early_headers_, early_.body};
}

}  // namespace fanout::daemon
