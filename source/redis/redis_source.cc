// RedisSource's life cycle: options, URL, resolve, connect, set up, reconnect with backoff,
// group metrics, close. The entry flow is in redis_flow.cc; the phases in redis_impl.h.
#include <hiredis/hiredis.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <utility>

#include "source/redis/redis_impl.h"

namespace fanout::source {

bool is_error(const redisReply* r) noexcept {
  return r != nullptr && r->type == REDIS_REPLY_ERROR;
}

std::string_view str(const redisReply* r) noexcept {
  if (r == nullptr || r->str == nullptr) return {};
  return {r->str, r->len};
}

tl::expected<RedisEndpoint, std::string> parse_redis_url(std::string_view url) {
  const auto bad = [&](std::string_view why) {
    return tl::unexpected("redis url \"" + std::string(url) + "\": " + std::string(why) +
                          " (expected redis://[[USER]:PASSWORD@]HOST[:PORT][/DB])");
  };
  constexpr std::string_view kScheme = "redis://";
  if (!url.starts_with(kScheme)) return bad("must start with redis://");
  std::string_view rest = url.substr(kScheme.size());
  RedisEndpoint ep;
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view cred = rest.substr(0, at);
    const std::size_t colon = cred.find(':');
    if (colon == std::string_view::npos)
      return bad("credentials must be USER:PASSWORD or :PASSWORD");
    ep.user = std::string(cred.substr(0, colon));
    ep.password = std::string(cred.substr(colon + 1));
    rest = rest.substr(at + 1);
  }
  std::string_view hostport = rest;
  if (const std::size_t slash = rest.find('/'); slash != std::string_view::npos) {
    hostport = rest.substr(0, slash);
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      const auto r = std::from_chars(db.data(), db.data() + db.size(), ep.db);
      if (r.ec != std::errc() || r.ptr != db.data() + db.size() || ep.db < 0) {
        return bad("the database must be a number");
      }
    }
  }
  std::string_view host = hostport, port;
  if (hostport.starts_with('[')) {
    const std::size_t close = hostport.find(']');
    if (close == std::string_view::npos) return bad("unclosed [ in the host");
    host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') return bad("junk after ]");
      port = hostport.substr(close + 2);
    }
  } else if (const std::size_t colon = hostport.rfind(':'); colon != std::string_view::npos) {
    host = hostport.substr(0, colon);
    port = hostport.substr(colon + 1);
  }
  if (host.empty()) return bad("the host is empty");
  ep.host = std::string(host);
  if (!port.empty()) {
    unsigned p = 0;
    const auto r = std::from_chars(port.data(), port.data() + port.size(), p);
    if (r.ec != std::errc() || r.ptr != port.data() + port.size() || p == 0 || p > 65535) {
      return bad("the port must be 1..65535");
    }
    ep.port = static_cast<std::uint16_t>(p);
  }
  return ep;
}

namespace {

std::string default_consumer() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host[0] != '\0' ? host : "fanout") + ":" + std::to_string(getpid());
}

}  // namespace

// --- RedisSource ----------------------------------------------------------------------------

tl::expected<std::unique_ptr<RedisSource>, std::string> RedisSource::create(RedisOptions options,
                                                                            Engine& engine,
                                                                            uv_loop_s* loop) {
  auto ep = parse_redis_url(options.url);
  if (!ep) return tl::unexpected(ep.error());
  if (options.stream.empty()) return tl::unexpected(std::string("redis stream: must not be empty"));
  if (options.group.empty()) return tl::unexpected(std::string("redis group: must not be empty"));
  if (options.consumer.empty()) options.consumer = default_consumer();
  if (options.batch == 0 || options.batch > 100'000) {
    return tl::unexpected(std::string("redis batch: must be 1..100000"));
  }
  if (options.max_in_flight == 0) {
    return tl::unexpected(std::string("redis max_in_flight: must be at least 1"));
  }
  if (options.takeover_ms < 600) {
    return tl::unexpected(std::string("redis takeover_ms: must be at least 600"));
  }
  if (options.start_id != "0" && options.start_id != "$") {
    return tl::unexpected(std::string("redis start_id: must be \"0\" or \"$\""));
  }
  options.reconnect_min_ms = std::max<std::uint32_t>(options.reconnect_min_ms, 1);
  options.reconnect_max_ms = std::max(options.reconnect_max_ms, options.reconnect_min_ms);
  auto impl = std::make_unique<Impl>(std::move(options), std::move(*ep), engine, loop);
  return std::unique_ptr<RedisSource>(new RedisSource(std::move(impl)));
}

