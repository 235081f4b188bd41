#include "transport/library_versions.h"

#include <llhttp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <uv.h>

namespace fanout::transport {

LibraryVersions library_versions() {
  LibraryVersions v;
  v.libuv = uv_version_string();
  v.nghttp2 = nghttp2_version(0)->version_str;
  v.tls = OpenSSL_version(OPENSSL_VERSION);
  v.llhttp = std::to_string(LLHTTP_VERSION_MAJOR) + "." + std::to_string(LLHTTP_VERSION_MINOR) +
             "." + std::to_string(LLHTTP_VERSION_PATCH);
  return v;
}

}  // namespace fanout::transport
