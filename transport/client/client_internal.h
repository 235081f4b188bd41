// Internals of transport/client/client.h: origins, connections and protocol sessions. Not for use
// outside transport/.
//
// ClientConnection states (one list per state in its Origin; one transition function, set_state):
//
//   kConnecting ──open+session──► kReady ◄──► kBusy        (ready: a stream is free)
//        │                          │           │
//        │                          └──► kDraining ◄──┘    (GOAWAY, stream ids exhausted,
//        │                                   │               idle close, client closing)
//        └────────── error / timeout ──► kClosed ◄──┘       (handle closing; freed on close cb)
//
// Invariants:
//   - a Request is in exactly one place: its origin's pending FIFO, one session's in-flight
//     list, or completing (its timer armed at now to call on_response from the loop);
//   - a connection in kReady has active() < capacity(); kBusy has active() >= capacity();
//   - a connection is freed only in its stream's close callback (Client::connection_closed).
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"

namespace fanout::transport {

// A FIFO of Requests (the origin's pending queue, a session's in-flight list): an
// IntrusiveList that counts its elements.
class RequestList {
 public:
  [[nodiscard]] bool empty() const noexcept { return list_.empty(); }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] Request* front() const noexcept { return list_.front(); }
  void push_back(Request* r) noexcept {
    list_.push_back(r);
    ++size_;
  }
  void push_front(Request* r) noexcept {
    list_.push_front(r);
    ++size_;
  }
  void remove(Request* r) noexcept {
    IntrusiveList<Request>::erase(r);
    --size_;
  }
  Request* pop_front() noexcept {
    Request* r = list_.pop_front();
    if (r != nullptr) --size_;
    return r;
  }

 private:
  IntrusiveList<Request> list_;
  std::size_t size_ = 0;
};

// A protocol session on an open connection: HTTP/2 (nghttp2) or HTTP/1.1 (llhttp).
class ClientSession {
 public:
  virtual ~ClientSession() = default;
  virtual Protocol protocol() const noexcept = 0;
  // Sends what the session must send first (HTTP/2 preface and SETTINGS).
  virtual void start() = 0;
  // Sends `r` now; the session owns it until it completes or is handed back.
  virtual void submit(Request& r) = 0;
  virtual void on_data(const std::uint8_t* data, std::size_t len) = 0;
  // The connection died: every in-flight request completes (or is re-queued when unsent).
  virtual void on_connection_lost(Failure f, std::string_view detail) = 0;
  virtual void cancel(Request& r, Failure f) = 0;
  virtual void on_drained() {}
  [[nodiscard]] virtual std::size_t capacity() const noexcept = 0;
  [[nodiscard]] virtual std::size_t active() const noexcept = 0;
  // No new request may be submitted (GOAWAY received, stream ids exhausted, Connection: close).
  [[nodiscard]] virtual bool accepting() const noexcept = 0;
};

class ClientConnection final : public StreamHandler, public ListNode<ClientConnection> {
 public:
  enum class State : std::uint8_t { kConnecting, kReady, kBusy, kDraining, kClosed };

  ClientConnection(Client& client, Origin& origin);
  ~ClientConnection();

  // Starts connecting; false (and the connection is unusable) on a synchronous failure.
  bool connect(const sockaddr* addr, std::string* error);
  void submit(Request& r);
  void cancel(Request& r, Failure f);
  // The session completed or handed back a request: update state, maybe dispatch more.
  void request_done();
  // Starts an orderly close: no new requests; closes when the last active one completes.
  void drain();
  // Closes now; in-flight requests complete with `f` (unsent ones are re-queued).
  void abort(Failure f, std::string_view detail);

  [[nodiscard]] State state() const noexcept { return state_; }
  [[nodiscard]] ClientSession* session() const noexcept { return session_.get(); }
  [[nodiscard]] Stream* stream() const noexcept { return stream_; }
  [[nodiscard]] Client& client() const noexcept { return client_; }
  [[nodiscard]] Origin& origin() const noexcept { return origin_; }
  [[nodiscard]] bool has_capacity() const noexcept;

