// Fuzz target: transport::HttpServer's request path (transport/server/http_server.cc), fed raw
// bytes over a real loopback connection in cleartext: preface detection, HTTP/1.1 through llhttp
// and HTTP/2 through nghttp2, and our handling of what they produce (header and body limits,
// pipelining, streams, answers, resets, GOAWAY, closing).
//
// One server (port 0) on one loop lives for the whole process; each input is one connection
// from a plain non-blocking socket. The first byte splits the rest into 1 to 8 writes; between
// writes the loop runs until it is idle and the answers the handler deferred are given (in
// reverse order: answers must still leave in request order). Then the client half-closes and
// reads until the server closes. Request targets steer the handler: "/later" defers the answer,
// "/reset" resets the stream, "/goaway" sends GOAWAY then answers, "/close" closes the
// connection, "/big" answers 100 KiB, "/never" never answers; anything else gets a 200 echo.
// The server's timeouts are off (idle, request), so an input after which the server does not
// close a connection whose client has gone hangs, and is reported as a timeout.
//
// Invariants, beyond "no crash, no sanitizer report", on every request the handler sees:
// method present; target plus header lines within max_header_bytes; body within max_body_bytes;
// HTTP/2 exactly when the input starts with the client preface, with lower-case header names;
// one connection id per input, new for each; sequence numbers increasing; the peer is the
// client's source address. On what the client reads back: HTTP/1.1 answers that llhttp parses as
// responses (unless a HEAD makes their bodies ambiguous), or HTTP/2 frames starting with SETTINGS.
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"

namespace {

using fanout::transport::HttpHeaderView;
using fanout::transport::HttpRequest;
using fanout::transport::HttpResponder;
using fanout::transport::HttpServer;
using fanout::transport::HttpServerOptions;
using fanout::transport::HttpVersion;

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::size_t kMaxHeaderBytes = 2048;
constexpr std::size_t kMaxBodyBytes = 8192;

bool has_upper(std::string_view s) {
  for (const char c : s) {
    if (c >= 'A' && c <= 'Z') return true;
  }
  return false;
}

struct Handler final : fanout::transport::HttpRequestHandler {
  // Per input.
  bool expect_h2 = false;
  std::uint64_t connection_id = 0;  // of this input's requests (0: none yet)
  std::uint64_t last_sequence = 0;
  std::size_t requests = 0;
  bool saw_head = false;
  std::vector<HttpResponder> later;
  // Across inputs.
  std::uint64_t previous_connection_id = 0;

  void on_request(const HttpRequest& req, HttpResponder responder) override {
    FUZZ_CHECK(!req.method.empty(), "a request has a method");
    std::size_t header_bytes = req.target.size();
    for (const HttpHeaderView& h : req.headers) {
      header_bytes += h.name.size() + h.value.size() + 4;
      if (req.version == HttpVersion::kHttp2) {
        FUZZ_CHECK(!has_upper(h.name), "HTTP/2 header names are lower case");
      }
    }
    FUZZ_CHECK(header_bytes <= kMaxHeaderBytes, "the header block within max_header_bytes");
    FUZZ_CHECK(req.body.size() <= kMaxBodyBytes, "the body within max_body_bytes");
    FUZZ_CHECK((req.version == HttpVersion::kHttp2) == expect_h2,
               "HTTP/2 exactly when the input starts with the preface");
    FUZZ_CHECK(!req.tls && req.peer_ip.starts_with("127.0.1."), "cleartext from 127.0.1.x");
    if (connection_id == 0) {
      FUZZ_CHECK(req.connection_id > previous_connection_id, "a new connection id per input");
      connection_id = req.connection_id;
    }
    FUZZ_CHECK(req.connection_id == connection_id, "one connection per input");
    FUZZ_CHECK(req.sequence > last_sequence, "sequence numbers increase");
    last_sequence = req.sequence;
    ++requests;
    if (req.method == "HEAD") saw_head = true;
    // Every view is read, so that ASan sees one that points to freed or foreign memory.
    std::string echo(req.method);
    echo.append(" ").append(req.target).append(" ").append(req.authority);
    for (const HttpHeaderView& h : req.headers) echo.append(h.name).append(h.value);
    echo.append(req.body);

    const std::string_view t = req.target;
    const HttpHeaderView headers[] = {{"content-type", "text/plain"}, {"x-echo-size", "1"}};
    if (t.find("/never") != std::string_view::npos) return;
    if (t.find("/later") != std::string_view::npos) {
      later.push_back(responder);
    } else if (t.find("/reset") != std::string_view::npos) {
      (void)responder.reset();
    } else if (t.find("/close") != std::string_view::npos) {
      (void)responder.close_connection();
    } else if (t.find("/goaway") != std::string_view::npos) {
      (void)responder.goaway(fanout::transport::GoawayMode::kGraceful);
      (void)responder.respond(200, headers, echo);
    } else if (t.find("/big") != std::string_view::npos) {
      (void)responder.respond(200, headers, std::string(100 * 1024, 'b'));
    } else {
      (void)responder.respond(echo.size() % 7 == 0 ? 204 : 200, headers, echo);
    }
  }

