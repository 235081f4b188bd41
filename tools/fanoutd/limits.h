// File descriptors: fanoutd shares one descriptor table between the API's inbound connections
// and everything else (outgoing deliveries, the store, the journal, the Redis source). At start
// it raises its soft RLIMIT_NOFILE to the hard limit, keeps `fd_reserve` descriptors for the
// rest, and caps inbound API connections at min(api.max_connections, limit - fd_reserve): so
// that no number of idle clients can take the descriptors a delivery needs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include <tl/expected.hpp>

#include "tools/fanoutd/config.h"

namespace fanout::daemon {

struct DescriptorPlan {
  std::uint64_t limit = 0;          // RLIMIT_NOFILE after raising the soft limit
  std::size_t api_connections = 0;  // the API server's max_connections
  bool capped_by_limit = false;     // api.max_connections did not fit beside fd_reserve
};

// Raises the soft limit (best effort) and plans; an error when fd_reserve leaves fewer than 16
// descriptors for the API.
[[nodiscard]] tl::expected<DescriptorPlan, std::string> plan_descriptors(const Config& config);

}  // namespace fanout::daemon
