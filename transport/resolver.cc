#include "transport/resolver.h"

#include <ares.h>
#include <netinet/in.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <mutex>
#include <utility>

#include "transport/loop_timer.h"

namespace fanout::transport {

// One c-ares query in flight, or answered and waiting to be handed over. Owned by the Resolver
// (its `queries_` list); `lookup` is null once the lookup was cancelled.
struct Query : ListNode<Query> {
  Resolver* resolver = nullptr;
  Resolver::Lookup* lookup = nullptr;
  std::uint16_t port = 0;
  bool answered = false;
  DnsStatus status = DnsStatus::kOk;
  std::string detail;
  std::vector<sockaddr_storage> addresses;
  std::uint32_t ttl_s = 0;
  TimerEntry deferred;  // a synchronous answer, handed over from the loop
};

struct Resolver::Poll {
  uv_poll_t handle{};
  Resolver* resolver = nullptr;
  int fd = -1;
};

std::string_view to_string(DnsStatus s) noexcept {
  switch (s) {
    case DnsStatus::kOk:
      return "ok";
    case DnsStatus::kTimeout:
      return "DNS timeout";
    case DnsStatus::kNotFound:
      return "no such host";
    case DnsStatus::kServerFailure:
      return "DNS server failure";
    case DnsStatus::kError:
      return "DNS error";
  }
  return "DNS error";
}

namespace {

DnsStatus status_of(int ares_status) noexcept {
  switch (ares_status) {
    case ARES_SUCCESS:
      return DnsStatus::kOk;
    case ARES_ETIMEOUT:
      return DnsStatus::kTimeout;
    case ARES_ENOTFOUND:
    case ARES_ENODATA:
      return DnsStatus::kNotFound;
    case ARES_ESERVFAIL:
    case ARES_EREFUSED:
    case ARES_ECONNREFUSED:
      return DnsStatus::kServerFailure;
    default:
      return DnsStatus::kError;
  }
}

}  // namespace

tl::expected<std::unique_ptr<Resolver>, std::string> Resolver::create(
    uv_loop_t* loop, LoopTimer& timers, const ResolverOptions& options) {
  // A no-op on Linux since 1.10 but still the documented first call; not thread-safe itself.
  static std::once_flag once;
  static int init_status = ARES_SUCCESS;
  std::call_once(once, [] { init_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (init_status != ARES_SUCCESS) {
    return tl::unexpected(std::string("c-ares: ") + ares_strerror(init_status));
  }
  std::unique_ptr<Resolver> r(new Resolver(loop, timers, options));
  ares_options o{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_DOMAINS;
  o.sock_state_cb = on_sock_state;
  o.sock_state_cb_data = r.get();
  o.timeout = static_cast<int>(std::max<std::uint32_t>(options.timeout_ms, 1));
  o.tries = static_cast<int>(std::max<std::uint32_t>(options.tries, 1));
  o.domains = nullptr;  // no search list: names are absolute
  o.ndomains = 0;
  ares_channel channel = nullptr;
  int rc = ares_init_options(&channel, &o, mask);
  if (rc != ARES_SUCCESS) return tl::unexpected(std::string("c-ares: ") + ares_strerror(rc));
  r->channel_ = channel;
  if (!options.servers.empty()) {
    rc = ares_set_servers_ports_csv(channel, options.servers.c_str());
    if (rc != ARES_SUCCESS) {
      return tl::unexpected("DNS servers \"" + options.servers + "\": " + ares_strerror(rc));
    }
  }
  return r;
}

Resolver::Resolver(uv_loop_t* loop, LoopTimer& timers, const ResolverOptions& options)
    : loop_(loop), timers_(timers), max_queries_(std::max<std::uint32_t>(options.max_queries, 1)) {
  timeout_.bind<&Resolver::on_timeout>(this);
}

Resolver::~Resolver() {
  if (channel_ != nullptr) {
    // Never closed: only allowed while no socket was ever opened (asserted below).
    closing_ = true;
    close(nullptr, nullptr);
  }
  assert(live_polls_ == 0 && "close() the resolver and let the loop run before destroying it");
}

void Resolver::resolve(Lookup& lookup, std::string_view host, std::uint16_t port) {
  assert(!lookup.active() && "resolve() on a lookup already active");
  lookup.host_.assign(host);
  lookup.port_ = port;
  lookup.queued_ = true;
  queue_.push_back(&lookup);
  ++queue_size_;
  pump();
}

void Resolver::cancel(Lookup& lookup) noexcept {
  if (lookup.queued_) {
    IntrusiveList<Lookup>::erase(&lookup);
    lookup.queued_ = false;
    --queue_size_;
  }
  if (lookup.query_ != nullptr) {
    lookup.query_->lookup = nullptr;  // the query runs on; its answer goes nowhere
    lookup.query_ = nullptr;
  }
}

void Resolver::pump() {
  if (closing_) return;
  while (querying_ < max_queries_ && !queue_.empty()) {
    Lookup* l = queue_.front();
    cancel(*l);  // off the queue
    start(*l);
  }
  rearm();
}

void Resolver::start(Lookup& lookup) {
  auto* q = new Query;
  q->resolver = this;
  q->lookup = &lookup;
  q->port = lookup.port_;
  queries_.push_front(q);
  lookup.query_ = q;
  ++querying_;
  ares_addrinfo_hints hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  starting_ = true;
  ares_getaddrinfo(channel_, lookup.host_.c_str(), nullptr, &hints, on_answer, q);
  starting_ = false;
  if (q->answered) {
    // Answered inside ares_getaddrinfo (/etc/hosts, a malformed name): never call back inside
    // resolve().
    q->deferred.set_callback(on_deferred, q);
    timers_.schedule(q->deferred, timers_.now());
  }
}

void Resolver::on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) noexcept {
  auto* q = static_cast<Query*>(arg);
  Resolver* self = q->resolver;
  --self->querying_;
  q->answered = true;
  q->status = status_of(status);
  if (status == ARES_SUCCESS && res != nullptr) {
    bool first = true;
    for (const ares_addrinfo_node* n = res->nodes; n != nullptr; n = n->ai_next) {
      if (n->ai_family != AF_INET && n->ai_family != AF_INET6) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, n->ai_addr, std::min<std::size_t>(n->ai_addrlen, sizeof ss));
      if (n->ai_family == AF_INET) {
        reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(q->port);
      } else {
        reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(q->port);
      }
      q->addresses.push_back(ss);
      const auto ttl = static_cast<std::uint32_t>(std::max(n->ai_ttl, 0));
      q->ttl_s = first ? ttl : std::min(q->ttl_s, ttl);
      first = false;
    }
    if (q->addresses.empty()) {
      q->status = DnsStatus::kNotFound;
      q->detail = "no A or AAAA record";
    }
  } else if (status != ARES_SUCCESS) {
    q->detail = ares_strerror(status);
  }
  if (res != nullptr) ares_freeaddrinfo(res);
  if (status == ARES_EDESTRUCTION || self->closing_) {
    // The channel is going away (close()): every lookup was already detached.
    q->lookup = nullptr;
    self->deliver(*q);
    return;
  }
  if (self->starting_) return;  // start() hands it over from the loop
  self->deliver(*q);
}

void Resolver::on_deferred(TimerEntry& /*entry*/, void* data) noexcept {
  auto* q = static_cast<Query*>(data);
  Resolver* self = q->resolver;
  self->deliver(*q);
  self->pump();
}

void Resolver::deliver(Query& q) noexcept {
  IntrusiveList<Query>::erase(&q);
  if (timers_.armed(q.deferred)) timers_.cancel(q.deferred);
  if (Lookup* l = q.lookup; l != nullptr) {
    l->query_ = nullptr;
    DnsResult result;
    result.status = q.status;
    result.detail = q.detail;
    result.addresses = q.addresses;
    result.ttl_s = q.ttl_s;
    l->callback_(*l, result, l->data_);  // may free the lookup's owner, or resolve() again
  }
  delete &q;
}

void Resolver::rearm() noexcept {
  if (closing_) return;
  timeval tv{};
  const timeval* next = querying_ == 0 ? nullptr : ares_timeout(channel_, nullptr, &tv);
  if (next == nullptr) {
    timers_.cancel(timeout_);
    return;
  }
  const auto ms = static_cast<std::uint64_t>(next->tv_sec) * 1000 +
                  (static_cast<std::uint64_t>(next->tv_usec) + 999) / 1000;
  timers_.schedule_after(timeout_, std::max<std::uint64_t>(ms, 1));
}

void Resolver::on_timeout() noexcept {
  ares_process_fd(channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  pump();
}

void Resolver::on_sock_state(void* data, int fd, int readable, int writable) noexcept {
  auto* self = static_cast<Resolver*>(data);
  auto it = self->polls_.find(fd);
  if (readable == 0 && writable == 0) {
    if (it == self->polls_.end()) return;
    Poll* p = it->second;
    self->polls_.erase(it);
    self->close_poll(p);
    return;
  }
  Poll* p = nullptr;
  if (it != self->polls_.end()) {
    p = it->second;
  } else {
    p = new Poll;
    p->resolver = self;
    p->fd = fd;
    if (uv_poll_init_socket(self->loop_, &p->handle, fd) != 0) {
      delete p;  // the query ends by its timeout instead
      return;
    }
    p->handle.data = p;
    // The timeout entry keeps the loop alive while a query is out; an idle socket must not.
    uv_unref(reinterpret_cast<uv_handle_t*>(&p->handle));
    ++self->live_polls_;
    self->polls_.emplace(fd, p);
  }
  const int events = (readable != 0 ? UV_READABLE : 0) | (writable != 0 ? UV_WRITABLE : 0);
  uv_poll_start(&p->handle, events, on_poll);
}

void Resolver::on_poll(uv_poll_t* handle, int status, int events) noexcept {
  auto* p = static_cast<Poll*>(handle->data);
  Resolver* self = p->resolver;
  const int fd = p->fd;
  if (status < 0) {
    ares_process_fd(self->channel_, fd, fd);  // let c-ares see the error on its socket
  } else {
    ares_process_fd(self->channel_, (events & UV_READABLE) != 0 ? fd : ARES_SOCKET_BAD,
                    (events & UV_WRITABLE) != 0 ? fd : ARES_SOCKET_BAD);
  }
  self->pump();
}

void Resolver::close_poll(Poll* p) noexcept {
  uv_poll_stop(&p->handle);
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle), on_poll_closed);
}

void Resolver::on_poll_closed(uv_handle_t* handle) noexcept {
  auto* p = static_cast<Poll*>(handle->data);
  Resolver* self = p->resolver;
  delete p;
  --self->live_polls_;
  self->maybe_closed();
}

void Resolver::close(void (*done)(void* data), void* data) {
  closing_ = true;
  done_ = done;
  done_data_ = data;
  while (Lookup* l = queue_.front()) cancel(*l);
  for (Query& q : queries_) {
    if (q.lookup != nullptr) cancel(*q.lookup);
  }
  // Answers waiting to be handed over go nowhere now.
  for (Query* q = queries_.front(); q != nullptr;) {
    Query* next = queries_.next(q);
    if (q->answered) deliver(*q);
    q = next;
  }
  if (channel_ != nullptr) {
    ares_destroy(channel_);  // every query still out ends with ARES_EDESTRUCTION, sockets close
    channel_ = nullptr;
  }
  assert(queries_.empty());
  for (auto& [fd, p] : polls_) close_poll(p);
  polls_.clear();
  if (timers_.armed(timeout_)) timers_.cancel(timeout_);
  maybe_closed();
}

void Resolver::maybe_closed() noexcept {
  if (!closing_ || live_polls_ != 0 || done_ == nullptr || channel_ != nullptr) return;
  auto* done = std::exchange(done_, nullptr);
  done(done_data_);
}

}  // namespace fanout::transport
