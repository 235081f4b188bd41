// fanout-delay-relay: a TCP relay that holds every chunk it reads for D ms before writing it on,
// in each direction, so that a client on loopback sees a receiver one round trip of 2 x D away.
// This machine's kernel has no netem qdisc; this is the network delay of bench/network.sh.
//
//   fanout-delay-relay --to HOST:PORT --delay-ms D [--listen-port P] [--max-seconds S]
//
// It listens on 127.0.0.1 (port P, default 0: any free port), prints "listening on
// 127.0.0.1:PORT" on stdout, and for each connection it accepts opens one to HOST:PORT (an IPv4
// or IPv6 address) and relays both ways. Each read is queued with the time it is due (now + D,
// by uv_hrtime: held at least D, at most about a millisecond more, libuv's timer granularity;
// the loop's cached millisecond clock could let a chunk go up to a millisecond early);
// D is the same for every chunk, so a FIFO per direction is in due order and one timer per
// direction, armed to the head, serves it. D = 0 writes at once (the relay's own overhead, to
// compare with a direct run). An end of stream travels the same way (after the data before it,
// D later) and becomes a shutdown of the other side; a reset or error closes both sides.
// Back-pressure: past 64 MiB of chunks queued one way, reading that way stops until the queue
// is half empty (the window of a long fat network is what limits, not the relay's memory).
// Not modelled: bandwidth limits, loss, the delay of the TCP handshake (the client's connect
// completes at the relay; the relay connects on at once). TCP_NODELAY on every socket.
//
// It stops by itself after --max-seconds (default 600) or at SIGTERM/SIGINT, and prints one JSON
// line on stderr: connections, bytes each way, reads (chunks) each way.
#include <arpa/inet.h>
#include <uv.h>

#include <cinttypes>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

constexpr std::size_t kChunkBytes = 16 * 1024;
constexpr std::size_t kMaxQueuedBytes = std::size_t{64} << 20;

struct Pipe;

// One read: its bytes, when it is due, and the write that carries it on. len == 0 with eof set
// is the end of stream.
struct Chunk {
  Chunk* next = nullptr;
  Pipe* pipe = nullptr;
  std::uint64_t due_ns = 0;  // uv_hrtime(): libuv's loop time is in whole, cached milliseconds
  std::size_t len = 0;
  bool eof = false;
  uv_write_t write{};
  char data[kChunkBytes];
};

// Chunks are recycled: a freelist, grown on demand, never shrunk (a benchmark's process).
struct ChunkPool {
  Chunk* free = nullptr;
  Chunk* take() {
    if (free == nullptr) return new Chunk();
    Chunk* c = free;
    free = c->next;
    c->next = nullptr;
    c->len = 0;
    c->eof = false;
    return c;
  }
  void give(Chunk* c) {
    c->next = free;
    free = c;
  }
};

struct Stats {
  std::uint64_t connections = 0;
  std::uint64_t bytes[2] = {0, 0};
  std::uint64_t reads[2] = {0, 0};
};

struct Relay;
struct Conn;

// One direction of one connection: reads from `from`, writes to `to`, D ms later.
struct Pipe {
  Conn* conn = nullptr;
  int dir = 0;  // 0: client -> server, 1: server -> client
  uv_tcp_t* from = nullptr;
  uv_tcp_t* to = nullptr;
  uv_timer_t timer{};
  Chunk* head = nullptr;
  Chunk* tail = nullptr;
  std::size_t queued = 0;  // bytes of chunk capacity queued or being written
  bool paused = false;
  bool ended = false;  // its end of stream was written on (shutdown done)
  uv_shutdown_t shutdown{};
};

struct Conn {
  Relay* relay = nullptr;
  uv_tcp_t client{};
  uv_tcp_t server{};
  uv_connect_t connect{};
  Pipe up;    // client -> server
  Pipe down;  // server -> client
  bool closing = false;
  int open_handles = 0;
};

