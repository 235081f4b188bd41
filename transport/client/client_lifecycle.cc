// The client's cold paths: creation, closing, statistics and eviction; an Origin's set-up, DNS
// answer, failures and teardown. The request path (submit, dispatch, connections, completion)
// is in client.cc, so that it stays within one translation unit.
#include <arpa/inet.h>

#include <algorithm>
#include <cassert>
#include <string>
#include <utility>

#include "transport/client/client_internal.h"
#include "transport/tls.h"

namespace fanout::transport {

std::string_view to_string(Failure f) noexcept {
  switch (f) {
    case Failure::kNone:
      return "none";
    case Failure::kDnsFailure:
      return "DNS failure";
    case Failure::kAddressRefused:
      return "address refused by the address guard";
    case Failure::kConnectRefused:
      return "connection refused";
    case Failure::kConnectFailed:
      return "connect failed";
    case Failure::kConnectTimeout:
      return "connect timeout";
    case Failure::kTlsFailure:
      return "TLS failure";
    case Failure::kProtocolError:
      return "protocol error";
    case Failure::kStreamReset:
      return "stream reset by peer";
    case Failure::kResponseTimeout:
      return "response timeout";
    case Failure::kConnectionLost:
      return "connection lost";
    case Failure::kRefusedBeforeProcessing:
      return "refused before processing";
    case Failure::kQueueFull:
      return "origin queue full";
    case Failure::kCancelled:
      return "cancelled";
    case Failure::kSchemeRefused:
      return "http:// refused outside insecure mode";
  }
  return "unknown failure";
}

bool is_retryable(Failure f) noexcept {
  switch (f) {
    case Failure::kDnsFailure:
    case Failure::kConnectRefused:
    case Failure::kConnectFailed:
    case Failure::kConnectTimeout:
    case Failure::kTlsFailure:
    case Failure::kProtocolError:
    case Failure::kStreamReset:
    case Failure::kResponseTimeout:
    case Failure::kConnectionLost:
    case Failure::kRefusedBeforeProcessing:
    case Failure::kQueueFull:
      return true;
    case Failure::kNone:
    case Failure::kAddressRefused:
    case Failure::kCancelled:
    case Failure::kSchemeRefused:
      return false;
  }
  return false;
}

tl::expected<std::unique_ptr<Client>, std::string> Client::create(StreamLoop& streams,
                                                                  LoopTimer& timers,
                                                                  ClientOptions options) {
  TlsClientOptions tls_options;
  tls_options.verify_peer = !options.insecure;
  tls_options.ca_file = options.ca_file;
  tls_options.offer_h2 = options.offer_h2;
  auto tls = TlsContext::client(tls_options);
  if (!tls) return tl::unexpected(tls.error());
  std::unique_ptr<Client> c(new Client(streams, timers, std::move(options)));
  c->tls_ = std::move(*tls);
  ResolverOptions ro;
  ro.timeout_ms = c->options_.dns_timeout_ms;
  ro.tries = c->options_.dns_tries;
  ro.max_queries = c->options_.max_dns_queries;
  ro.servers = c->options_.dns_servers;
  auto resolver = Resolver::create(streams.uv(), timers, ro);
  if (!resolver) return tl::unexpected(resolver.error());
  c->resolver_ = std::move(*resolver);
  return c;
}

Client::Client(StreamLoop& streams, LoopTimer& timers, ClientOptions options)
    : streams_(streams), timers_(timers), options_(std::move(options)), guard_(options_.allow) {}

Client::~Client() {
  assert(live_connections_ == 0 && "close() the client and let the loop run before destroying it");
}

void Client::close(void (*done)(void* data), void* data) {
  closing_ = true;
  done_ = done;
  done_data_ = data;
  // Connections first: requests they hand back unsent land in the pending queues, which are
  // then completed at once (close() never runs inside submit(), so that is allowed here).
  for (auto& [host, set] : origins_) {
    for (auto& o : set) {
      o->close_all();
      o->fail_pending(Failure::kCancelled, "the client is closing", /*now=*/true);
    }
  }
  // Lookups are cancelled (their origins' queues are already empty); done once its sockets'
  // handles are closed, which may be at once: maybe_done() is called below either way.
  in_close_ = true;
  resolver_->close(
      [](void* d) {
        auto* self = static_cast<Client*>(d);
        self->resolver_closed_ = true;
        if (!self->in_close_) self->maybe_done();
      },
      this);
  in_close_ = false;
  maybe_done();
}

void Client::connection_closed(ClientConnection* c) {
  Origin& o = c->origin();
  o.forget(c);
  delete c;
  --live_connections_;
  o.maybe_idle();
  maybe_done();
}

void Client::evict(Origin* o) {
  auto it = origins_.find(std::string_view(o->host()));
  if (it == origins_.end()) {
    assert(false && "evicting an origin the client does not hold");
    return;
  }
  OriginSet& set = it->second;
  for (auto i = set.begin(); i != set.end(); ++i) {
    if (i->get() == o) {
      set.erase(i);  // frees o
      break;
    }
  }
  if (set.empty()) origins_.erase(it);
  ++origins_evicted_;
}

void Client::maybe_done() {
  // Deferred completions are owed too: the owner may close the loop's timers once done runs.
  if (!closing_ || live_connections_ != 0 || deferred_ != 0 || !resolver_closed_ ||
      done_ == nullptr) {
    return;
  }
  auto* done = std::exchange(done_, nullptr);
  origins_.clear();  // drops pending DNS lookups' owners: their callbacks see no origin
  done(done_data_);
}

ClientStats Client::stats() const {
  ClientStats st;
  for (const auto& [host, set] : origins_) {
    for (const auto& o : set) {
      ++st.origins;
      st.pending += o->pending();
      st.connecting += o->count(ClientConnection::State::kConnecting);
      o->for_each_open([&](const ClientConnection& c) {
        if (c.session() == nullptr) return;
        if (c.session()->protocol() == Protocol::kHttp2) {
          ++st.connections_h2;
        } else {
          ++st.connections_h1;
        }
        st.in_flight += c.session()->active();
      });
    }
  }
  st.connections_opened = connections_opened_;
  st.requeued = requeued_;
  st.dns_querying = resolver_->querying();
  st.dns_queued = resolver_->queued();
  st.dns_failures = dns_failures_;
  st.origins_evicted = origins_evicted_;
  return st;
}

Origin::Origin(Client& client, bool tls, std::string host, std::uint16_t port)
    : client_(client), tls_(tls), host_(std::move(host)), port_(port) {
  lookup_.set_callback([](Resolver::Lookup&, const DnsResult& result,
                          void* d) noexcept { static_cast<Origin*>(d)->resolved(result); },
                       this);
  idle_timer_.bind<&Origin::on_idle_timeout>(this);
  const bool v6 = host_.find(':') != std::string::npos;
  authority_ = v6 ? "[" + host_ + "]" : host_;
  if (port_ != (tls_ ? 443 : 80)) authority_ += ":" + std::to_string(port_);
  // IP literals need no lookup: check them once, now.
  sockaddr_storage ss{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&ss);
  if (inet_pton(AF_INET, host_.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port_);
    literal_ = true;
  } else if (inet_pton(AF_INET6, host_.c_str(), &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port_);
    literal_ = true;
  }
  if (literal_) {
    const Verdict v = client_.guard_.check(reinterpret_cast<const sockaddr*>(&ss));
    if (v.allowed) {
      addresses_.push_back(ss);
    } else {
      literal_refusal_ = format_address(reinterpret_cast<const sockaddr*>(&ss)) + " is " +
                         std::string(to_string(v.address_class));
    }
  }
}

Origin::~Origin() {
  client_.resolver_->cancel(lookup_);
  if (client_.timers_.armed(idle_timer_)) client_.timers_.cancel(idle_timer_);
}

bool Origin::idle() const noexcept {
  if (!pending_.empty() || lookup_.active()) return false;
  for (std::size_t n : counts_) {
    if (n != 0) return false;
  }
  return true;
}

void Origin::maybe_idle() {
  const std::uint32_t ms = client_.options_.idle_origin_ms;
  if (ms == 0 || client_.closing_ || client_.timers_.armed(idle_timer_) || !idle()) return;
  client_.timers_.schedule_after(idle_timer_, ms);
}

void Origin::on_idle_timeout() noexcept {
  // Anything since maybe_idle() (a submit, a connection) cancelled the timer or made the
  // origin busy; a busy one re-arms when it next becomes idle.
  if (idle()) client_.evict(this);  // frees this
}

bool Origin::open_connection() {
  if (addresses_.empty() || (!literal_ && client_.timers_.now() >= addresses_expire_ms_)) {
    if (literal_) {
      fail_pending(Failure::kAddressRefused, literal_refusal_);
    } else {
      resolve();
    }
    return false;
  }
  const sockaddr_storage& addr = addresses_[next_address_ % addresses_.size()];
  auto* c = new ClientConnection(client_, *this);
  std::string error;
  if (!c->connect(reinterpret_cast<const sockaddr*>(&addr), &error)) {
    delete c;
    fail_pending(Failure::kConnectFailed, error);
    return false;
  }
  ++client_.live_connections_;
  ++client_.connections_opened_;
  list(ClientConnection::State::kConnecting).push_front(c);
  ++counts_[static_cast<std::size_t>(ClientConnection::State::kConnecting)];
  return true;
}

void Origin::resolve() {
  if (lookup_.active()) return;
  client_.resolver_->resolve(lookup_, host_, port_);  // resolved() follows, from the loop
}

void Origin::resolved(const DnsResult& result) {
  if (result.status != DnsStatus::kOk) {
    ++client_.dns_failures_;
    std::string detail = host_ + ": " + std::string(to_string(result.status));
    if (!result.detail.empty()) detail += " (" + std::string(result.detail) + ")";
    fail_pending(Failure::kDnsFailure, detail);
    return;
  }
  addresses_.clear();
  next_address_ = 0;
  std::string refused;
  for (const sockaddr_storage& ss : result.addresses) {
    const auto* sa = reinterpret_cast<const sockaddr*>(&ss);
    const Verdict v = client_.guard_.check(sa);
    if (!v.allowed) {
      if (!refused.empty()) refused += ", ";
      refused += format_address(sa) + " (" + std::string(to_string(v.address_class)) + ")";
      continue;
    }
    addresses_.push_back(ss);
  }
  if (addresses_.empty()) {
    fail_pending(refused.empty() ? Failure::kDnsFailure : Failure::kAddressRefused,
                 refused.empty() ? host_ + " has no IPv4 or IPv6 address"
                                 : "every address of " + host_ + " is refused: " + refused);
    return;
  }
  // The answer's TTL, capped by dns_ttl_ms, at least 1 s (TTL 0, or /etc/hosts, which has none).
  const std::uint64_t ttl_ms =
      std::clamp<std::uint64_t>(std::uint64_t{result.ttl_s} * 1000, 1000,
                                std::max<std::uint64_t>(client_.options_.dns_ttl_ms, 1000));
  addresses_expire_ms_ = client_.timers_.now() + ttl_ms;
  dispatch();
  maybe_idle();
}

void Origin::connect_failed(ClientConnection* c, Failure f, std::string_view detail) {
  // Try the next address next time; fail the queue only when no other connection may serve it.
  // `c` is already in kClosed, so it is not counted here.
  ++next_address_;
  (void)c;
  const std::size_t others = count(ClientConnection::State::kConnecting) +
                             count(ClientConnection::State::kReady) +
                             count(ClientConnection::State::kBusy);
  if (others == 0) fail_pending(f, detail);
}

void Origin::fail_pending(Failure f, std::string_view detail, bool now) {
  if (now) {
    while (Request* r = pending_.pop_front()) {
      r->failure_ = f;
      r->detail_ = std::string(detail);
      Client::finish(*r);
    }
    return;
  }
  while (Request* r = pending_.pop_front()) {
    r->failure_ = f;
    r->detail_ = std::string(detail);
    // Completed from the loop: fail_pending may run inside submit().
    client_.complete_later(*r, f, std::string(detail));
  }
  maybe_idle();
}

void Origin::forget(ClientConnection* c) {
  IntrusiveList<ClientConnection>::erase(c);
  --counts_[static_cast<std::size_t>(c->state())];
}

void Origin::close_all() {
  closing_ = true;
  if (client_.timers_.armed(idle_timer_)) client_.timers_.cancel(idle_timer_);
  for (auto s : {ClientConnection::State::kConnecting, ClientConnection::State::kReady,
                 ClientConnection::State::kBusy, ClientConnection::State::kDraining}) {
    while (ClientConnection* c = list(s).front())
      c->abort(Failure::kCancelled, "the client is closing");
  }
}

}  // namespace fanout::transport
