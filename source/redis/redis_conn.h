// One hiredis async connection on a libuv loop, with the bits fanout needs around it: connect
// to an address already resolved (hiredis's own connect would call getaddrinfo, a blocking
// call, on the loop), AUTH and SELECT before it counts as ready, a readiness and a loss
// callback, and an argument vector that is reused between commands (no allocation per command
// once warm). hiredis's events go through a uv_poll_t of our own, not hiredis 0.14's libuv
// adapter: a poll error (libuv's report of a connection reset) reaches hiredis as a read, so a
// reset connection is lost like a closed one (redis_conn.cc).
//
// States: kIdle -> connect() -> kConnecting -> (AUTH, SELECT answered) -> kReady
//         kConnecting | kReady -> (error, disconnect, drop()) -> kIdle
// on_lost is called once per connect() that does not end in drop(): a refused connect, an AUTH
// or SELECT error, or the connection closing. It is called from inside a hiredis callback, so
// it must not call drop() on this connection (schedule that work instead).
//
// Pending commands' callbacks run with a null reply when the connection goes (hiredis's rule):
// every reply callback must accept null.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

struct redisAsyncContext;
struct uv_loop_s;

namespace fanout::source {

struct RedisEndpoint;

// Argument vector for redisAsyncCommandArgv: views stay valid until the command is sent.
class RedisArgs {
 public:
  RedisArgs& clear() noexcept {
    ptr_.clear();
    len_.clear();
    return *this;
  }
  RedisArgs& add(std::string_view a) {
    ptr_.push_back(a.data());
    len_.push_back(a.size());
    return *this;
  }
  [[nodiscard]] std::size_t size() const noexcept { return ptr_.size(); }
  [[nodiscard]] const char** ptrs() noexcept { return ptr_.data(); }
  [[nodiscard]] const std::size_t* lens() const noexcept { return len_.data(); }

 private:
  std::vector<const char*> ptr_;
  std::vector<std::size_t> len_;
};

class RedisConn {
 public:
  enum class State : std::uint8_t { kIdle, kConnecting, kReady };
  // `reply` is a redisReply* (null when the connection went before the answer).
  using ReplyFn = void (*)(redisAsyncContext* ctx, void* reply, void* data);
  using EventFn = void (*)(RedisConn& conn, void* data) noexcept;

  RedisConn(uv_loop_s* loop, std::string name, EventFn on_ready, EventFn on_lost, void* data);
  ~RedisConn();  // drop()s
  RedisConn(const RedisConn&) = delete;
  RedisConn& operator=(const RedisConn&) = delete;

  // Connects to `ip`:`port` (numeric), then AUTH and SELECT as `ep` says.
  void connect(const std::string& ip, const RedisEndpoint& ep);
  // Closes the connection now, whatever its state; pending callbacks get a null reply; on_lost
  // is not called. Must not be called from this connection's own callbacks (hiredis defers the
  // free there, which is fine, but fanout never needs it).
  void drop() noexcept;
  // Sends a command; false when not ready (nothing sent, `fn` not called).
  bool command(RedisArgs& args, ReplyFn fn, void* data);

  [[nodiscard]] State state() const noexcept { return state_; }
  [[nodiscard]] bool ready() const noexcept { return state_ == State::kReady; }
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  // Why the last connection failed or closed ("" when none).
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  static void on_connect(const redisAsyncContext* ctx, int status);
  static void on_disconnect(const redisAsyncContext* ctx, int status);
  static void on_setup_reply(redisAsyncContext* ctx, void* reply, void* data);
  void lost(std::string why) noexcept;

  uv_loop_s* loop_;
  std::string name_;
  EventFn on_ready_;
  EventFn on_lost_;
  void* data_;
  redisAsyncContext* ctx_ = nullptr;
  State state_ = State::kIdle;
  int setup_left_ = 0;  // AUTH/SELECT answers still awaited
  std::string error_;
  std::string db_text_;
  RedisArgs args_;
};

}  // namespace fanout::source
