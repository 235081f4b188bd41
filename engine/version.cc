#include "fanout/version.h"

#include <concurrentqueue/concurrentqueue.h>
#include <sodium.h>

#include "routing/envelope.h"
#include "transport/library_versions.h"

#ifndef FANOUT_VERSION
#error "FANOUT_VERSION must be defined by the build"
#endif

namespace fanout {

std::string_view version() noexcept {
  return FANOUT_VERSION;
}

std::vector<std::pair<std::string, std::string>> dependency_versions() {
  const transport::LibraryVersions t = transport::library_versions();
  // The queue is header-only and has no version macro; Debian's package is 1.0.3.
  static_assert(sizeof(moodycamel::ConcurrentQueue<int>) > 0);
  return {
      {"libuv", t.libuv},
      {"nghttp2", t.nghttp2},
      {"BoringSSL", t.tls},
      {"llhttp", t.llhttp},
      {"simdjson", std::string(routing::json_library_version())},
      {"libsodium", sodium_version_string()},
      {"moodycamel::ConcurrentQueue", "1.0.3 (header-only)"},
  };
}

}  // namespace fanout
