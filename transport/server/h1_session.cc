// HttpServer::H1Session: HTTP/1.1 on llhttp. Requests are parsed into one buffer (target,
// then header names and values back to back) and handed to the handler whole; answers wait in
// queue_ until every earlier one is written, so they leave in request order.
#include <llhttp.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <string>
#include <utility>

#include "transport/server/http_server_internal.h"

namespace fanout::transport {

using http_server_detail::error_body;
using http_server_detail::find_header;
using http_server_detail::HeaderRef;
using http_server_detail::iequals;
using http_server_detail::make_views;

namespace {

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

}  // namespace

class HttpServer::H1Session final : public HttpServer::Session {
 public:
  explicit H1Session(Connection& conn) : conn_(conn) {
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
  static H1Session& of(llhttp_t* p) { return *static_cast<H1Session*>(p->data); }
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
  // The request parsed so far as the handler sees it, body aside (views_ made already).
  [[nodiscard]] HttpRequest request(const llhttp_t& p, std::uint64_t sequence) const {
    HttpRequest r;
    r.method = llhttp_method_name(static_cast<llhttp_method_t>(p.method));
    r.target = std::string_view(buf_).substr(0, url_len_);
    r.headers = views_;
    r.authority = find_header(r.headers, "host");
    r.version = HttpVersion::kHttp1;
    r.tls = conn_.stream_->is_tls();
    r.connection_id = conn_.id_;
    r.peer_ip = conn_.peer_ip_;
    r.sequence = sequence;
    return r;
  }
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

const llhttp_settings_t& HttpServer::H1Session::settings() {
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

int HttpServer::H1Session::on_message_begin(llhttp_t* p) {
  H1Session& s = of(p);
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

bool HttpServer::H1Session::add_header_bytes(std::size_t n) {
  header_bytes_ += n;
  if (header_bytes_ <= conn_.server_.options_.max_header_bytes) return true;
  error_status_ = 431;
  return false;
}

int HttpServer::H1Session::on_url(llhttp_t* p, const char* at, std::size_t len) {
  H1Session& s = of(p);
  if (!s.add_header_bytes(len)) return -1;
  s.buf_.append(at, len);
  s.url_len_ += len;
  return 0;
}

int HttpServer::H1Session::on_header_field(llhttp_t* p, const char* at, std::size_t len) {
  H1Session& s = of(p);
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

int HttpServer::H1Session::on_header_field_complete(llhttp_t* p) {
  H1Session& s = of(p);
  s.in_field_ = false;
  s.have_header_ = true;
  s.cur_.value_off = static_cast<std::uint32_t>(s.buf_.size());
  return s.add_header_bytes(4) ? 0 : -1;  // ": " and CRLF
}

int HttpServer::H1Session::on_header_value(llhttp_t* p, const char* at, std::size_t len) {
  H1Session& s = of(p);
  if (!s.add_header_bytes(len)) return -1;
  s.buf_.append(at, len);
  s.cur_.value_len += static_cast<std::uint32_t>(len);
  return 0;
}

int HttpServer::H1Session::on_header_value_complete(llhttp_t* p) {
  of(p).finish_header();
  return 0;
}

void HttpServer::H1Session::finish_header() {
  if (!have_header_) return;
  have_header_ = false;
  refs_.push_back(cur_);
}

int HttpServer::H1Session::on_headers_complete(llhttp_t* p) {
  H1Session& s = of(p);
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
    const HttpRequest head = s.request(*p, s.next_seq_);
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

int HttpServer::H1Session::on_body(llhttp_t* p, const char* at, std::size_t len) {
  H1Session& s = of(p);
  if (s.body_.size() + len > s.conn_.server_.options_.max_body_bytes) {
    s.error_status_ = 413;
    return -1;
  }
  s.body_.append(at, len);
  return 0;
}

int HttpServer::H1Session::on_message_complete(llhttp_t* p) {
  H1Session& s = of(p);
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
  HttpRequest req = s.request(*p, seq);
  req.body = s.body_;
  s.conn_.dispatch(req, seq);
  if (s.conn_.closing_ || s.stop_input_) return HPE_PAUSED;
  if (s.conn_.output_over_bound()) {
    s.output_paused_ = true;  // feed() keeps the rest of the read
    return HPE_PAUSED;
  }
  return 0;
}

void HttpServer::H1Session::feed(const std::uint8_t* data, std::size_t len) {
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

void HttpServer::H1Session::resume_input() {
  if (!output_paused_) return;
  output_paused_ = false;
  llhttp_resume(&parser_);
  const std::string rest = std::move(held_);
  held_.clear();
  if (!rest.empty()) feed(reinterpret_cast<const std::uint8_t*>(rest.data()), rest.size());
}

// A request that cannot be handed to the handler: answered by the server after the answers
// still owed, and the last one on the connection.
void HttpServer::H1Session::fail(int status) {
  fail_with(status, {}, error_body(status));
}

void HttpServer::H1Session::fail_with(int status, std::span<const HttpHeaderView> headers,
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
void HttpServer::H1Session::stop_after(std::uint64_t last) {
  stop_input_ = true;
  if (last >= last_seq_) return;
  last_seq_ = last;
  while (!queue_.empty() && head_seq_ + queue_.size() - 1 > last_seq_) queue_.pop_back();
  if (!queue_.empty() && !queue_.back().answered) queue_.back().close_after = true;
}

void HttpServer::H1Session::serialize(std::string& out, int status,
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

bool HttpServer::H1Session::respond(std::uint64_t seq, int status,
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
void HttpServer::H1Session::pump() {
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

bool HttpServer::H1Session::reset(std::uint64_t seq, std::uint32_t /*code*/) {
  if (!pending(seq)) return false;
  conn_.close_now();
  return true;
}

bool HttpServer::H1Session::goaway(std::uint64_t seq, GoawayMode mode) {
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

void HttpServer::H1Session::drain() {
  stop_after(next_seq_ - 1);
  pump();
}

std::unique_ptr<HttpServer::Session> HttpServer::Session::make_http1(Connection& conn) {
  return std::make_unique<H1Session>(conn);
}

}  // namespace fanout::transport