  void answer_later() {
    for (auto it = later.rbegin(); it != later.rend(); ++it) (void)it->respond(200, {}, "later");
    later.clear();
  }
};

struct Fixture {
  uv_loop_t loop{};
  std::unique_ptr<fanout::transport::StreamLoop> streams;
  Handler handler;
  std::unique_ptr<HttpServer> server;
  sockaddr_in addr{};

  Fixture() {
    FUZZ_CHECK(uv_loop_init(&loop) == 0, "uv_loop_init");
    streams = std::make_unique<fanout::transport::StreamLoop>(&loop);
    HttpServerOptions o;
    o.max_header_bytes = kMaxHeaderBytes;
    o.max_body_bytes = kMaxBodyBytes;
    o.max_concurrent_streams = 16;
    o.h2_max_continuations = 4;
    o.h2_max_queued_acks = 64;
    o.h2_max_settings_entries = 16;
    o.idle_timeout_ms = 0;
    o.request_timeout_ms = 0;
    auto s = HttpServer::create(*streams, o, &handler);
    FUZZ_CHECK(s.has_value(), "the server listens");
    server = std::move(*s);
    FUZZ_CHECK(uv_ip4_addr("127.0.0.1", server->port(), &addr) == 0, "the server's address");
  }
};

// Reads what is there; false once the server closed (EOF or reset).
bool drain(int fd, std::string& out) {
  char buf[16 * 1024];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      if (out.size() < 1024 * 1024) out.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    if (n < 0 && errno == EINTR) continue;
    return false;
  }
}

// Runs a few loop turns without waiting (reading a request, answering it, and flushing the
// answer take three), reading the answers as they come.
bool settle(Fixture& f, int fd, std::string& out) {
  bool open = true;
  for (int i = 0; i < 6; ++i) {
    (void)uv_run(&f.loop, UV_RUN_NOWAIT);
    open = drain(fd, out) && open;
  }
  return open;
}