RedisSource::RedisSource(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}

RedisSource::~RedisSource() {
  // Its handles live on the caller's loop: close() (even when never started) must have run.
  assert(impl_->phase == Impl::Phase::kClosed &&
         "close() the source and let its callback run before destroying it");
}

void RedisSource::start() {
  impl_->start();
}

void RedisSource::stop_reading() {
  impl_->stop_read = true;
  impl_->reader.drop();
  impl_->reading = false;
}

void RedisSource::close(std::uint32_t deadline_ms, std::function<void()> done) {
  impl_->close(deadline_ms, std::move(done));
}

void RedisSource::on_outcomes(std::span<const Outcome> outcomes) noexcept {
  Impl& m = *impl_;
  if (!m.notes_open.load(std::memory_order_acquire)) return;
  bool any = false;
  for (const Outcome& o : outcomes) {
    if (o.tag == 0) continue;
    m.notes.enqueue(Note{o.tag, o.attempts, 0, 0, true});
    any = true;
  }
  if (any) uv_async_send(&m.async);
}

void RedisSource::on_retry(const RetryNote& note) noexcept {
  Impl& m = *impl_;
  if (note.tag == 0) return;
  if (!m.notes_open.load(std::memory_order_acquire)) {
    // Closed: nothing will record it, and the attempt must not wait for that.
    if (note.hold != 0) m.producer.release_retry(note.hold);
    return;
  }
  m.notes.enqueue(Note{note.tag, note.attempts, note.next_attempt_unix_ms, note.hold, false});
  uv_async_send(&m.async);
}

RedisStats RedisSource::stats() const noexcept {
  const Impl::Counters& c = impl_->counters;
  RedisStats s;
  s.read = c.read.load(std::memory_order_relaxed);
  s.acknowledged = c.acknowledged.load(std::memory_order_relaxed);
  s.claimed = c.claimed.load(std::memory_order_relaxed);
  s.dead_lettered = c.dead_lettered.load(std::memory_order_relaxed);
  s.no_subscription = c.no_subscription.load(std::memory_order_relaxed);
  s.held = c.held.load(std::memory_order_relaxed);
  s.reconnects = c.reconnects.load(std::memory_order_relaxed);
  s.paused = c.paused.load(std::memory_order_relaxed);
  s.group_pending = c.group_pending.load(std::memory_order_relaxed);
  s.group_lag = c.group_lag.load(std::memory_order_relaxed);
  s.connected = c.connected.load(std::memory_order_relaxed);
  return s;
}

const RedisOptions& RedisSource::options() const noexcept {
  return impl_->o;
}

// --- Impl: life cycle -------------------------------------------------------------------------

RedisSource::Impl::Impl(RedisOptions options, RedisEndpoint endpoint, Engine& e, uv_loop_s* l)
    : o(std::move(options)),
      ep(std::move(endpoint)),
      engine(e),
      loop(l),
      producer(e.make_producer()),
      timers(l),
      reader(l, "read", on_conn_ready, on_conn_lost, this),
      cmd(l, "command", on_conn_ready, on_conn_lost, this) {
  attempts_key = o.stream + ":attempts";
  dead_key = o.stream + ":dead";
  block_text = std::to_string(o.block_ms);
  claim_idle_ms = o.takeover_ms / 2;
  claim_idle_text = std::to_string(claim_idle_ms);
  o.max_in_flight = std::min(o.max_in_flight, e.options().max_in_flight);
  reconnect_timer.bind<&Impl::on_reconnect>(this);
  connect_deadline.bind<&Impl::on_connect_deadline>(this);
  claim_timer.bind<&Impl::on_claim_tick>(this);
  refresh_timer.bind<&Impl::on_refresh>(this);
  info_timer.bind<&Impl::on_info>(this);
  busy_timer.bind<&Impl::on_busy_retry>(this);
  close_deadline.bind<&Impl::on_close_deadline>(this);
  ack_timer.bind<&Impl::on_ack_due>(this);
  uv_async_init(loop, &async, on_async);
  async.data = this;
}

void RedisSource::Impl::log(std::string_view level, const std::string& message) const {
  if (o.log) o.log(level, message);
}

void RedisSource::Impl::start() {
  if (phase != Phase::kIdle) return;
  backoff_ms = o.reconnect_min_ms;
  resolve();
}

void RedisSource::Impl::resolve() {
  phase = Phase::kResolving;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  resolve_req.data = this;
  const int rc = uv_getaddrinfo(loop, &resolve_req, on_resolved, ep.host.c_str(), nullptr, &hints);
  if (rc != 0) {
    go_down("resolving " + ep.host + ": " + uv_strerror(rc));
    return;
  }
  resolving = true;
}

