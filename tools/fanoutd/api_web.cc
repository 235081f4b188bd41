// The app page (Settings > Integrations > Webhooks, tools/fanoutd/web/) and GET /v2/me, the
// call it signs in with. The page's files are compiled in (web_assets.h); every page answer
// carries a Content-Security-Policy that allows this origin's scripts, styles and calls only,
// no inline script, and no framing. The page learns whether this fanoutd accepts http://
// callback URLs (--insecure) from <html data-http="allowed">, so that its URL rule is the server's.
#include <algorithm>
#include <string>

#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/api_internal.h"
#include "tools/fanoutd/web_assets.h"

namespace fanout::daemon {

using namespace api_detail;

namespace {

constexpr std::string_view kPagePath = "/settings/integrations/webhooks";
constexpr std::string_view kAssetPrefix = "/assets/";

const WebAsset* find_asset(std::string_view name) {
  const WebAsset* end = kWebAssets + kWebAssetCount;
  const WebAsset* a =
      std::find_if(kWebAssets, end, [&](const WebAsset& w) { return w.name == name; });
  return a == end ? nullptr : a;
}

void page_headers(Api::Reply& reply) {
  reply.headers.emplace_back(
      "content-security-policy",
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
      "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'");
  reply.headers.emplace_back("x-content-type-options", "nosniff");
  reply.headers.emplace_back("x-frame-options", "DENY");
  reply.headers.emplace_back("referrer-policy", "no-referrer");
  reply.headers.emplace_back("cache-control", "no-cache");
}

}  // namespace

bool Api::web(std::string_view path, std::string_view method, std::string_view& route,
              Reply& reply) {
  const WebAsset* asset = nullptr;
  if (path == "/") {
    route = "/";
  } else if (path == kPagePath) {
    route = kPagePath;
    asset = find_asset("index.html");
  } else if (path.starts_with(kAssetPrefix)) {
    route = "/assets/{file}";
    asset = find_asset(path.substr(kAssetPrefix.size()));
    if (asset == nullptr || asset->name == "index.html") {
      not_found(reply);
      return true;
    }
  } else {
    return false;
  }
  if (method != "GET") {
    reply.status = 405;
    reply.body = R"({"error":{"json":"Method not allowed"}})";
    reply.headers.emplace_back("allow", "GET");
    return true;
  }
  page_headers(reply);
  if (asset == nullptr) {  // "/": the page is the only one
    reply.status = 302;
    reply.headers.emplace_back("location", std::string(kPagePath));
    reply.content_type = "text/plain; charset=utf-8";
    reply.body = "see " + std::string(kPagePath) + "\n";
    return true;
  }
  reply.content_type = std::string(asset->content_type);
  reply.body.assign(reinterpret_cast<const char*>(asset->data), asset->size);
  if (asset->name == "index.html" && deps_.config->engine.insecure) {
    constexpr std::string_view kRefused = "data-http=\"refused\"";
    if (const auto at = reply.body.find(kRefused); at != std::string::npos) {
      reply.body.replace(at, kRefused.size(), "data-http=\"allowed\"");
    }
  }
  return true;
}

void Api::me(const transport::HttpRequest& req, Reply& reply) {
  ApiKey key;
  if (!lookup_key(req, key, reply)) return;
  std::string& out = reply.body;
  out = "{";
  json::append_key(out, "role");
  json::append_string(out, to_string(key.role));
  out += ',';
  json::append_key(out, "org_ids");
  out += '[';
  for (std::size_t i = 0; i < key.orgs.size(); ++i) {
    if (i != 0) out += ',';
    json::append_int(out, key.orgs[i]);
  }
  out += "]}";
}

}  // namespace fanout::daemon
