// fanout-load's events: K organisations x T event types, payloads of a chosen size.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace fanout::load {

// A JSON object of exactly `bytes` bytes (>= 2): the business payload when it fits, padded with
// a string field "pad" (or spaces when fewer than 9 bytes are missing); else {"pad":"xxx..."}.
std::string make_payload(std::size_t bytes);

// The event types used, in this order: Partoo's catalogue from business_updated on.
std::vector<std::string> event_types(std::uint32_t count);

// Event i is for subscription s = i mod (K x T): organisation s mod K + 1, type s div K. Its
// envelope is {"org_id":N,"type":"T","payload":P}, without an id (the engine makes one), or
// with `event_id` first when given: {"id":"ID","org_id":N,...}, the same id for every event.
class EventSource {
 public:
  EventSource(std::uint32_t orgs, std::vector<std::string> types, std::size_t payload_bytes,
              const std::string& event_id = {})
      : orgs_(orgs),
        types_(std::move(types)),
        payload_(make_payload(payload_bytes)),
        prefix_(event_id.empty() ? std::string(R"({"org_id":)")
                                 : R"({"id":")" + event_id + R"(","org_id":)") {
    for (const std::string& t : types_) {
      suffixes_.push_back(R"(,"type":")" + t + R"(","payload":)" + payload_ + "}");
    }
  }
  [[nodiscard]] std::uint32_t orgs() const { return orgs_; }
  [[nodiscard]] const std::vector<std::string>& types() const { return types_; }
  [[nodiscard]] const std::string& payload() const { return payload_; }

  // Appends event i's envelope to `out`.
  void append(std::uint64_t i, std::string* out) const {
    const std::uint64_t s = i % (std::uint64_t{orgs_} * types_.size());
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, s % orgs_ + 1).ptr;
    out->append(prefix_);
    out->append(digits, end);
    out->append(suffixes_[static_cast<std::size_t>(s / orgs_)]);
  }
  // The largest envelope (for the engine's max_event_bytes).
  [[nodiscard]] std::size_t max_event_bytes() const {
    std::size_t n = 0;
    for (const std::string& s : suffixes_) n = std::max(n, s.size());
    return n + prefix_.size() + 24;
  }

 private:
  std::uint32_t orgs_;
  std::vector<std::string> types_;
  std::string payload_;
  std::string prefix_;
  std::vector<std::string> suffixes_;
};

}  // namespace fanout::load
