// fanout-sink's command line (tools/README.md, "fanout-sink"): its options, the --plan steps,
// and the parsing that turns argv into them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout::sink {

extern const char* const kUsage;

// One step of a --plan: the answer to one attempt.
struct PlanStep {
  int status = 200;   // 0: reset
  bool slow = false;  // delay_ms replaces --delay-ms
  std::uint32_t delay_ms = 0;
};
using Plan = std::vector<PlanStep>;

struct Options {
  std::string host;
  std::uint16_t port = 0;
  std::string tls_cert;
  std::string tls_key;
  std::vector<std::pair<int, std::uint64_t>> mix{{200, 1}};
  bool have_mix = false;
  bool have_reset_rate = false;
  std::vector<Plan> plans;  // empty: no --plan
  std::uint64_t delay_ms = 0;
  bool blackhole = false;
  double reset_rate = 0.0;
  std::uint64_t goaway_every = 0;
  std::string record;
  std::uint64_t seed = 1;
  std::uint64_t max_body = 8 * 1024 * 1024;
  bool json = false;
  bool quiet = false;
  bool print = false;
};

// Returns the options, or nullopt with `err` set (empty err: --help).
std::optional<Options> parse_args(int argc, char** argv, std::string& err);

// FNV-1a 64 of the bytes of `s`: picks an event's --plan. tools/README.md gives the same
// function in Python; tests compute it to know which plan an id gets.
constexpr std::uint64_t fnv1a64(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}
static_assert(fnv1a64("") == 0xcbf29ce484222325ULL);
static_assert(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);

}  // namespace fanout::sink
