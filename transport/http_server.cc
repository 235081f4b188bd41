#include "transport/http_server.h"

#include <llhttp.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstring>
#include <deque>
#include <utility>

namespace fanout::transport {

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
// HTTP/2 stops serialising frames while this much output waits for the socket, and resumes on
// on_stream_drained: a client that does not read cannot make the server buffer without bound.
constexpr std::size_t kMaxBufferedOutput = 1 << 20;
constexpr std::int32_t kH2StreamWindow = 1 << 20;
// How long an HTTP/1.1 connection the server decided to close keeps reading (and discarding)
// after its last answer, waiting for the client to close first. Closing a socket with unread
// input makes the kernel send RST, which can destroy the answer (a 413, say) before the
// client reads it: the "lingering close" of Apache and nginx.
constexpr std::uint64_t kLingerMs = 2000;
// After answering an HTTP/2 request early (413, 431), the server reads and drops up to this
// much more of its body before ending the stream with RST_STREAM(NO_ERROR). RFC 9113 §8.1
// allows the reset at once, but some clients (curl 7.88) then report an error instead of the
// answer they already have; letting a moderate upload finish keeps the answer visible.
constexpr std::size_t kMaxDiscard = 1 << 20;
constexpr std::int32_t kH2ConnectionWindow = 16 << 20;
// The largest header block the server sends (its answers' headers come from the handler):
// nghttp2's default, set explicitly. A larger one fails the answer.
constexpr std::size_t kMaxSendHeaderBlock = 64 * 1024;
// A header block decoding to more than this many times max_header_bytes ends the connection.
constexpr std::size_t kHeaderAbuseFactor = 4;
// nghttp2_session_mem_recv's answer to too many CONTINUATION frames (NGHTTP2_ERR_TOO_MANY_
// CONTINUATIONS, an enumerator only headers with the CVE-2024-28182 fix declare).
constexpr ssize_t kErrTooManyContinuations = -905;

char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

void append_number(std::string& out, std::uint64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

// The body the server itself answers limit and parse errors with.
std::string_view error_body(int status) noexcept {
  switch (status) {
    case 400:
      return "bad request\n";
    case 408:
      return "request timeout\n";
    case 413:
      return "request body too large\n";
    case 431:
      return "request header fields too large\n";
    default:
      return "error\n";
  }
}

// Offsets of one header in a request's buffer (views are made once the buffer stops growing).
struct HeaderRef {
  std::uint32_t name_off = 0;
  std::uint32_t name_len = 0;
  std::uint32_t value_off = 0;
  std::uint32_t value_len = 0;
};

void make_views(const std::string& buf, const std::vector<HeaderRef>& refs,
                std::vector<HttpHeaderView>& views) {
  views.clear();
  for (const HeaderRef& r : refs) {
    views.push_back({std::string_view(buf).substr(r.name_off, r.name_len),
                     std::string_view(buf).substr(r.value_off, r.value_len)});
  }
}

}  // namespace

std::string_view to_string(HttpVersion v) noexcept {
  return v == HttpVersion::kHttp2 ? "h2" : "http/1.1";
}

std::string_view HttpRequest::header(std::string_view name) const noexcept {
  for (const HttpHeaderView& h : headers) {
    if (iequals(h.name, name)) return h.value;
  }
  return {};
}

// --- Session: the protocol half of a connection --------------------------------------------------

class HttpServer::Session {
 public:
  virtual ~Session() = default;
  virtual void feed(const std::uint8_t* data, std::size_t len) = 0;
  virtual bool respond(std::uint64_t id, int status, std::span<const HttpHeaderView> headers,
                       std::string_view body) = 0;
  virtual bool reset(std::uint64_t id, std::uint32_t code) = 0;
  virtual bool goaway(std::uint64_t id, GoawayMode mode) = 0;
  [[nodiscard]] virtual bool pending(std::uint64_t id) const = 0;
  // The server is draining: take no new request, close once the accepted ones are answered.
  virtual void drain() = 0;
  // Everything written so far reached the kernel.
  virtual void on_drained() = 0;
  // No request in progress and no answer owed (the connection's output aside).
  [[nodiscard]] virtual bool idle() const = 0;
  // Nonzero, and distinct per request, while a request is being received whose timeout the
  // connection itself carries (HTTP/1.1); 0 otherwise.
  [[nodiscard]] virtual std::uint64_t request_in_progress() const = 0;
  // request_timeout_ms ran out for the request in progress (HTTP/2: for `stream_id`).
  virtual void on_request_timeout(std::int32_t stream_id) = 0;
  // The connection's output drained after the session stopped taking input for it (HTTP/1.1
  // keeps the rest of a read it stopped in): go on. Input may stop again.
  virtual void resume_input() {}
};

// --- Connection: one accepted stream, protocol detection, closing --------------------------------

class HttpServer::Connection final : public StreamHandler {
 public:
  Connection(HttpServer& server, std::uint32_t slot, std::uint32_t generation, std::uint64_t id)
      : server_(server), slot_(slot), generation_(generation), id_(id) {
    linger_node_.conn = idle_node_.conn = request_node_.conn = write_node_.conn = this;
  }

  void on_stream_open(Stream& stream) override;
  void on_stream_data(Stream& stream, const std::uint8_t* data, std::size_t len) override;
  void on_stream_drained(Stream& stream) override;
  void on_stream_error(Stream& stream, StreamError error, std::string_view detail) override;
  void on_stream_closed(Stream& stream) override;

  // Closes the socket now; unsent output is dropped.
  void close_now() {
    if (closing_) return;
    closing_ = true;
    update_timeouts();
    stream_->close();
  }
  // Closes once every byte written so far is handed to the kernel. With `linger`, then waits
  // up to kLingerMs for the client to close, discarding its input.
  void close_after_flush(bool linger = false) {
    if (closing_ || lingering_) return;
    linger_after_flush_ = linger;
    if (pending_output() == 0) {
      flushed_for_close();
    } else {
      close_when_flushed_ = true;
    }
  }
  void flushed_for_close() {
    if (linger_after_flush_) {
      lingering_ = true;
      update_timeouts();
      server_.timeout_add(kLingerTimeout, linger_node_);
    } else {
      close_now();
    }
  }
  void drain();
  // max_unsent_output_bytes passed: stop reading until the output drains.
  [[nodiscard]] bool output_over_bound() const {
    const std::size_t bound = server_.options_.max_unsent_output_bytes;
    return bound != 0 && pending_output() > bound;
  }
  void pause_input() {
    if (read_paused_ || closing_) return;
    read_paused_ = true;
    ++server_.read_pauses_;
    stream_->pause_reading();
  }
  // Puts the connection in the idle or request FIFO, or neither, as its state says. Called
  // after every event that may change that state; O(1), and no timer call when nothing changed.
  void update_timeouts();
  void on_timeout(TimeoutKind kind, std::int32_t stream_id);
  void receive(const std::uint8_t* data, std::size_t len);

  // Output. Under TLS, writes made inside a batch are gathered and encrypted as one write when
  // the outermost batch ends: one TLS record per batch instead of one per HTTP/2 frame or
  // HTTP/1.1 answer. In cleartext the Stream's own buffer already gathers them.
  void write(const void* data, std::size_t len) {
    if (batch_depth_ > 0 && stream_->is_tls()) {
      batch_.append(static_cast<const char*>(data), len);
    } else {
      stream_->write(data, len);
    }
  }
  [[nodiscard]] std::size_t pending_output() const {
    return stream_->pending_output() + batch_.size();
  }
  class Batch {
   public:
    explicit Batch(Connection& c) : c_(c) { ++c_.batch_depth_; }
    ~Batch() {
      if (--c_.batch_depth_ != 0 || c_.batch_.empty()) return;
      if (!c_.closing_) c_.stream_->write(c_.batch_.data(), c_.batch_.size());
      c_.batch_.clear();
    }
    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

