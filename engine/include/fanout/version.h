// fanout's version and the versions of the libraries it runs on.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout {

// "MAJOR.MINOR.PATCH" of this build; also sent as User-Agent: fanout/<version>.
[[nodiscard]] std::string_view version() noexcept;

// (library, version) for every runtime dependency: libuv, nghttp2, BoringSSL, llhttp, simdjson,
// libsodium, moodycamel ConcurrentQueue. Thread-safe; allocates.
[[nodiscard]] std::vector<std::pair<std::string, std::string>> dependency_versions();

}  // namespace fanout