struct Relay {
  uv_loop_t* loop = nullptr;
  uv_tcp_t listener{};
  uv_timer_t deadline{};
  uv_signal_t sigterm{};
  uv_signal_t sigint{};
  sockaddr_storage target{};
  std::uint64_t delay_ms = 0;
  ChunkPool pool;
  Stats stats;
  std::vector<Conn*> conns;
  bool stopping = false;
};

void close_conn(Conn* c);

void on_handle_closed(uv_handle_t* h) {
  auto* c = static_cast<Conn*>(h->data);
  if (--c->open_handles > 0) return;
  Relay* r = c->relay;
  for (std::size_t i = 0; i < r->conns.size(); ++i) {
    if (r->conns[i] == c) {
      r->conns[i] = r->conns.back();
      r->conns.pop_back();
      break;
    }
  }
  delete c;
}

void close_pipe_queue(Pipe& p) {
  while (p.head != nullptr) {
    Chunk* ch = p.head;
    p.head = ch->next;
    p.conn->relay->pool.give(ch);
  }
  p.tail = nullptr;
}

void close_conn(Conn* c) {
  if (c->closing) return;
  c->closing = true;
  close_pipe_queue(c->up);
  close_pipe_queue(c->down);
  // Every handle's close callback finds the connection in its data (the timers' pointed at
  // their pipes).
  c->up.timer.data = c;
  c->down.timer.data = c;
  // Pending writes are cancelled before the streams' close callbacks: their callbacks give the
  // chunks back.
  uv_close(reinterpret_cast<uv_handle_t*>(&c->client), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->server), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->up.timer), on_handle_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&c->down.timer), on_handle_closed);
}

void maybe_finish(Conn* c) {
  if (c->up.ended && c->down.ended && c->up.queued == 0 && c->down.queued == 0) close_conn(c);
}

void on_alloc(uv_handle_t* h, std::size_t /*suggested*/, uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(h->data);
  Chunk* ch = c->relay->pool.take();
  buf->base = ch->data;
  buf->len = kChunkBytes;
}

Chunk* chunk_of(const uv_buf_t* buf) {
  return reinterpret_cast<Chunk*>(buf->base - offsetof(Chunk, data));
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf);

void resume_if_drained(Pipe& p) {
  if (p.paused && p.queued <= kMaxQueuedBytes / 2 && !p.conn->closing) {
    p.paused = false;
    uv_read_start(reinterpret_cast<uv_stream_t*>(p.from), on_alloc, on_read);
  }
}

void on_written(uv_write_t* w, int status) {
  auto* ch = static_cast<Chunk*>(w->data);
  Pipe& p = *ch->pipe;
  Conn* c = p.conn;
  p.queued -= kChunkBytes;
  c->relay->pool.give(ch);
  if (status < 0) {
    close_conn(c);
    return;
  }
  resume_if_drained(p);
  maybe_finish(c);
}

void on_shutdown(uv_shutdown_t* s, int status) {
  auto* p = static_cast<Pipe*>(s->data);
  if (status == UV_ECANCELED) return;
  p->ended = true;
  if (status < 0) {
    close_conn(p->conn);
    return;
  }
  maybe_finish(p->conn);
}

void on_pipe_timer(uv_timer_t* t);