   private:
    Connection& c_;
  };

  void dispatch(const HttpRequest& request, std::uint64_t id) {
    server_.handler_->on_request(request, HttpResponder(&server_, slot_, generation_, id));
  }

  HttpServer& server_;
  Stream* stream_ = nullptr;
  std::uint32_t slot_;
  std::uint32_t generation_;
  std::uint64_t id_;
  char peer_text_[46] = {};   // INET6_ADDRSTRLEN
  std::string_view peer_ip_;  // in peer_text_, set at accept
  bool closing_ = false;
  bool close_when_flushed_ = false;
  bool linger_after_flush_ = false;
  bool lingering_ = false;    // answers written; waiting for the client's EOF
  bool read_paused_ = false;  // pause_input(): until the output drains
  // Entries in the server's timeout FIFOs.
  TimeoutNode linger_node_;
  TimeoutNode idle_node_;
  TimeoutNode request_node_;
  TimeoutNode write_node_;  // output waiting for the client
  std::string detect_;      // cleartext bytes matching a prefix of the HTTP/2 preface, so far
  int batch_depth_ = 0;
  std::string batch_;
  std::unique_ptr<Session> session_;

 private:
  void start(HttpVersion version);
};

// --- HTTP/1.1 ------------------------------------------------------------------------------------

class HttpServer::Http1Session final : public HttpServer::Session {
 public:
  explicit Http1Session(Connection& conn) : conn_(conn) {
    llhttp_init(&parser_, HTTP_REQUEST, &settings());
    parser_.data = this;
  }

  void feed(const std::uint8_t* data, std::size_t len) override;
  bool respond(std::uint64_t seq, int status, std::span<const HttpHeaderView> headers,
               std::string_view body) override;
  bool reset(std::uint64_t seq, std::uint32_t code) override;
  bool goaway(std::uint64_t seq, GoawayMode mode) override;
  [[nodiscard]] bool pending(std::uint64_t seq) const override {
    return !conn_.closing_ && find(seq) != nullptr && !find(seq)->answered;
  }
  void drain() override;
  void on_drained() override {}
  [[nodiscard]] bool idle() const override {
    return !in_message_ && queue_.empty() && !stop_input_ && held_.empty() && !output_paused_;
  }
  void resume_input() override;
  [[nodiscard]] std::uint64_t request_in_progress() const override {
    return in_message_ && !stop_input_ ? next_seq_ : 0;
  }
  void on_request_timeout(std::int32_t /*stream_id*/) override {
    if (in_message_ && !stop_input_) fail(408);
  }

 private:
  // A request handed to the handler (or an error answer), waiting for its turn to be written.
  struct Pending {
    bool answered = false;
    bool close_after = false;   // "Connection: close": the last answer on this connection
    bool client_close = false;  // ... because the client asked for it (no lingering needed)
    bool head = false;          // HEAD: no body in the answer
    std::string bytes;          // the serialised answer, when answered out of order
  };

  static const llhttp_settings_t& settings();
  static Http1Session& of(llhttp_t* p) { return *static_cast<Http1Session*>(p->data); }
  static int on_message_begin(llhttp_t* p);
  static int on_url(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_field(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_field_complete(llhttp_t* p);
  static int on_header_value(llhttp_t* p, const char* at, std::size_t len);
  static int on_header_value_complete(llhttp_t* p);
  static int on_headers_complete(llhttp_t* p);
  static int on_body(llhttp_t* p, const char* at, std::size_t len);
  static int on_message_complete(llhttp_t* p);

  [[nodiscard]] const Pending* find(std::uint64_t seq) const {
    if (seq < head_seq_ || seq - head_seq_ >= queue_.size() || seq > last_seq_) return nullptr;
    return &queue_[seq - head_seq_];
  }
  bool add_header_bytes(std::size_t n);
  void finish_header();
  void serialize(std::string& out, int status, std::span<const HttpHeaderView> headers,
                 std::string_view body, bool head, bool close);
  void fail(int status);
  // An answer from the server itself (limits, on_headers), the last on the connection.
  void fail_with(int status, std::span<const HttpHeaderView> headers, std::string_view body);
  void pump();
  void stop_after(std::uint64_t last);

  Connection& conn_;
  llhttp_t parser_{};
  // The request being parsed: target, then header names and values back to back.
  std::string buf_;
  std::size_t url_len_ = 0;
  std::size_t header_bytes_ = 0;
  std::vector<HeaderRef> refs_;
  HeaderRef cur_;
  bool in_field_ = false;
  bool have_header_ = false;  // cur_ has a complete name
  std::vector<HttpHeaderView> views_;
  std::string body_;
  int error_status_ = 0;  // a limit was hit: answer this instead of 400
  // Answers, in request order. queue_[i] is request head_seq_ + i.
  std::deque<Pending> queue_;
  std::uint64_t head_seq_ = 1;
  std::uint64_t next_seq_ = 1;
  std::uint64_t last_seq_ = UINT64_MAX;  // requests after it are never answered
  bool stop_input_ = false;              // no further request is read
  bool in_message_ = false;              // a request's first byte came, its last not yet
  // Output past max_unsent_output_bytes: parsing stopped after a request; the rest of that
  // read (and any later plaintext) waits here until the output drains.
  bool output_paused_ = false;
  std::string held_;
  std::string scratch_;
};

const llhttp_settings_t& HttpServer::Http1Session::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t v;
    llhttp_settings_init(&v);
    v.on_message_begin = on_message_begin;
    v.on_url = on_url;
    v.on_header_field = on_header_field;
    v.on_header_field_complete = on_header_field_complete;
    v.on_header_value = on_header_value;
    v.on_header_value_complete = on_header_value_complete;
    v.on_headers_complete = on_headers_complete;
    v.on_body = on_body;
    v.on_message_complete = on_message_complete;
    return v;
  }();
  return s;
}

int HttpServer::Http1Session::on_message_begin(llhttp_t* p) {
  Http1Session& s = of(p);
  s.in_message_ = true;
  s.buf_.clear();
  s.url_len_ = 0;
  s.header_bytes_ = 0;
  s.refs_.clear();
  s.in_field_ = false;
  s.have_header_ = false;
  s.body_.clear();
  s.error_status_ = 0;
  return 0;
}

bool HttpServer::Http1Session::add_header_bytes(std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= conn_.server_.options_.max_header_bytes) return true;
  error_status_ = 431;
  return false;
}

int HttpServer::Http1Session::on_url(llhttp_t* p, const char* at, std::size_t len) {
  Http1Session& s = of(p);
  if (!s.add_header_bytes(len)) return -1;
  s.buf_.append(at, len);
  s.url_len_ += len;
  return 0;
}

int HttpServer::Http1Session::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  Http1Session& s = of(p);
  if (!s.add_header_bytes(len)) return -1;
  if (!s.in_field_) {
    s.finish_header();  // a previous header whose value callbacks never came (empty value)
    s.in_field_ = true;
    s.cur_ = HeaderRef{};
    s.cur_.name_off = static_cast<std::uint32_t>(s.buf_.size());
  }
  s.buf_.append(at, len);
  s.cur_.name_len += static_cast<std::uint32_t>(len);
  return 0;
}

