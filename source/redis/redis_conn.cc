#include "source/redis/redis_conn.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>

#include <utility>

#include "fanout/redis_source.h"

namespace fanout::source {

namespace {

// hiredis's libuv adapter (hiredis/adapters/libuv.h), but for one thing: a poll error is handed
// to hiredis. libuv reports an error on the socket (a reset from the peer: a Redis killed while
// a command of ours was still unread, or Redis's answer to a write after its FIN) as a status of
// UV_EBADF, with the poll stopped; 0.14's adapter returns on it, so hiredis never learns of the
// loss: no disconnect callback, the connection stays ready, commands queue unsent and pending
// replies never come (both connections reset: the source never reconnects, and its entries
// stay pending). Here an error reads (and writes) as the poll asked, so hiredis sees the error
// (ECONNRESET, or the end of the stream once it was read) and disconnects as for any loss. This
// is hiredis 1.0's adapter (redis/hiredis#624).
struct UvEvents {
  redisAsyncContext* ctx = nullptr;
  uv_poll_t handle{};
  int events = 0;
};

void on_poll(uv_poll_t* handle, int status, int events) {
  auto* p = static_cast<UvEvents*>(handle->data);
  const int ev = status != 0 ? p->events : events;
  // A read that disconnects frees the context, and cleanup() clears p->ctx before the write.
  if (p->ctx != nullptr && (ev & UV_READABLE) != 0) redisAsyncHandleRead(p->ctx);
  if (p->ctx != nullptr && (ev & UV_WRITABLE) != 0) redisAsyncHandleWrite(p->ctx);
}

// hiredis's add/del read/write hooks: the events it wants polled, `flag` on or off.
template <int flag, bool on>
void want(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->events = on ? (p->events | flag) : (p->events & ~flag);
  if (p->events != 0) {
    uv_poll_start(&p->handle, p->events, on_poll);
  } else {
    uv_poll_stop(&p->handle);
  }
}

// hiredis is freeing the context (once per context): the handle goes with the loop's close.
void cleanup(void* data) {
  auto* p = static_cast<UvEvents*>(data);
  p->ctx = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&p->handle),
           [](uv_handle_t* h) { delete static_cast<UvEvents*>(h->data); });
}

bool attach(redisAsyncContext* ctx, uv_loop_s* loop) {
  if (ctx->ev.data != nullptr) return false;
  auto* p = new UvEvents;
  if (uv_poll_init(loop, &p->handle, ctx->c.fd) != 0) {
    delete p;
    return false;
  }
  p->ctx = ctx;
  p->handle.data = p;
  ctx->ev.data = p;
  ctx->ev.addRead = want<UV_READABLE, true>;
  ctx->ev.delRead = want<UV_READABLE, false>;
  ctx->ev.addWrite = want<UV_WRITABLE, true>;
  ctx->ev.delWrite = want<UV_WRITABLE, false>;
  ctx->ev.cleanup = cleanup;
  return true;
}

}  // namespace

RedisConn::RedisConn(uv_loop_s* loop, std::string name, EventFn on_ready, EventFn on_lost,
                     void* data)
    : loop_(loop), name_(std::move(name)), on_ready_(on_ready), on_lost_(on_lost), data_(data) {}

RedisConn::~RedisConn() {
  drop();
}

void RedisConn::connect(const std::string& ip, const RedisEndpoint& ep) {
  drop();
  error_.clear();
  redisAsyncContext* ctx = redisAsyncConnect(ip.c_str(), ep.port);
  if (ctx == nullptr) {
    lost("out of memory");
    return;
  }
  if (ctx->err != 0) {
    std::string why = ctx->errstr;
    redisAsyncFree(ctx);
    lost(std::move(why));
    return;
  }
  if (!attach(ctx, loop_)) {
    redisAsyncFree(ctx);
    lost("cannot attach to the loop");
    return;
  }
  ctx->data = this;
  redisAsyncSetConnectCallback(ctx, on_connect);
  redisAsyncSetDisconnectCallback(ctx, on_disconnect);
  ctx_ = ctx;
  state_ = State::kConnecting;
  // Queued now, written once connected: hiredis keeps the order.
  setup_left_ = 0;
  if (!ep.password.empty()) {
    args_.clear().add("AUTH");
    if (!ep.user.empty()) args_.add(ep.user);
    args_.add(ep.password);
    redisAsyncCommandArgv(ctx, on_setup_reply, this, static_cast<int>(args_.size()), args_.ptrs(),
                          args_.lens());
    ++setup_left_;
  }
  if (ep.db != 0) {
    db_text_ = std::to_string(ep.db);
    args_.clear().add("SELECT").add(db_text_);
    redisAsyncCommandArgv(ctx, on_setup_reply, this, static_cast<int>(args_.size()), args_.ptrs(),
                          args_.lens());
    ++setup_left_;
  }
  if (setup_left_ == 0) {
    args_.clear().add("PING");
    redisAsyncCommandArgv(ctx, on_setup_reply, this, 1, args_.ptrs(), args_.lens());
    ++setup_left_;
  }
}

void RedisConn::drop() noexcept {
  redisAsyncContext* ctx = std::exchange(ctx_, nullptr);
  state_ = State::kIdle;
  if (ctx == nullptr) return;
  ctx->data = nullptr;  // our connect/disconnect/setup callbacks ignore it from here on
  redisAsyncFree(ctx);
}

bool RedisConn::command(RedisArgs& args, ReplyFn fn, void* data) {
  if (state_ != State::kReady) return false;
  return redisAsyncCommandArgv(ctx_, fn, data, static_cast<int>(args.size()), args.ptrs(),
                               args.lens()) == REDIS_OK;
}

void RedisConn::lost(std::string why) noexcept {
  ctx_ = nullptr;  // hiredis frees it after our callback returns
  state_ = State::kIdle;
  error_ = std::move(why);
  on_lost_(*this, data_);
}

void RedisConn::on_connect(const redisAsyncContext* ctx, int status) {
  auto* self = static_cast<RedisConn*>(ctx->data);
  if (self == nullptr || status == REDIS_OK) return;  // ready once AUTH/SELECT/PING answer
  self->lost(ctx->errstr[0] != '\0' ? ctx->errstr : "connect failed");
}

void RedisConn::on_disconnect(const redisAsyncContext* ctx, int status) {
  auto* self = static_cast<RedisConn*>(ctx->data);
  if (self == nullptr) return;
  (void)status;
  self->lost(ctx->errstr[0] != '\0' ? ctx->errstr : "connection closed");
}

void RedisConn::on_setup_reply(redisAsyncContext* ctx, void* reply, void* data) {
  auto* self = static_cast<RedisConn*>(data);
  // A null reply: the connection went (on_disconnect or on_connect reports it), or drop().
  if (reply == nullptr || ctx->data == nullptr || self->ctx_ != ctx) return;
  const auto* r = static_cast<const redisReply*>(reply);
  if (r->type == REDIS_REPLY_ERROR) {
    std::string why(r->str, r->len);
    // Closing from inside the callback: hiredis frees after it returns, and calls
    // on_disconnect, which must not report a second loss.
    ctx->data = nullptr;
    redisAsyncDisconnect(ctx);
    self->lost(std::move(why));
    return;
  }
  if (--self->setup_left_ == 0) {
    self->state_ = State::kReady;
    self->on_ready_(*self, self->data_);
  }
}

}  // namespace fanout::source
