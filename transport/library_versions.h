// Versions of the libraries the transport layer runs on, as linked at run time.
#pragma once

#include <string>

namespace fanout::transport {

struct LibraryVersions {
  std::string libuv;    // uv_version_string()
  std::string nghttp2;  // nghttp2_version(0)->version_str
  std::string tls;      // BoringSSL's OpenSSL_version(OPENSSL_VERSION)
  std::string llhttp;   // compiled-in LLHTTP_VERSION_*
};

// Thread-safe; allocates the strings.
[[nodiscard]] LibraryVersions library_versions();

}  // namespace fanout::transport