int HttpServer::Http1Session::on_header_field_complete(llhttp_t* p) {
  Http1Session& s = of(p);
  s.in_field_ = false;
  s.have_header_ = true;
  s.cur_.value_off = static_cast<std::uint32_t>(s.buf_.size());
  return s.add_header_bytes(4) ? 0 : -1;  // ": " and CRLF
}

int HttpServer::Http1Session::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  Http1Session& s = of(p);
  if (!s.add_header_bytes(len)) return -1;
  s.buf_.append(at, len);
  s.cur_.value_len += static_cast<std::uint32_t>(len);
  return 0;
}

int HttpServer::Http1Session::on_header_value_complete(llhttp_t* p) {
  of(p).finish_header();
  return 0;
}

void HttpServer::Http1Session::finish_header() {
  if (!have_header_) return;
  have_header_ = false;
  refs_.push_back(cur_);
}

int HttpServer::Http1Session::on_headers_complete(llhttp_t* p) {
  Http1Session& s = of(p);
  s.finish_header();
  // Upgrade (h2c, websocket) is not offered: the request is an ordinary one.
  p->upgrade = 0;
  const std::size_t max_body = s.conn_.server_.options_.max_body_bytes;
  if ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > max_body) {
    s.error_status_ = 413;
    return -1;
  }
  if (((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0) ||
      (p->flags & F_CHUNKED) != 0) {
    // A body follows: the handler may refuse the request on its headers first.
    make_views(s.buf_, s.refs_, s.views_);
    HttpRequest head;
    head.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
    head.target = std::string_view(s.buf_).substr(0, s.url_len_);
    head.headers = s.views_;
    head.authority = head.header("host");
    head.version = HttpVersion::kHttp1;
    head.tls = s.conn_.stream_->is_tls();
    head.connection_id = s.conn_.id_;
    head.peer_ip = s.conn_.peer_ip_;
    head.sequence = s.next_seq_;
    const EarlyAnswer early = s.conn_.server_.handler_->on_headers(head);
    if (early.status != 0) {
      s.fail_with(early.status, early.headers, early.body);
      return HPE_PAUSED;  // stop_input_: nothing more is parsed
    }
  }
  // "Expect: 100-continue" is answered only when no earlier answer is still owed: an interim
  // response must not overtake the answers to pipelined requests before it.
  if (s.queue_.empty() && p->http_minor >= 1) {
    for (const HeaderRef& r : s.refs_) {
      const std::string_view name = std::string_view(s.buf_).substr(r.name_off, r.name_len);
      const std::string_view value = std::string_view(s.buf_).substr(r.value_off, r.value_len);
      if (iequals(name, "expect") && iequals(value, "100-continue")) {
        constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        s.conn_.write(kContinue.data(), kContinue.size());
        break;
      }
    }
  }
  return 0;
}

int HttpServer::Http1Session::on_body(llhttp_t* p, const char* at, std::size_t len) {
  Http1Session& s = of(p);
  if (s.body_.size() + len > s.conn_.server_.options_.max_body_bytes) {
    s.error_status_ = 413;
    return -1;
  }
  s.body_.append(at, len);
  return 0;
}

int HttpServer::Http1Session::on_message_complete(llhttp_t* p) {
  Http1Session& s = of(p);
  s.in_message_ = false;
  const std::uint64_t seq = s.next_seq_++;
  const bool keep_alive = llhttp_should_keep_alive(p) != 0;
  Pending& entry = s.queue_.emplace_back();
  entry.close_after = entry.client_close = !keep_alive;
  entry.head = p->method == HTTP_HEAD;
  if (s.queue_.size() > s.conn_.server_.options_.max_concurrent_streams) {
    s.conn_.close_now();  // a client pipelining without reading answers
    return HPE_PAUSED;
  }
  if (!keep_alive) s.stop_after(seq);

  make_views(s.buf_, s.refs_, s.views_);
  HttpRequest req;
  req.method = llhttp_method_name(static_cast<llhttp_method_t>(p->method));
  req.target = std::string_view(s.buf_).substr(0, s.url_len_);
  req.headers = s.views_;
  req.authority = req.header("host");
  req.body = s.body_;
  req.version = HttpVersion::kHttp1;
  req.tls = s.conn_.stream_->is_tls();
  req.connection_id = s.conn_.id_;
  req.peer_ip = s.conn_.peer_ip_;
  req.sequence = seq;
  s.conn_.dispatch(req, seq);
  if (s.conn_.closing_ || s.stop_input_) return HPE_PAUSED;
  if (s.conn_.output_over_bound()) {
    s.output_paused_ = true;  // feed() keeps the rest of the read
    return HPE_PAUSED;
  }
  return 0;
}

void HttpServer::Http1Session::feed(const std::uint8_t* data, std::size_t len) {
  if (stop_input_) return;
  const char* p = reinterpret_cast<const char*>(data);
  if (output_paused_) {
    held_.append(p, len);  // TLS may hand over more plaintext from the same read
    return;
  }
  const llhttp_errno_t err = llhttp_execute(&parser_, p, len);
  if (err == HPE_PAUSED && output_paused_ && !conn_.closing_ && !stop_input_) {
    const char* at = llhttp_get_error_pos(&parser_);
    held_.append(at, static_cast<std::size_t>(p + len - at));
    conn_.pause_input();
    return;
  }
  if (err == HPE_OK || err == HPE_PAUSED || conn_.closing_ || stop_input_) return;
  fail(error_status_ != 0 ? error_status_ : 400);
}

void HttpServer::Http1Session::resume_input() {
  if (!output_paused_) return;
  output_paused_ = false;
  llhttp_resume(&parser_);
  const std::string rest = std::move(held_);
  held_.clear();
  if (!rest.empty()) feed(reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size());
}

// A request that cannot be handed to the handler: answered by the server after the answers
// still owed, and the last one on the connection.
void HttpServer::Http1Session::fail(int status) {
  fail_with(status, {}, error_body(status));
}

void HttpServer::Http1Session::fail_with(int status, std::span<const HttpHeaderView> headers,
                                         std::string_view body) {
  const std::uint64_t seq = next_seq_++;
  Pending& entry = queue_.emplace_back();
  entry.answered = true;
  entry.close_after = true;
  serialize(entry.bytes, status, headers, body, false, true);
  stop_after(seq);
  pump();
}

// Requests after `last` are dropped unanswered, and no further input is read.
void HttpServer::Http1Session::stop_after(std::uint64_t last) {
  stop_input_ = true;
  if (last >= last_seq_) return;
  last_seq_ = last;
  while (!queue_.empty() && head_seq_ + queue_.size() - 1 > last_seq_) queue_.pop_back();
  if (!queue_.empty() && !queue_.back().answered) queue_.back().close_after = true;
}

