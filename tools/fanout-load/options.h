// fanout-load's command line (tools/README.md, "fanout-load"): its options and their parsing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fanout::load {

extern const char* const kUsage;

struct Options {
  std::string url;
  std::string ingest;
  std::string key;
  std::uint64_t events = 100'000;
  double duration_s = 0;  // 0: count mode
  double duration_max_s = 600;
  double rate = 0;
  std::uint32_t orgs = 10'000;
  std::uint32_t types = 1;
  std::size_t payload_bytes = 564;
  std::string event_id;  // every event's own id ("id"); empty: none, the engine makes one
  std::uint32_t conns = 1;
  std::uint32_t streams = 0;  // 0: the mode's default
  unsigned workers = 1;
  std::uint64_t window = 0;  // 0: 2 x W x C x M
  std::string sign_key_file;
  bool sign = false;
  unsigned signing_threads = 0;  // EngineOptions::signing_threads
  std::uint64_t retry_base_ms = 1'000;
  std::uint32_t max_retries = 5;
  bool insecure = false;
  std::vector<std::string> allow_subnets;
  std::string ca_file;
  bool http1 = false;
  std::size_t batch = 500;
  bool json = false;
  bool quiet = false;
  bool print_body = false;
  bool sign_rate_only = false;
  bool waiting_retries = false;
};

// Prints "fanout-load: MESSAGE" and a hint on stderr, and exits 2.
[[noreturn]] void usage_error(const std::string& message);

// The options, checked (a usage error exits 2; --help prints the usage and exits 0).
Options parse_args(int argc, char** argv);

}  // namespace fanout::load
