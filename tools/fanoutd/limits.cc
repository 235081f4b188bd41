#include "tools/fanoutd/limits.h"

#include <sys/resource.h>

#include <algorithm>

namespace fanout::daemon {

tl::expected<DescriptorPlan, std::string> plan_descriptors(const Config& config) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
    return tl::unexpected(std::string("getrlimit(RLIMIT_NOFILE) failed"));
  }
  if (rl.rlim_cur != rl.rlim_max) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) rl = raised;
  }
  constexpr std::size_t kMinApi = 16;
  DescriptorPlan plan;
  plan.limit = rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : static_cast<std::uint64_t>(rl.rlim_cur);
  if (plan.limit < config.fd_reserve + kMinApi) {
    return tl::unexpected("fd_reserve (" + std::to_string(config.fd_reserve) +
                          ") leaves fewer than " + std::to_string(kMinApi) +
                          " descriptors for API connections: RLIMIT_NOFILE is " +
                          std::to_string(plan.limit) + " (raise it, or lower fd_reserve)");
  }
  const std::uint64_t room = plan.limit - config.fd_reserve;
  plan.api_connections =
      static_cast<std::size_t>(std::min<std::uint64_t>(config.api_max_connections, room));
  plan.capped_by_limit = plan.api_connections < config.api_max_connections;
  return plan;
}

}  // namespace fanout::daemon