void HttpServer::Http1Session::serialize(std::string& out, int status,
                                         std::span<const HttpHeaderView> headers,
                                         std::string_view body, bool head, bool close) {
  out.clear();
  out.append("HTTP/1.1 ");
  append_number(out, static_cast<std::uint64_t>(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\n");
  for (const HttpHeaderView& h : headers) {
    out.append(h.name);
    out.append(": ");
    out.append(h.value);
    out.append("\r\n");
  }
  out.append("content-length: ");
  append_number(out, body.size());
  out.append(close ? "\r\nconnection: close\r\n\r\n" : "\r\n\r\n");
  if (!head) out.append(body);
}

bool HttpServer::Http1Session::respond(std::uint64_t seq, int status,
                                       std::span<const HttpHeaderView> headers,
                                       std::string_view body) {
  if (conn_.closing_ || status < 200 || status > 999) return false;
  if (seq < head_seq_ || seq - head_seq_ >= queue_.size() || seq > last_seq_) return false;
  Pending& entry = queue_[seq - head_seq_];
  if (entry.answered) return false;
  entry.answered = true;
  const Connection::Batch batch(conn_);
  if (seq == head_seq_) {
    // In order (the common case): straight to the stream.
    serialize(scratch_, status, headers, body, entry.head, entry.close_after);
    conn_.write(scratch_.data(), scratch_.size());
    const bool close = entry.close_after;
    const bool linger = !entry.client_close;
    queue_.pop_front();
    ++head_seq_;
    if (close) {
      queue_.clear();
      conn_.close_after_flush(linger);
      return true;
    }
  } else {
    serialize(entry.bytes, status, headers, body, entry.head, entry.close_after);
  }
  pump();
  return true;
}

// Writes every answer at the head of the queue that is ready; closes after the last one.
void HttpServer::Http1Session::pump() {
  while (!queue_.empty() && queue_.front().answered && !conn_.closing_) {
    Pending& entry = queue_.front();
    conn_.write(entry.bytes.data(), entry.bytes.size());
    const bool close = entry.close_after;
    const bool linger = !entry.client_close;
    queue_.pop_front();
    ++head_seq_;
    if (close) {
      queue_.clear();
      conn_.close_after_flush(linger);
      return;
    }
  }
  if (queue_.empty() && stop_input_) conn_.close_after_flush(true);
}

bool HttpServer::Http1Session::reset(std::uint64_t seq, std::uint32_t /*code*/) {
  if (!pending(seq)) return false;
  conn_.close_now();
  return true;
}

bool HttpServer::Http1Session::goaway(std::uint64_t seq, GoawayMode mode) {
  if (conn_.closing_) return false;
  if (mode == GoawayMode::kImmediate) {
    conn_.close_now();
    return true;
  }
  // Everything up to this request is still answered (earlier ones may be pending).
  stop_after(std::max(seq, head_seq_ - 1));
  pump();
  return true;
}

void HttpServer::Http1Session::drain() {
  stop_after(next_seq_ - 1);
  pump();
}

// --- HTTP/2 --------------------------------------------------------------------------------------

class HttpServer::Http2Session final : public HttpServer::Session {
 public:
  explicit Http2Session(Connection& conn);
  ~Http2Session() override {
    for (const auto& req : pool_) conn_.server_.timeout_remove(kRequestTimeout, req->timeout);
    nghttp2_session_del(session_);
  }
  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  [[nodiscard]] bool ok() const noexcept { return session_ != nullptr; }
  void feed(const std::uint8_t* data, std::size_t len) override;
  bool respond(std::uint64_t id, int status, std::span<const HttpHeaderView> headers,
               std::string_view body) override;
  bool reset(std::uint64_t id, std::uint32_t code) override;
  bool goaway(std::uint64_t id, GoawayMode mode) override;
  [[nodiscard]] bool pending(std::uint64_t id) const override;
  void drain() override { (void)goaway(0, GoawayMode::kGraceful); }
  void on_drained() override { send(); }
  [[nodiscard]] bool idle() const override {
    return !goaway_sent_ && pool_.size() == free_.size();  // no open stream
  }
  [[nodiscard]] std::uint64_t request_in_progress() const override { return 0; }
  void on_request_timeout(std::int32_t stream_id) override;
  // Serialises queued frames into the stream; closes when nghttp2 wants neither to read nor
  // to write (GOAWAY done).
  void send();

 private:
  // One request stream. Pooled per connection: the buffers keep their capacity across requests.
  struct Request {
    std::int32_t stream_id = 0;
    std::string buf;  // header names and values back to back
    std::vector<HeaderRef> refs;
    HeaderRef method, path, authority;  // pseudo-headers (name unused)
    std::vector<HttpHeaderView> views;
    std::string body;
    std::size_t header_bytes = 0;
    int error_status = 0;  // a limit was hit
    bool dispatched = false;
    bool answered = false;
    std::string out_body;  // the answer's body, read by nghttp2 through read_body
    std::size_t out_off = 0;
    std::size_t discarded = 0;  // body bytes dropped after an early answer
    TimeoutNode timeout;        // in the request FIFO until dispatched or answered
  };

  static int on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame, void* user_data);
  static int on_header(nghttp2_session* s, const nghttp2_frame* frame, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t flags, void* user_data);
  static int on_data_chunk(nghttp2_session* s, std::uint8_t flags, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void* user_data);
  static int on_frame_recv(nghttp2_session* s, const nghttp2_frame* frame, void* user_data);
  static int on_stream_close(nghttp2_session* s, std::int32_t stream_id, std::uint32_t error_code,
                             void* user_data);
  static ssize_t read_body(nghttp2_session* s, std::int32_t stream_id, std::uint8_t* buf,
                           std::size_t length, std::uint32_t* data_flags,
                           nghttp2_data_source* source, void* user_data);

  [[nodiscard]] Request* request(std::int32_t stream_id) const {
    return static_cast<Request*>(nghttp2_session_get_stream_user_data(session_, stream_id));
  }
  // The request as the handler sees it (sequence not set).
  [[nodiscard]] HttpRequest view(Request& req);
  void complete(Request& req);
  bool submit(Request& req, int status, std::span<const HttpHeaderView> headers,
              std::string_view body);
  void after_submit() {
    if (!in_recv_) send();
  }

  Connection& conn_;
  nghttp2_session* session_ = nullptr;
  bool in_recv_ = false;  // inside mem_recv: sending waits until it returns
  // Decoded bytes of the header block being received (any HEADERS frame, trailers included).
  std::size_t block_bytes_ = 0;
  bool calm_ = false;  // a callback failed mem_recv for abuse: GOAWAY(ENHANCE_YOUR_CALM)
  bool goaway_sent_ = false;
  std::int32_t goaway_last_ = 0;  // the last-stream-id our GOAWAY named
  bool terminated_ = false;       // GoawayMode::kImmediate
  std::uint64_t requests_ = 0;
  std::vector<std::unique_ptr<Request>> pool_;
  std::vector<Request*> free_;
  std::vector<nghttp2_nv> nva_;
};

HttpServer::Http2Session::Http2Session(Connection& conn) : conn_(conn) {
  nghttp2_session_callbacks* cbs = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return;
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  // Flood limits, explicit rather than whatever the library defaults to. RFC 9113's field
  // validation (no_rfc9113_leading_and_trailing_ws_validation, no_http_messaging) stays on.
  const HttpServerOptions& o = conn_.server_.options_;
  nghttp2_option* opt = nullptr;
  if (nghttp2_option_new(&opt) != 0) {
    nghttp2_session_callbacks_del(cbs);
    return;
  }
  nghttp2_option_set_max_settings(opt, o.h2_max_settings_entries);
  nghttp2_option_set_max_outbound_ack(opt, o.h2_max_queued_acks);
  nghttp2_option_set_max_send_header_block_length(opt, kMaxSendHeaderBlock);
  // A library whose fixes came without their setters (configure's probe found the fixes by
  // behaviour) keeps its own defaults: 1000 and 33 per second, 8.
#if defined(FANOUT_NGHTTP2_HAS_STREAM_RESET_RATE_LIMIT) && \
    FANOUT_NGHTTP2_HAS_STREAM_RESET_RATE_LIMIT
  nghttp2_option_set_stream_reset_rate_limit(opt, o.h2_reset_burst, o.h2_reset_rate);
#endif
#if defined(FANOUT_NGHTTP2_HAS_MAX_CONTINUATIONS) && FANOUT_NGHTTP2_HAS_MAX_CONTINUATIONS
  nghttp2_option_set_max_continuations(opt, o.h2_max_continuations);
#endif
  const int rc = nghttp2_session_server_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  if (rc != 0) {
    session_ = nullptr;
    return;
  }
  const nghttp2_settings_entry iv[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, o.max_concurrent_streams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kH2StreamWindow)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<std::uint32_t>(std::min<std::size_t>(o.max_header_bytes, UINT32_MAX))},
  };
  (void)nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, iv, std::size(iv));
  (void)nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kH2ConnectionWindow);
}

