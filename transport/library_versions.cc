#include "transport/library_versions.h"

#include "transport/tls.h"

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

namespace fanout::transport {

LibraryVersions library_versions() {
  LibraryVersions v;
  v.libuv = uv_version_string();
  v.nghttp2 = nghttp2_version(0)->version_str;
  v.tls = std::string(tls_library_version());
  v.llhttp = std::to_string(LLHTTP_VERSION_MAJOR) + "." + std::to_string(LLHTTP_VERSION_MINOR) +
             "." + std::to_string(LLHTTP_VERSION_PATCH);
  return v;
}

}  // namespace fanout::transport
