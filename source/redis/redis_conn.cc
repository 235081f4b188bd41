#include "source/redis/redis_conn.h"

#include <hiredis/adapters/libuv.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <utility>

#include "fanout/redis_source.h"

namespace fanout::source {

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
  if (redisLibuvAttach(ctx, loop_) != REDIS_OK) {
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