int HttpServer::Http2Session::on_begin_headers(nghttp2_session* s, const nghttp2_frame* frame,
                                               void* user_data) {
  auto& self = *static_cast<Http2Session*>(user_data);
  self.block_bytes_ = 0;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Request* req;
  if (!self.free_.empty()) {
    req = self.free_.back();
    self.free_.pop_back();
  } else {
    req = self.pool_.emplace_back(std::make_unique<Request>()).get();
  }
  req->stream_id = frame->hd.stream_id;
  req->buf.clear();
  req->refs.clear();
  req->method = req->path = req->authority = HeaderRef{};
  req->body.clear();
  req->header_bytes = 0;
  req->error_status = 0;
  req->dispatched = req->answered = false;
  req->out_body.clear();
  req->out_off = 0;
  req->discarded = 0;
  nghttp2_session_set_stream_user_data(s, frame->hd.stream_id, req);
  if (self.conn_.server_.options_.request_timeout_ms != 0) {
    req->timeout.conn = &self.conn_;
    req->timeout.stream_id = req->stream_id;
    self.conn_.server_.timeout_add(kRequestTimeout, req->timeout);
  }
  return 0;
}

int HttpServer::Http2Session::on_header(nghttp2_session* /*s*/, const nghttp2_frame* frame,
                                        const std::uint8_t* name, std::size_t namelen,
                                        const std::uint8_t* value, std::size_t valuelen,
                                        std::uint8_t /*flags*/, void* user_data) {
  auto& self = *static_cast<Http2Session*>(user_data);
  // Far past the advertised SETTINGS_MAX_HEADER_LIST_SIZE: not a client to answer 431 to, but
  // an HPACK bomb or a flood. Decoding the rest of the block would be wasted work.
  const std::size_t limit = self.conn_.server_.options_.max_header_bytes;
  self.block_bytes_ += namelen + valuelen + 4;
  if (self.block_bytes_ / kHeaderAbuseFactor > limit) {
    self.calm_ = true;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    return 0;  // trailers are accepted and ignored
  }
  Request* req = self.request(frame->hd.stream_id);
  if (req == nullptr || req->error_status != 0) return 0;
  req->header_bytes += namelen + valuelen + 4;
  if (req->header_bytes > limit) {
    req->error_status = 431;
    return 0;
  }
  HeaderRef ref;
  ref.name_off = static_cast<std::uint32_t>(req->buf.size());
  ref.name_len = static_cast<std::uint32_t>(namelen);
  req->buf.append(reinterpret_cast<const char*>(name), namelen);
  ref.value_off = static_cast<std::uint32_t>(req->buf.size());
  ref.value_len = static_cast<std::uint32_t>(valuelen);
  req->buf.append(reinterpret_cast<const char*>(value), valuelen);
  const std::string_view n(reinterpret_cast<const char*>(name), namelen);
  if (n.empty() || n[0] != ':') {
    req->refs.push_back(ref);
  } else if (n == ":method") {
    req->method = ref;
  } else if (n == ":path") {
    req->path = ref;
  } else if (n == ":authority") {
    req->authority = ref;
  }
  return 0;
}

int HttpServer::Http2Session::on_data_chunk(nghttp2_session* /*s*/, std::uint8_t /*flags*/,
                                            std::int32_t stream_id, const std::uint8_t* data,
                                            std::size_t len, void* user_data) {
  auto& self = *static_cast<Http2Session*>(user_data);
  Request* req = self.request(stream_id);
  if (req == nullptr) return 0;
  if (req->answered) {
    const bool over = req->discarded <= kMaxDiscard && req->discarded + len > kMaxDiscard;
    req->discarded += len;
    if (over) {
      (void)nghttp2_submit_rst_stream(self.session_, NGHTTP2_FLAG_NONE, stream_id,
                                      NGHTTP2_NO_ERROR);
    }
    return 0;
  }
  if (req->body.size() + len > self.conn_.server_.options_.max_body_bytes) {
    (void)self.submit(*req, 413, {}, error_body(413));
    return 0;
  }
  req->body.append(reinterpret_cast<const char*>(data), len);
  return 0;
}

int HttpServer::Http2Session::on_frame_recv(nghttp2_session* /*s*/, const nghttp2_frame* frame,
                                            void* user_data) {
  auto& self = *static_cast<Http2Session*>(user_data);
  if (self.conn_.closing_) return NGHTTP2_ERR_CALLBACK_FAILURE;
  if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
  Request* req = self.request(frame->hd.stream_id);
  if (req == nullptr) return 0;
  if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
      !req->answered) {
    if (req->error_status != 0) {
      (void)self.submit(*req, req->error_status, {}, error_body(req->error_status));
      return 0;
    }
    for (const HeaderRef& r : req->refs) {
      if (std::string_view(req->buf).substr(r.name_off, r.name_len) != "content-length") continue;
      std::uint64_t declared = 0;
      const char* v = req->buf.data() + r.value_off;
      std::from_chars(v, v + r.value_len, declared);
      if (declared > self.conn_.server_.options_.max_body_bytes) {
        (void)self.submit(*req, 413, {}, error_body(413));
        return 0;
      }
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) {
      // A body follows: the handler may refuse the request on its headers first.
      HttpRequest head = self.view(*req);
      head.sequence = self.requests_ + 1;
      const EarlyAnswer early = self.conn_.server_.handler_->on_headers(head);
      if (early.status != 0) {
        (void)self.submit(*req, early.status, early.headers, early.body);
        return 0;
      }
    }
  }
  if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 && !req->answered) self.complete(*req);
  return self.conn_.closing_ ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

HttpRequest HttpServer::Http2Session::view(Request& req) {
  make_views(req.buf, req.refs, req.views);
  const std::string_view buf(req.buf);
  HttpRequest r;
  r.method = buf.substr(req.method.value_off, req.method.value_len);
  r.target = buf.substr(req.path.value_off, req.path.value_len);
  r.authority = buf.substr(req.authority.value_off, req.authority.value_len);
  r.headers = req.views;
  if (r.authority.empty()) r.authority = r.header("host");
  r.body = req.body;
  r.version = HttpVersion::kHttp2;
  r.tls = conn_.stream_->is_tls();
  r.connection_id = conn_.id_;
  r.peer_ip = conn_.peer_ip_;
  return r;
}

