// The app page's files (tools/fanoutd/web/), compiled into fanoutd by web/embed.cmake so the
// page is served with no other server and no network (api_web.cc serves them).
#pragma once

#include <cstddef>
#include <string_view>

namespace fanout::daemon {

struct WebAsset {
  std::string_view name;          // file name, e.g. "app.js"
  std::string_view content_type;  // e.g. "text/javascript; charset=utf-8"
  const unsigned char* data;
  std::size_t size;
};

extern const WebAsset kWebAssets[];
extern const std::size_t kWebAssetCount;

}  // namespace fanout::daemon
