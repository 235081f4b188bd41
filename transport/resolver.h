// Resolver: asynchronous DNS for one loop, c-ares driven by libuv. Replaces uv_getaddrinfo, whose
// lookups run on libuv's process-wide pool of 4 threads with no timeout of ours: four names
// whose name server drops queries held every thread, and so every new connection of every
// tenant, for as long as the system resolver kept trying.
//
//   resolve(lookup) ─► queued FIFO (past max_queries) ─► ares_getaddrinfo ─► callback (from the
//   loop)
//                                                         │ sockets: one uv_poll_t each
//                                                         │ (ares_sock_state_cb opens, stops)
//                                                         └ timeouts: one TimerEntry in the
//                                                           loop's LoopTimer (ares_timeout)
//
// - Queries are UDP packets on c-ares's own sockets, so a lookup that never gets an answer costs
//   a socket slot and nothing else: other lookups go out and come back meanwhile. At most
//   `max_queries` lookups are outstanding; later ones wait in FIFO order (the bound is there
//   for memory and sockets, not for progress: a flood of black-holed names can delay others by
//   at most one timeout).
// - Each try waits `timeout_ms` per server; c-ares doubles the wait after every round of the
//   servers, for `tries` rounds (defaults 2 s and 2: at most 6 s with one server). Then the
//   lookup fails with kTimeout.
// - Servers, ndots, options and /etc/hosts come from the system (resolv.conf, nsswitch.conf)
//   unless `servers` names its own. Search domains are never applied: webhook hosts are
//   absolute names, and a search list could turn a public-looking name into an internal one.
// - Both A and AAAA are asked (AF_UNSPEC); the answer is sorted as getaddrinfo would (RFC 6724).
//
// Completion: a lookup's callback runs exactly once per resolve() unless cancel()led, on the loop
// thread, never inside resolve() or cancel() (an answer c-ares gives synchronously, from
// /etc/hosts, is handed over through a timer entry due now). The callback may resolve() the
// same lookup again, cancel others, or free the lookup's owner.
//
// Lifetime: the Resolver embeds no handle itself but owns one uv_poll_t per open socket and one
// TimerEntry; close() cancels every lookup (no callback runs), closes the channel and its
// handles, and calls `done` once the last handle is closed. Free it only after that (or when
// it never had a socket). Threading: the loop's thread only.
#pragma once

#include <sys/socket.h>
#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <tl/expected.hpp>

#include "transport/intrusive_list.h"
#include "transport/timer_wheel.h"

// c-ares types (ares.h stays out of this header).
struct ares_addrinfo;
struct ares_channeldata;

namespace fanout::transport {

class LoopTimer;

struct ResolverOptions {
  std::uint32_t timeout_ms = 2'000;  // first try, per server; doubled every round of servers
  std::uint32_t tries = 2;           // rounds of the servers
  std::uint32_t max_queries = 256;   // lookups outstanding at once; the rest wait (FIFO)
  // Empty: the system's name servers (resolv.conf). Else "ip[:port],...", IPv6 in brackets
  // when a port is given ("[::1]:53"); tests point this at a server of their own.
  std::string servers;
};

enum class DnsStatus : std::uint8_t {
  kOk,
  kTimeout,        // no answer within the tries
  kNotFound,       // NXDOMAIN, or the name has no A or AAAA record
  kServerFailure,  // SERVFAIL, REFUSED, or no server could be reached
  kError,          // a malformed name, out of memory, anything else c-ares reports
};
[[nodiscard]] std::string_view to_string(DnsStatus s) noexcept;

struct DnsResult {
  DnsStatus status = DnsStatus::kOk;
  std::string_view detail;  // c-ares's reason for failures, empty on success
  // kOk: every IPv4 and IPv6 address, in the order to try them, with `port` set. Not yet checked
  // by any address guard: that is the caller's job.
  std::span<const sockaddr_storage> addresses;
  // The smallest TTL among the answers, in seconds; 0 when unknown (/etc/hosts) or 0.
  std::uint32_t ttl_s = 0;
};

class Resolver {
 public:
  // A lookup, embedded in its owner (an Origin): no allocation of ours per resolve() beyond
  // what c-ares does. Must not be destroyed while active(): cancel() it first.
  // Its ListNode links it into the resolver's queue while queued.
  class Lookup : private ListNode<Lookup> {
   public:
    // Views in `result` are valid during the call only.
    using Callback = void (*)(Lookup& lookup, const DnsResult& result, void* data) noexcept;
    Lookup() noexcept = default;
    Lookup(const Lookup&) = delete;
    Lookup& operator=(const Lookup&) = delete;
    void set_callback(Callback callback, void* data) noexcept {
      callback_ = callback;
      data_ = data;
    }
    // Queued or asking: the callback is owed.
    [[nodiscard]] bool active() const noexcept { return queued_ || query_ != nullptr; }