void HttpServer::Http2Session::complete(Request& req) {
  if (goaway_sent_ && req.stream_id > goaway_last_) {
    // Opened before our GOAWAY reached the client, above its last-stream-id: not processed
    // (RFC 9113 §6.8), and said so, so that the client retries it on a new connection.
    req.answered = true;
    conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
    (void)nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, req.stream_id,
                                    NGHTTP2_REFUSED_STREAM);
    after_submit();
    return;
  }
  req.dispatched = true;
  conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
  HttpRequest r = view(req);
  r.sequence = ++requests_;
  conn_.dispatch(r, static_cast<std::uint64_t>(req.stream_id));
}

int HttpServer::Http2Session::on_stream_close(nghttp2_session* /*s*/, std::int32_t stream_id,
                                              std::uint32_t /*error_code*/, void* user_data) {
  auto& self = *static_cast<Http2Session*>(user_data);
  if (Request* req = self.request(stream_id)) {
    self.conn_.server_.timeout_remove(kRequestTimeout, req->timeout);
    req->stream_id = 0;
    self.free_.push_back(req);
  }
  return 0;
}

ssize_t HttpServer::Http2Session::read_body(nghttp2_session* /*s*/, std::int32_t /*stream_id*/,
                                            std::uint8_t* buf, std::size_t length,
                                            std::uint32_t* data_flags, nghttp2_data_source* source,
                                            void* /*user_data*/) {
  auto& req = *static_cast<Request*>(source->ptr);
  const std::size_t n = std::min(length, req.out_body.size() - req.out_off);
  std::memcpy(buf, req.out_body.data() + req.out_off, n);
  req.out_off += n;
  if (req.out_off == req.out_body.size()) *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

bool HttpServer::Http2Session::submit(Request& req, int status,
                                      std::span<const HttpHeaderView> headers,
                                      std::string_view body) {
  req.answered = true;
  conn_.server_.timeout_remove(kRequestTimeout, req.timeout);
  char status_buf[4];
  status_buf[0] = static_cast<char>('0' + status / 100);
  status_buf[1] = static_cast<char>('0' + status / 10 % 10);
  status_buf[2] = static_cast<char>('0' + status % 10);
  char length_buf[24];
  const auto len_end = std::to_chars(length_buf, length_buf + sizeof length_buf, body.size()).ptr;
  auto nv = [](std::string_view n, std::string_view v) {
    return nghttp2_nv{reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                      reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(),
                      v.size(), NGHTTP2_NV_FLAG_NONE};
  };
  nva_.clear();
  nva_.push_back(nv(":status", std::string_view(status_buf, 3)));
  for (const HttpHeaderView& h : headers) nva_.push_back(nv(h.name, h.value));
  nva_.push_back(nv("content-length", std::string_view(length_buf, len_end)));

  const std::string_view method =
      std::string_view(req.buf).substr(req.method.value_off, req.method.value_len);
  const bool send_body = !body.empty() && method != "HEAD";
  int rc;
  if (send_body) {
    req.out_body.assign(body);
    req.out_off = 0;
    nghttp2_data_provider prd;
    prd.source.ptr = &req;
    prd.read_callback = read_body;
    rc = nghttp2_submit_response(session_, req.stream_id, nva_.data(), nva_.size(), &prd);
  } else {
    rc = nghttp2_submit_response(session_, req.stream_id, nva_.data(), nva_.size(), nullptr);
  }
  after_submit();
  return rc == 0;
}

bool HttpServer::Http2Session::pending(std::uint64_t id) const {
  if (conn_.closing_ || id == 0 || id > INT32_MAX) return false;
  const Request* req = request(static_cast<std::int32_t>(id));
  return req != nullptr && req->dispatched && !req->answered;
}

bool HttpServer::Http2Session::respond(std::uint64_t id, int status,
                                       std::span<const HttpHeaderView> headers,
                                       std::string_view body) {
  if (status < 200 || status > 999 || !pending(id)) return false;
  return submit(*request(static_cast<std::int32_t>(id)), status, headers, body);
}

bool HttpServer::Http2Session::reset(std::uint64_t id, std::uint32_t code) {
  if (!pending(id)) return false;
  Request& req = *request(static_cast<std::int32_t>(id));
  req.answered = true;
  const int rc = nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, req.stream_id, code);
  after_submit();
  return rc == 0;
}

bool HttpServer::Http2Session::goaway(std::uint64_t /*id*/, GoawayMode mode) {
  if (conn_.closing_) return false;
  const std::int32_t last = nghttp2_session_get_last_proc_stream_id(session_);
  // Streams above `last` that are still to come out of this read are refused, not processed:
  // the client re-sends them elsewhere, so the handler must never have seen them.
  if (!goaway_sent_) goaway_last_ = last;
  int rc;
  if (mode == GoawayMode::kImmediate) {
    rc = nghttp2_session_terminate_session2(session_, last, NGHTTP2_NO_ERROR);
    terminated_ = true;
  } else {
    if (goaway_sent_) return true;
    rc = nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, last, NGHTTP2_NO_ERROR, nullptr, 0);
  }
  goaway_sent_ = true;
  after_submit();
  return rc == 0;
}

// The request took too long: 408 without a body (HEADERS with END_STREAM), then
// RST_STREAM(NO_ERROR) so that the client stops sending (RFC 9113 §8.1).
void HttpServer::Http2Session::on_request_timeout(std::int32_t stream_id) {
  Request* req = request(stream_id);
  if (req == nullptr || req->answered || req->dispatched) return;
  (void)submit(*req, 408, {}, {});
  if (conn_.closing_ || request(stream_id) == nullptr) return;
  (void)nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_NO_ERROR);
  after_submit();
}

void HttpServer::Http2Session::feed(const std::uint8_t* data, std::size_t len) {
  in_recv_ = true;
  const ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
  in_recv_ = false;
  if (conn_.closing_) return;
  if (rv < 0) {
    // A fatal error: nghttp2 reads nothing more and queued no GOAWAY (it does for the protocol
    // errors it answers itself, and returns success then). PING or SETTINGS acknowledgements
    // piling up (NGHTTP2_ERR_FLOODED) mean a client that does not read what it asked for (or
    // sent h2_max_queued_acks of them in one read): a GOAWAY would wait behind them and a
    // lingering close for a flush that may never come, so close at once. Otherwise say why
    // (floods: ENHANCE_YOUR_CALM), then close.
    if (rv == NGHTTP2_ERR_FLOODED) {
      conn_.close_now();
      return;
    }
    const bool calm = calm_ || rv == kErrTooManyContinuations;
    (void)nghttp2_session_terminate_session(session_, calm ? NGHTTP2_ENHANCE_YOUR_CALM
                                                      : rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC
                                                          ? NGHTTP2_PROTOCOL_ERROR
                                                          : NGHTTP2_INTERNAL_ERROR);
  }
  send();
  if (rv < 0) conn_.close_after_flush(true);
}

void HttpServer::Http2Session::send() {
  if (conn_.closing_) return;
  const Connection::Batch batch(conn_);
  while (conn_.pending_output() < kMaxBufferedOutput) {
    const std::uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      conn_.close_now();
      return;
    }
    if (n == 0) break;
    conn_.write(data, static_cast<std::size_t>(n));
    if (conn_.closing_) return;
  }
  if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
    // Streams the client opened after our GOAWAY may still be arriving: linger, unless the
    // handler asked for an immediate end.
    conn_.close_after_flush(!terminated_);
  }
}

// --- Connection ----------------------------------------------------------------------------------