// Writes every chunk that is due, then arms the timer to the next one.
void flush(Pipe& p) {
  Conn* c = p.conn;
  if (c->closing) return;
  const std::uint64_t now = uv_hrtime();
  while (p.head != nullptr && p.head->due_ns <= now) {
    Chunk* ch = p.head;
    p.head = ch->next;
    if (p.head == nullptr) p.tail = nullptr;
    ch->next = nullptr;
    if (ch->eof) {
      p.queued -= kChunkBytes;
      c->relay->pool.give(ch);
      p.shutdown.data = &p;
      if (uv_shutdown(&p.shutdown, reinterpret_cast<uv_stream_t*>(p.to), on_shutdown) != 0) {
        close_conn(c);
        return;
      }
      continue;
    }
    ch->write.data = ch;
    const uv_buf_t b = uv_buf_init(ch->data, static_cast<unsigned>(ch->len));
    if (uv_write(&ch->write, reinterpret_cast<uv_stream_t*>(p.to), &b, 1, on_written) != 0) {
      p.queued -= kChunkBytes;
      c->relay->pool.give(ch);
      close_conn(c);
      return;
    }
  }
  // Rounded up: a libuv timer may fire up to a millisecond before its timeout in real time (it
  // counts from the loop's cached time, truncated to the millisecond), and a chunk must never
  // go before it has been held D; one that is not yet due is simply waited for again.
  if (p.head != nullptr) {
    uv_timer_start(&p.timer, on_pipe_timer, (p.head->due_ns - now + 999'999) / 1'000'000, 0);
  }
}

void on_pipe_timer(uv_timer_t* t) {
  flush(*static_cast<Pipe*>(t->data));
}

void enqueue(Pipe& p, Chunk* ch) {
  Relay* r = p.conn->relay;
  ch->pipe = &p;
  ch->due_ns = uv_hrtime() + r->delay_ms * 1'000'000;
  p.queued += kChunkBytes;
  const bool was_empty = p.head == nullptr;
  if (p.tail != nullptr) {
    p.tail->next = ch;
  } else {
    p.head = ch;
  }
  p.tail = ch;
  if (r->delay_ms == 0) {
    flush(p);
  } else if (was_empty) {
    uv_timer_start(&p.timer, on_pipe_timer, r->delay_ms + 1, 0);
  }
  if (!p.paused && p.queued > kMaxQueuedBytes && !p.conn->closing) {
    p.paused = true;
    uv_read_stop(reinterpret_cast<uv_stream_t*>(p.from));
  }
}

void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
  auto* c = static_cast<Conn*>(s->data);
  Pipe& p = reinterpret_cast<uv_tcp_t*>(s) == &c->client ? c->up : c->down;
  Chunk* ch = buf->base != nullptr ? chunk_of(buf) : nullptr;
  if (n > 0 && ch != nullptr && !c->closing) {
    ch->len = static_cast<std::size_t>(n);
    c->relay->stats.bytes[p.dir] += ch->len;
    ++c->relay->stats.reads[p.dir];
    enqueue(p, ch);
    return;
  }
  if (ch != nullptr) c->relay->pool.give(ch);
  if (n == UV_EOF && !c->closing) {
    uv_read_stop(s);
    Chunk* end = c->relay->pool.take();
    end->eof = true;
    enqueue(p, end);
  } else if (n < 0) {
    close_conn(c);
  }
}

void set_nodelay(uv_tcp_t* t) {
  uv_tcp_nodelay(t, 1);
}

void on_connected(uv_connect_t* req, int status) {
  auto* c = static_cast<Conn*>(req->data);
  if (status == UV_ECANCELED) return;
  if (status < 0 || c->closing) {
    close_conn(c);
    return;
  }
  set_nodelay(&c->server);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->client), on_alloc, on_read);
  uv_read_start(reinterpret_cast<uv_stream_t*>(&c->server), on_alloc, on_read);
}

void init_pipe(Conn* c, Pipe& p, int dir, uv_tcp_t* from, uv_tcp_t* to) {
  p.conn = c;
  p.dir = dir;
  p.from = from;
  p.to = to;
  uv_timer_init(c->relay->loop, &p.timer);
  p.timer.data = &p;
}

void on_connection(uv_stream_t* listener, int status) {
  auto* r = static_cast<Relay*>(listener->data);
  if (status < 0 || r->stopping) return;
  auto* c = new Conn();
  c->relay = r;
  uv_tcp_init(r->loop, &c->client);
  uv_tcp_init(r->loop, &c->server);
  c->client.data = c;
  c->server.data = c;
  init_pipe(c, c->up, 0, &c->client, &c->server);
  init_pipe(c, c->down, 1, &c->server, &c->client);
  c->open_handles = 4;
  r->conns.push_back(c);
  if (uv_accept(listener, reinterpret_cast<uv_stream_t*>(&c->client)) != 0) {
    close_conn(c);
    return;
  }
  ++r->stats.connections;
  set_nodelay(&c->client);
  c->connect.data = c;
  if (uv_tcp_connect(&c->connect, &c->server, reinterpret_cast<const sockaddr*>(&r->target),
                     on_connected) != 0) {
    close_conn(c);
  }
}