void RedisSource::Impl::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) {
  auto* self = static_cast<Impl*>(req->data);
  self->resolving = false;
  char text[64] = {};
  bool ok = false;
  if (status == 0 && res != nullptr) {
    if (res->ai_family == AF_INET) {
      ok = uv_ip4_name(reinterpret_cast<const sockaddr_in*>(res->ai_addr), text, sizeof text) == 0;
    } else if (res->ai_family == AF_INET6) {
      ok = uv_ip6_name(reinterpret_cast<const sockaddr_in6*>(res->ai_addr), text, sizeof text) == 0;
    }
  }
  uv_freeaddrinfo(res);
  if (self->phase == Phase::kClosing) {
    self->maybe_finish_close();
    return;
  }
  if (!ok) {
    self->go_down("resolving " + self->ep.host + ": " +
                  (status != 0 ? uv_strerror(status) : "no address"));
    return;
  }
  self->ip = text;
  self->phase = Phase::kConnecting;
  self->timers.schedule_after(self->connect_deadline, self->o.connect_timeout_ms);
  if (!self->stop_read) self->reader.connect(self->ip, self->ep);
  if (self->phase == Phase::kConnecting) self->cmd.connect(self->ip, self->ep);
}

void RedisSource::Impl::on_conn_ready(RedisConn&, void* data) noexcept {
  auto* self = static_cast<Impl*>(data);
  if (self->phase != Phase::kConnecting) return;
  if (!self->cmd.ready() || (!self->stop_read && !self->reader.ready())) return;
  self->timers.cancel(self->connect_deadline);
  self->setup();
}

void RedisSource::Impl::on_conn_lost(RedisConn& conn, void* data) noexcept {
  auto* self = static_cast<Impl*>(data);
  if (self->phase == Phase::kClosing) {
    self->maybe_finish_close();
    return;
  }
  if (self->phase == Phase::kDown || self->phase == Phase::kClosed) return;
  if (&conn == &self->reader && self->stop_read) return;  // dropped on purpose
  self->go_down("redis " + conn.name() + " connection: " + conn.error());
}

void RedisSource::Impl::on_connect_deadline() noexcept {
  go_down("redis: not connected within " + std::to_string(o.connect_timeout_ms) + " ms");
}

void RedisSource::Impl::go_down(const std::string& why) {
  if (phase == Phase::kClosing || phase == Phase::kClosed) return;
  const bool was_up = counters.connected.exchange(false, std::memory_order_relaxed);
  log(was_up ? "warn" : "info",
      why + "; connecting again in " + std::to_string(backoff_ms) + " ms");
  phase = Phase::kDown;
  reading = claiming = false;
  for (transport::TimerEntry* t :
       {&connect_deadline, &claim_timer, &refresh_timer, &info_timer, &ack_timer}) {
    timers.cancel(*t);
  }
  reader.drop();
  cmd.drop();
  counters.reconnects.fetch_add(1, std::memory_order_relaxed);
  timers.schedule_after(reconnect_timer, backoff_ms);
  backoff_ms = std::min(backoff_ms * 2, o.reconnect_max_ms);
}

void RedisSource::Impl::on_reconnect() noexcept {
  if (phase == Phase::kDown) resolve();
}

void RedisSource::Impl::setup() {
  phase = Phase::kSetup;
  // Owed acknowledgements first: the command connection answers in order, so they are done
  // before the group's answer lets reading start (nothing acknowledged is read again).
  std::vector<EntryId> ids = std::move(unacked);
  unacked.clear();
  ids.insert(ids.end(), to_ack.begin(), to_ack.end());
  to_ack.clear();
  std::vector<EntryId> hdel = std::move(to_hdel);
  to_hdel.clear();
  if (!ids.empty()) send_acks(std::move(ids), std::move(hdel));
  send_records();  // records lost with the connection: their attempts wait for them
  args.clear()
      .add("XGROUP")
      .add("CREATE")
      .add(o.stream)
      .add(o.group)
      .add(o.start_id)
      .add("MKSTREAM");
  if (!cmd.command(args, on_group_created, this)) go_down("redis: command connection not ready");
}