  // StreamHandler
  void on_stream_open(Stream& stream) override;
  void on_stream_data(Stream& stream, const std::uint8_t* data, std::size_t len) override;
  void on_stream_drained(Stream& stream) override;
  void on_stream_error(Stream& stream, StreamError error, std::string_view detail) override;
  void on_stream_closed(Stream& stream) override;

  bool fresh_ = true;  // no request has been sent on it yet

 private:
  friend class Origin;
  void set_state(State s);
  void abort_connecting(Failure f, std::string_view detail);
  void on_connect_timeout() noexcept;
  void on_idle_timeout() noexcept;
  void update_idle_timer();

  Client& client_;
  Origin& origin_;
  Stream* stream_ = nullptr;
  std::unique_ptr<ClientSession> session_;
  State state_ = State::kConnecting;
  TimerEntry connect_timer_;
  TimerEntry idle_timer_;
};

class Origin {
 public:
  Origin(Client& client, bool tls, std::string host, std::uint16_t port);
  ~Origin();

  void submit(Request& r);
  void cancel(Request& r, Failure f);
  // Sends pending requests on connections with free streams; opens connections as needed.
  void dispatch();
  // A request handed back unprocessed (GOAWAY, REFUSED_STREAM, unsent on a lost connection).
  void requeue(Request& r);
  // A connection failed before it was usable.
  void connect_failed(ClientConnection* c, Failure f, std::string_view detail);
  void move(ClientConnection* c, ClientConnection::State from, ClientConnection::State to);
  void forget(ClientConnection* c);
  // Completes every queued request with `f`: from the loop (safe inside submit()), or at once
  // when `now` (only where no caller can be inside submit(), i.e. Client::close()).
  void fail_pending(Failure f, std::string_view detail, bool now = false);
  void close_all();
  // No connection in any state, nothing queued, no lookup: the origin may be freed.
  [[nodiscard]] bool idle() const noexcept;
  // Arms the idle timer when idle() (Client::evict frees the origin when it fires).
  void maybe_idle();

  [[nodiscard]] bool tls() const noexcept { return tls_; }
  [[nodiscard]] const std::string& host() const noexcept { return host_; }
  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  // "host" or "host:port" (brackets around IPv6) for :authority and Host.
  [[nodiscard]] const std::string& authority() const noexcept { return authority_; }
  [[nodiscard]] std::size_t pending() const noexcept { return pending_.size(); }
  [[nodiscard]] std::size_t count(ClientConnection::State s) const noexcept {
    return counts_[static_cast<std::size_t>(s)];
  }
  // Calls fn(const ClientConnection&) for every connection with a session (ready, busy, draining).
  template <class Fn>
  void for_each_open(Fn&& fn) const {
    for (auto s : {ClientConnection::State::kReady, ClientConnection::State::kBusy,
                   ClientConnection::State::kDraining}) {
      for (const ClientConnection& c : lists_[static_cast<std::size_t>(s)]) fn(c);
    }
  }

 private:
  void resolve();
  void resolved(const DnsResult& result);
  void on_idle_timeout() noexcept;
  bool open_connection();
  IntrusiveList<ClientConnection>& list(ClientConnection::State s) {
    return lists_[static_cast<std::size_t>(s)];
  }

  Client& client_;
  bool tls_;
  std::string host_;
  std::uint16_t port_;
  std::string authority_;
  RequestList pending_;
  std::array<IntrusiveList<ClientConnection>, 5> lists_;  // one per state
  std::array<std::size_t, 5> counts_{};
  // DNS: the checked addresses, when they expire, and a lookup in flight.
  std::vector<sockaddr_storage> addresses_;
  std::size_t next_address_ = 0;
  std::uint64_t addresses_expire_ms_ = 0;
  Resolver::Lookup lookup_;
  bool literal_ = false;         // the host is an IP literal: no lookup
  std::string literal_refusal_;  // why the guard refused the literal
  bool closing_ = false;
  TimerEntry idle_timer_;  // armed while idle(), when idle_origin_ms is set
};

std::unique_ptr<ClientSession> make_h2_session(ClientConnection& c);
std::unique_ptr<ClientSession> make_h1_session(ClientConnection& c);

}  // namespace fanout::transport