   private:
    friend class Resolver;
    friend class IntrusiveList<Lookup>;
    Callback callback_ = nullptr;
    void* data_ = nullptr;
    std::string host_;
    std::uint16_t port_ = 0;
    bool queued_ = false;
    struct Query* query_ = nullptr;  // asking: the c-ares query's record
  };

  // Reads the system configuration (or `options.servers`). Fails when c-ares cannot start or
  // the server list does not parse.
  [[nodiscard]] static tl::expected<std::unique_ptr<Resolver>, std::string> create(
      uv_loop_t* loop, LoopTimer& timers, const ResolverOptions& options);
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Looks up `host` (a DNS name, not an IP literal) for `port`. `lookup` must not be active.
  void resolve(Lookup& lookup, std::string_view host, std::uint16_t port);
  // The lookup's callback will not run. O(1); a no-op when not active. The query already sent
  // runs to its end inside c-ares (it still counts against max_queries until then).
  void cancel(Lookup& lookup) noexcept;
  // See the class comment. Call once; `done` may run before close() returns.
  void close(void (*done)(void* data), void* data);

  [[nodiscard]] std::size_t querying() const noexcept { return querying_; }
  [[nodiscard]] std::size_t queued() const noexcept { return queue_size_; }

 private:
  struct Poll;
  Resolver(uv_loop_t* loop, LoopTimer& timers, const ResolverOptions& options);
  static void on_sock_state(void* data, int fd, int readable, int writable) noexcept;
  static void on_poll(uv_poll_t* handle, int status, int events) noexcept;
  static void on_poll_closed(uv_handle_t* handle) noexcept;
  static void on_answer(void* arg, int status, int timeouts, ::ares_addrinfo* res) noexcept;
  static void on_deferred(TimerEntry& entry, void* data) noexcept;
  void start(Lookup& lookup);
  // Starts queued lookups while there is room; re-arms the timeout entry.
  void pump();
  void rearm() noexcept;
  void on_timeout() noexcept;
  void deliver(Query& q) noexcept;
  void close_poll(Poll* p) noexcept;
  void maybe_closed() noexcept;

  uv_loop_t* loop_;
  LoopTimer& timers_;
  std::uint32_t max_queries_;
  ::ares_channeldata* channel_ = nullptr;
  std::unordered_map<int, Poll*> polls_;  // by socket
  std::size_t live_polls_ = 0;            // including those closing
  TimerEntry timeout_;
  IntrusiveList<Lookup> queue_;
  std::size_t queue_size_ = 0;
  std::size_t querying_ = 0;      // c-ares queries not yet answered (cancelled ones included)
  IntrusiveList<Query> queries_;  // every Query record alive (answered-but-deferred ones too)
  bool starting_ = false;         // inside ares_getaddrinfo: an answer now is synchronous
  bool closing_ = false;
  void (*done_)(void*) = nullptr;
  void* done_data_ = nullptr;
};

}  // namespace fanout::transport