void RedisSource::Impl::on_group_created(redisAsyncContext*, void* reply, void* data) {
  auto* self = static_cast<Impl*>(data);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || self->phase != Phase::kSetup) return;
  if (is_error(r) && !str(r).starts_with("BUSYGROUP")) {
    self->go_down("XGROUP CREATE " + self->o.stream + " " + self->o.group + ": " +
                  std::string(str(r)));
    return;
  }
  if (!is_error(r)) self->log("info", "created group " + self->o.group + " on " + self->o.stream);
  self->phase = Phase::kOwnPending;
  self->pending_cursor = "0";
  self->claim_cursor = "0-0";
  self->backoff_ms = self->o.reconnect_min_ms;
  self->counters.connected.store(true, std::memory_order_relaxed);
  self->log("info", "reading " + self->o.stream + " as " + self->o.group + "/" + self->o.consumer +
                        " from " + self->ip + ":" + std::to_string(self->ep.port));
  self->timers.schedule_after(self->claim_timer,
                              std::max<std::uint64_t>(self->o.takeover_ms / 6, 1));
  self->timers.schedule_after(self->refresh_timer, self->o.takeover_ms / 4);
  self->timers.schedule_after(self->info_timer, 0);
  self->flush_writes();
  self->read_next();
}

void RedisSource::Impl::on_info() noexcept {
  timers.schedule_after(info_timer, 1000);
  args.clear().add("XINFO").add("GROUPS").add(o.stream);
  (void)cmd.command(args, on_info_reply, this);
}

void RedisSource::Impl::on_info_reply(redisAsyncContext*, void* reply, void* data) {
  auto* self = static_cast<Impl*>(data);
  const auto* r = static_cast<const redisReply*>(reply);
  if (r == nullptr || r->type != REDIS_REPLY_ARRAY) return;
  for (std::size_t g = 0; g < r->elements; ++g) {
    const redisReply* group = r->element[g];
    if (group->type != REDIS_REPLY_ARRAY) continue;
    std::int64_t pending = -1, lag = -1;
    bool ours = false;
    for (std::size_t i = 0; i + 1 < group->elements; i += 2) {
      const std::string_view key = str(group->element[i]);
      const redisReply* v = group->element[i + 1];
      if (key == "name") ours = str(v) == self->o.group;
      if (key == "pending" && v->type == REDIS_REPLY_INTEGER) pending = v->integer;
      if (key == "lag" && v->type == REDIS_REPLY_INTEGER) lag = v->integer;
    }
    if (!ours) continue;
    self->counters.group_pending.store(pending, std::memory_order_relaxed);
    self->counters.group_lag.store(lag, std::memory_order_relaxed);
  }
}

void RedisSource::Impl::close(std::uint32_t deadline_ms, std::function<void()> done) {
  if (phase == Phase::kClosing || phase == Phase::kClosed) return;
  close_done = std::move(done);
  phase = Phase::kClosing;
  stop_read = true;
  reader.drop();
  reading = claiming = false;
  for (transport::TimerEntry* t : {&reconnect_timer, &connect_deadline, &claim_timer,
                                   &refresh_timer, &info_timer, &busy_timer, &ack_timer}) {
    timers.cancel(*t);
  }
  if (resolving) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req));
  drain_notes();  // outcomes the engine gave while it stopped
  flush_writes();
  timers.schedule_after(close_deadline, deadline_ms);
  maybe_finish_close();
}

void RedisSource::Impl::on_close_deadline() noexcept {
  if (acks_in_flight != 0 || !to_ack.empty()) {
    log("warn", "redis: closing with " + std::to_string(acks_in_flight + to_ack.size()) +
                    " acknowledgement batch(es) unconfirmed; those entries stay pending");
  }
  acks_in_flight = 0;
  to_ack.clear();
  maybe_finish_close();
}

void RedisSource::Impl::maybe_finish_close() {
  if (phase != Phase::kClosing || resolving) return;
  if (cmd.ready() && (acks_in_flight != 0 || !to_ack.empty())) return;
  phase = Phase::kClosed;
  notes_open.store(false, std::memory_order_release);
  // Retries noted since the last drain wait for a record nobody will write now: let them go.
  Note note;
  while (notes.try_dequeue(note)) {
    if (note.hold != 0) producer.release_retry(note.hold);
  }
  for (const RetryRecord& rec : to_hset) producer.release_retry(rec.hold);
  to_hset.clear();
  cmd.drop();
  counters.connected.store(false, std::memory_order_relaxed);
  closing_handles = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&async),
           [](uv_handle_t* h) { static_cast<Impl*>(h->data)->handle_closed(); });
  timers.close(
      [](transport::LoopTimer*, void* data) noexcept { static_cast<Impl*>(data)->handle_closed(); },
      this);
}

void RedisSource::Impl::handle_closed() noexcept {
  if (--closing_handles == 0 && close_done) {
    auto done = std::move(close_done);
    done();
  }
}

}  // namespace fanout::source