void stop(Relay* r) {
  if (r->stopping) return;
  r->stopping = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&r->listener), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->deadline), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->sigterm), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&r->sigint), nullptr);
  const std::vector<Conn*> open = r->conns;
  for (Conn* c : open) close_conn(c);
}

int usage() {
  std::fprintf(stderr,
               "usage: fanout-delay-relay --to HOST:PORT --delay-ms D [--listen-port P]\n"
               "                          [--max-seconds S]\n");
  return 2;
}

bool parse_target(const std::string& s, sockaddr_storage& out) {
  const auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = s.substr(0, colon);
  const int port = std::atoi(s.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return false;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (uv_ip4_addr(host.c_str(), port, reinterpret_cast<sockaddr_in*>(&out)) == 0) return true;
  return uv_ip6_addr(host.c_str(), port, reinterpret_cast<sockaddr_in6*>(&out)) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Relay r;
  std::string to;
  long delay = -1;
  int listen_port = 0;
  long max_seconds = 600;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) return usage();
    const char* v = argv[++i];
    if (a == "--to") {
      to = v;
    } else if (a == "--delay-ms") {
      delay = std::strtol(v, nullptr, 10);
    } else if (a == "--listen-port") {
      listen_port = std::atoi(v);
    } else if (a == "--max-seconds") {
      max_seconds = std::strtol(v, nullptr, 10);
    } else {
      return usage();
    }
  }
  if (to.empty() || delay < 0 || max_seconds <= 0 || !parse_target(to, r.target)) {
    return usage();
  }
  r.delay_ms = static_cast<std::uint64_t>(delay);
  r.loop = uv_default_loop();
  uv_tcp_init(r.loop, &r.listener);
  r.listener.data = &r;
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", listen_port, &addr);
  if (int e = uv_tcp_bind(&r.listener, reinterpret_cast<const sockaddr*>(&addr), 0); e != 0) {
    std::fprintf(stderr, "fanout-delay-relay: bind: %s\n", uv_strerror(e));
    return 1;
  }
  if (int e = uv_listen(reinterpret_cast<uv_stream_t*>(&r.listener), 511, on_connection); e != 0) {
    std::fprintf(stderr, "fanout-delay-relay: listen: %s\n", uv_strerror(e));
    return 1;
  }
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&r.listener, reinterpret_cast<sockaddr*>(&bound), &len);
  std::printf("listening on 127.0.0.1:%d\n",
              ntohs(reinterpret_cast<const sockaddr_in*>(&bound)->sin_port));
  std::fflush(stdout);

  uv_timer_init(r.loop, &r.deadline);
  r.deadline.data = &r;
  uv_timer_start(
      &r.deadline, [](uv_timer_t* t) { stop(static_cast<Relay*>(t->data)); },
      static_cast<std::uint64_t>(max_seconds) * 1000, 0);
  for (uv_signal_t* s : {&r.sigterm, &r.sigint}) {
    uv_signal_init(r.loop, s);
    s->data = &r;
  }
  uv_signal_start(
      &r.sigterm, [](uv_signal_t* s, int) { stop(static_cast<Relay*>(s->data)); }, SIGTERM);
  uv_signal_start(
      &r.sigint, [](uv_signal_t* s, int) { stop(static_cast<Relay*>(s->data)); }, SIGINT);
  uv_run(r.loop, UV_RUN_DEFAULT);
  std::fprintf(stderr,
               "{\"connections\":%" PRIu64 ",\"bytes_up\":%" PRIu64 ",\"bytes_down\":%" PRIu64
               ",\"reads_up\":%" PRIu64 ",\"reads_down\":%" PRIu64 ",\"delay_ms\":%" PRIu64 "}\n",
               r.stats.connections, r.stats.bytes[0], r.stats.bytes[1], r.stats.reads[0],
               r.stats.reads[1], r.delay_ms);
  while (r.pool.free != nullptr) {
    Chunk* c = r.pool.free;
    r.pool.free = c->next;
    delete c;
  }
  uv_loop_close(r.loop);
  return 0;
}