void HttpServer::Connection::on_stream_open(Stream& stream) {
  stream_ = &stream;
  if (server_.stopping_) {
    close_now();
    return;
  }
  if (stream.is_tls()) start(stream.alpn() == "h2" ? HttpVersion::kHttp2 : HttpVersion::kHttp1);
  update_timeouts();
}

void HttpServer::Connection::start(HttpVersion version) {
  if (version == HttpVersion::kHttp1) {
    session_ = std::make_unique<Http1Session>(*this);
    return;
  }
  auto h2 = std::make_unique<Http2Session>(*this);
  if (!h2->ok()) {
    close_now();
    return;
  }
  Http2Session* raw = h2.get();
  session_ = std::move(h2);
  raw->send();  // the server's SETTINGS
}

void HttpServer::Connection::on_stream_data(Stream& /*stream*/, const std::uint8_t* data,
                                            std::size_t len) {
  if (closing_ || lingering_) return;
  receive(data, len);
  if (output_over_bound()) pause_input();
  update_timeouts();
}

void HttpServer::Connection::receive(const std::uint8_t* data, std::size_t len) {
  const Batch batch(*this);
  if (!session_) {
    // Cleartext: the HTTP/2 preface, or the first byte that differs from it, decides.
    const std::size_t have = detect_.size();
    const std::size_t n = std::min(len, kPreface.size() - have);
    const bool match = std::memcmp(data, kPreface.data() + have, n) == 0;
    if (match && have + n < kPreface.size()) {
      detect_.append(reinterpret_cast<const char*>(data), len);
      return;
    }
    start(match ? HttpVersion::kHttp2 : HttpVersion::kHttp1);
    if (closing_) return;
    if (!detect_.empty()) {
      const std::string buffered = std::move(detect_);
      detect_.clear();
      session_->feed(reinterpret_cast<const std::uint8_t*>(buffered.data()), buffered.size());
      if (closing_) return;
    }
  }
  session_->feed(data, len);
}

void HttpServer::Connection::on_stream_drained(Stream& /*stream*/) {
  if (close_when_flushed_) {
    close_when_flushed_ = false;
    flushed_for_close();
    return;
  }
  if (session_ && !closing_) session_->on_drained();
  if (read_paused_ && !closing_ && pending_output() == 0) {
    read_paused_ = false;
    {
      const Batch batch(*this);
      if (session_) session_->resume_input();  // may stop again (then read_paused_ is set)
    }
    if (!read_paused_ && !closing_) stream_->resume_reading();
  }
  update_timeouts();
}

void HttpServer::Connection::on_stream_error(Stream& /*stream*/, StreamError /*error*/,
                                             std::string_view /*detail*/) {
  // Peer resets, EOF and TLS failures are ordinary for a server: nothing to report.
  closing_ = true;
}

void HttpServer::Connection::on_stream_closed(Stream& /*stream*/) {
  HttpServer& server = server_;
  const std::uint32_t slot = slot_;
  server.timeout_remove(kLingerTimeout, linger_node_);
  server.timeout_remove(kIdleTimeout, idle_node_);
  server.timeout_remove(kRequestTimeout, request_node_);
  server.timeout_remove(kWriteTimeout, write_node_);
  delete this;
  server.connection_gone(slot);
}

void HttpServer::Connection::drain() {
  if (closing_ || lingering_) return;
  if (!session_) {
    close_now();  // nothing received yet: idle
    return;
  }
  session_->drain();
  update_timeouts();
}

void HttpServer::Connection::update_timeouts() {
  bool idle = false;
  std::uint64_t request = 0;
  if (!closing_ && !lingering_ && !close_when_flushed_) {
    if (!session_) {
      idle = detect_.empty();  // accepted, or in the TLS handshake
      request = detect_.empty() ? 0 : 1;
    } else {
      idle = session_->idle() && pending_output() == 0;
      request = session_->request_in_progress();
    }
  }
  const HttpServerOptions& o = server_.options_;
  if (idle && o.idle_timeout_ms != 0) {
    if (!idle_node_.linked) server_.timeout_add(kIdleTimeout, idle_node_);
  } else {
    server_.timeout_remove(kIdleTimeout, idle_node_);
  }
  if (request != 0 && o.request_timeout_ms != 0) {
    if (!request_node_.linked || request_node_.key != request) {
      server_.timeout_remove(kRequestTimeout, request_node_);
      request_node_.key = request;
      server_.timeout_add(kRequestTimeout, request_node_);
    }
  } else {
    server_.timeout_remove(kRequestTimeout, request_node_);
  }
  // Output waiting for the client: closed unless it drains within write_timeout_ms. (Linked
  // once per wait, not per write: a connection that keeps some output pending the whole time
  // times out even while it drains slowly.)
  if (!closing_ && o.write_timeout_ms != 0 && pending_output() > 0) {
    if (!write_node_.linked) server_.timeout_add(kWriteTimeout, write_node_);
  } else {
    server_.timeout_remove(kWriteTimeout, write_node_);
  }
}

void HttpServer::Connection::on_timeout(TimeoutKind kind, std::int32_t stream_id) {
  if (closing_) return;
  if (kind == kLingerTimeout) {
    close_now();
    return;
  }
  if (kind == kWriteTimeout) {
    ++server_.write_timeouts_;
    close_now();
    return;
  }
  if (!session_) {
    close_now();  // idle, or a partial HTTP/2 preface
    return;
  }
  {
    const Batch batch(*this);
    if (kind == kIdleTimeout) {
      // HTTP/2: GOAWAY(NO_ERROR), closed once written; HTTP/1.1: closed now.
      (void)session_->goaway(0, GoawayMode::kImmediate);
    } else {
      session_->on_request_timeout(stream_id);
    }
  }
  update_timeouts();
}

// --- HttpResponder -------------------------------------------------------------------------------

bool HttpResponder::respond(int status, std::span<const HttpHeaderView> headers,
                            std::string_view body) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->respond(id_, status, headers, body);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::reset(std::uint32_t h2_error_code) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->reset(id_, h2_error_code);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::close_connection() const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_) return false;
  c->close_now();
  return true;
}

bool HttpResponder::goaway(GoawayMode mode) const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  const bool ok = c->session_->goaway(id_, mode);
  c->update_timeouts();
  return ok;
}

bool HttpResponder::pending() const {
  HttpServer::Connection* c = server_ != nullptr ? server_->find(slot_, generation_) : nullptr;
  if (c == nullptr || c->closing_ || !c->session_) return false;
  return c->session_->pending(id_);
}

// --- HttpServer ----------------------------------------------------------------------------------

HttpServer::HttpServer(StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler)
    : loop_(loop), options_(std::move(options)), handler_(handler) {}

HttpServer::~HttpServer() {
  assert(listener_closed_ && timer_closed_ && live_connections_ == 0 &&
         "HttpServer freed before its close callback");
}