// Writes all of `chunk`, running the server when the socket is full; false if the server closed.
bool write_all(Fixture& f, int fd, std::string_view chunk, std::string& out) {
  while (!chunk.empty()) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) {
      chunk.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!settle(f, fd, out)) return false;
      (void)uv_run(&f.loop, UV_RUN_ONCE);  // the server has input to read: this returns
    } else if (!(n < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

llhttp_settings_t response_settings() {
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  return s;
}

void check_output(const Handler& h, std::string_view input, std::string_view out) {
  if (out.empty()) return;
  if (h.expect_h2) {
    FUZZ_CHECK(out.size() >= 9 && out[3] == 0x04 && out[5] == 0 && out[6] == 0 && out[7] == 0 &&
                   out[8] == 0,
               "HTTP/2: the server's first frame is SETTINGS on stream 0");
    std::size_t pos = 0;
    while (pos + 9 <= out.size()) {
      const auto b = [&](std::size_t i) {
        return static_cast<std::size_t>(static_cast<unsigned char>(out[pos + i]));
      };
      pos += 9 + (b(0) << 16 | b(1) << 8 | b(2));
    }
    return;  // the last frame may be cut by the close
  }
  // A HEAD's answer has no body whatever its Content-Length says; which answer is the HEAD's
  // (the server answers some requests itself) is not known here.
  if (h.saw_head || input.find("HEAD") != std::string_view::npos) return;
  static const llhttp_settings_t settings = response_settings();
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &settings);
  const llhttp_errno_t err = llhttp_execute(&parser, out.data(), out.size());
  FUZZ_CHECK(err == HPE_OK, "HTTP/1.1: the server's answers parse as responses");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture* f = new Fixture;  // one server for the process
  if (size == 0) return 0;
  const std::size_t writes = 1 + (data[0] & 7);
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);

  Handler& h = f->handler;
  h.expect_h2 = input.substr(0, kPreface.size()) == kPreface;
  h.connection_id = 0;
  h.last_sequence = 0;
  h.saw_head = false;
  h.requests = 0;

  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  FUZZ_CHECK(fd >= 0, "socket()");
  // The client closes first, so each input leaves a TIME_WAIT behind for a minute: source
  // addresses taken in turn from 127.0.1.0/24 keep libFuzzer's thousands of connections a second
  // from running out of (address, port) pairs.
  static std::uint32_t source = 0;
  sockaddr_in from{};
  from.sin_family = AF_INET;
  from.sin_addr.s_addr = htonl(0x7f000100u | (source++ & 0xffu));
  FUZZ_CHECK(::bind(fd, reinterpret_cast<const sockaddr*>(&from), sizeof from) == 0,
             "bind() to a loopback source address");
  // Non-blocking from the start: libFuzzer's SIGALRM (its -timeout watchdog) would interrupt a
  // blocking connect() with EINTR. On loopback the kernel completes it before the accept.
  FUZZ_CHECK(::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK) == 0, "O_NONBLOCK");
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&f->addr), sizeof f->addr) != 0) {
    FUZZ_CHECK(errno == EINPROGRESS || errno == EINTR, "connect() to the server");
    pollfd p{fd, POLLOUT, 0};
    while (::poll(&p, 1, -1) < 0) FUZZ_CHECK(errno == EINTR, "poll() for the connection");
    int error = 0;
    socklen_t len = sizeof error;
    FUZZ_CHECK(::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error == 0,
               "connected to the server");
  }

  std::string out;
  bool open = true;
  const std::size_t step = (input.size() + writes - 1) / writes;
  for (std::size_t pos = 0; open && pos < input.size(); pos += step) {
    open = write_all(*f, fd, input.substr(pos, step), out) && settle(*f, fd, out);
    h.answer_later();
    open = settle(*f, fd, out) && open;
  }
  ::shutdown(fd, SHUT_WR);
  // The server must close the connection now that the client has gone (no timer will do it).
  while (open) {
    (void)uv_run(&f->loop, UV_RUN_ONCE);
    open = drain(fd, out);
  }
  ::close(fd);
  while (f->server->connections() != 0) (void)uv_run(&f->loop, UV_RUN_ONCE);
  h.later.clear();  // stale now
  if (h.connection_id != 0) h.previous_connection_id = h.connection_id;

  check_output(h, input, out);
  // FANOUT_FUZZ_VERBOSE=1: what each input did, to see what a corpus reaches.
  static const bool verbose = std::getenv("FANOUT_FUZZ_VERBOSE") != nullptr;
  if (verbose) {
    std::fprintf(stderr, "%s: %zu request(s), %zu bytes back: %.*s\n", h.expect_h2 ? "h2" : "h1",
                 h.requests, out.size(),
                 static_cast<int>(out.find_first_of("\r\n") == std::string::npos
                                      ? std::min<std::size_t>(out.size(), 40)
                                      : std::min<std::size_t>(out.find_first_of("\r\n"), 40)),
                 out.data());
  }
  return 0;
}