tl::expected<std::unique_ptr<HttpServer>, std::string> HttpServer::create(
    StreamLoop& loop, HttpServerOptions options, HttpRequestHandler* handler) {
  sockaddr_storage addr{};
  const std::string where = options.host + ":" + std::to_string(options.port);
  if (uv_ip4_addr(options.host.c_str(), options.port, reinterpret_cast<sockaddr_in*>(&addr)) != 0 &&
      uv_ip6_addr(options.host.c_str(), options.port, reinterpret_cast<sockaddr_in6*>(&addr)) !=
          0) {
    return tl::unexpected("listen " + where + ": not a numeric IP address");
  }
  if (options.tls && !options.tls->is_server()) {
    return tl::unexpected("listen " + where + ": the TLS context is not a server context");
  }
  std::unique_ptr<HttpServer> server(new HttpServer(loop, std::move(options), handler));
  auto* tcp = new uv_tcp_t;
  uv_tcp_init(loop.uv(), tcp);
  tcp->data = server.get();
  server->listener_ = tcp;
  server->listener_closed_ = false;
  int rc = uv_tcp_bind(tcp, reinterpret_cast<const sockaddr*>(&addr), 0);
  if (rc == 0)
    rc = uv_listen(reinterpret_cast<uv_stream_t*>(tcp), server->options_.backlog, on_connection);
  if (rc != 0) {
    // The handle outlives the server: its close callback frees it on the next loop run.
    tcp->data = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(tcp), on_listener_closed);
    server->listener_ = nullptr;
    server->listener_closed_ = true;
    return tl::unexpected("listen " + where + ": " + uv_strerror(rc));
  }
  server->timer_ = new uv_timer_t;
  uv_timer_init(loop.uv(), server->timer_);
  server->timer_->data = server.get();
  uv_unref(reinterpret_cast<uv_handle_t*>(server->timer_));
  server->timer_closed_ = false;
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  server->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
  return server;
}

void HttpServer::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<HttpServer*>(server->data);
  if (self == nullptr || status < 0 || self->stopping_) return;
  self->accept_one();
}

void HttpServer::accept_one() {
  if (options_.max_connections != 0 && live_connections_ >= options_.max_connections) {
    // At the cap: accepted and closed at once, so the client learns now (a connection left in
    // the backlog would wait there, and fill it for everyone).
    auto* t = new uv_tcp_t;
    uv_tcp_init(loop_.uv(), t);
    (void)uv_accept(reinterpret_cast<uv_stream_t*>(listener_), reinterpret_cast<uv_stream_t*>(t));
    uv_close(reinterpret_cast<uv_handle_t*>(t),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_tcp_t*>(h); });
    ++refused_;
    return;
  }
  std::uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  auto* conn = new Connection(*this, slot, slots_[slot].generation, next_connection_id_++);
  slots_[slot].conn = conn;
  ++live_connections_;
  auto st = Stream::accept(loop_, reinterpret_cast<uv_stream_t*>(listener_), options_.tls, conn);
  if (!st) {
    // No handler call follows a synchronous failure.
    delete conn;
    connection_gone(slot);
    return;
  }
  conn->stream_ = *st;
  conn->peer_ip_ = conn->stream_->peer_ip(conn->peer_text_, sizeof conn->peer_text_);
  conn->update_timeouts();  // idle from the accept (under TLS, the handshake counts as idle)
}

void HttpServer::stop_listening() {
  stopping_ = true;
  if (listener_ == nullptr) return;
  uv_close(reinterpret_cast<uv_handle_t*>(listener_), on_listener_closed);
  listener_ = nullptr;
}

void HttpServer::on_listener_closed(uv_handle_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  delete reinterpret_cast<uv_tcp_t*>(handle);
  if (self == nullptr) return;
  self->listener_closed_ = true;
  self->maybe_finished();
}

void HttpServer::connection_gone(std::uint32_t slot) {
  slots_[slot].conn = nullptr;
  ++slots_[slot].generation;
  free_slots_.push_back(slot);
  --live_connections_;
  maybe_finished();
}

std::uint64_t HttpServer::timeout_ms(TimeoutKind kind) const noexcept {
  switch (kind) {
    case kLingerTimeout:
      return kLingerMs;
    case kIdleTimeout:
      return options_.idle_timeout_ms;
    case kWriteTimeout:
      return options_.write_timeout_ms;
    default:
      return options_.request_timeout_ms;
  }
}

void HttpServer::timeout_add(TimeoutKind kind, TimeoutNode& node) {
  assert(!node.linked);
  TimeoutList& list = timeouts_[kind];
  const std::uint64_t now = uv_now(loop_.uv());
  node.deadline = now + timeout_ms(kind);
  node.linked = true;
  node.next = nullptr;
  node.prev = list.tail;
  (list.tail != nullptr ? list.tail->next : list.head) = &node;
  list.tail = &node;
  // The timer callback re-arms itself for whatever it leaves queued.
  if (timer_ != nullptr && !in_timer_ && node.deadline < timer_due_) {
    timer_due_ = node.deadline;
    uv_timer_start(timer_, on_timer, node.deadline - now, 0);
  }
}

void HttpServer::timeout_remove(TimeoutKind kind, TimeoutNode& node) {
  if (!node.linked) return;
  TimeoutList& list = timeouts_[kind];
  node.linked = false;
  (node.prev != nullptr ? node.prev->next : list.head) = node.next;
  (node.next != nullptr ? node.next->prev : list.tail) = node.prev;
  node.prev = node.next = nullptr;
}

void HttpServer::on_timer(uv_timer_t* timer) {
  auto* self = static_cast<HttpServer*>(timer->data);
  const std::uint64_t now = uv_now(self->loop_.uv());
  self->in_timer_ = true;
  self->timer_due_ = UINT64_MAX;
  for (int k = 0; k < kTimeoutKinds; ++k) {
    const auto kind = static_cast<TimeoutKind>(k);
    while (TimeoutNode* n = self->timeouts_[kind].head) {
      if (n->deadline > now) break;
      self->timeout_remove(kind, *n);
      n->conn->on_timeout(kind, n->stream_id);
    }
  }
  self->in_timer_ = false;
  std::uint64_t due = UINT64_MAX;
  for (const TimeoutList& list : self->timeouts_) {
    if (list.head != nullptr) due = std::min(due, list.head->deadline);
  }
  if (due != UINT64_MAX && self->timer_ != nullptr) {
    // Entries added by the callbacks above are due later than `now`.
    self->timer_due_ = due;
    uv_timer_start(timer, on_timer, due - now, 0);
  }
}

void HttpServer::on_timer_closed(uv_handle_t* handle) {
  auto* self = static_cast<HttpServer*>(handle->data);
  delete reinterpret_cast<uv_timer_t*>(handle);
  self->timer_closed_ = true;
  self->maybe_finished();
}

// The close callback runs once the listener, every connection and the timer are closed; each
// callback given to drain() or close() runs at most once.
void HttpServer::maybe_finished() {
  if (!stopping_ || !listener_closed_ || live_connections_ != 0) return;
  if (timer_ != nullptr) {
    uv_close(reinterpret_cast<uv_handle_t*>(timer_), on_timer_closed);
    timer_ = nullptr;
    return;
  }
  if (!timer_closed_) return;
  finished_ = true;
  const CloseCallback cb = close_callback_;
  close_callback_ = nullptr;
  if (cb != nullptr) cb(this, close_data_);
}

HttpServer::Connection* HttpServer::find(std::uint32_t slot,
                                         std::uint32_t generation) const noexcept {
  if (slot >= slots_.size() || slots_[slot].generation != generation) return nullptr;
  return slots_[slot].conn;
}

void HttpServer::drain(CloseCallback callback, void* data) {
  stop(callback, data, &Connection::drain);
}

void HttpServer::close(CloseCallback callback, void* data) {
  stop(callback, data, &Connection::close_now);
}

void HttpServer::stop(CloseCallback callback, void* data, void (Connection::*each)()) {
  close_callback_ = callback;
  close_data_ = data;
  stop_listening();
  for (const Slot& s : slots_) {
    if (s.conn != nullptr) (s.conn->*each)();
  }
  maybe_finished();
}

}  // namespace fanout::transport
