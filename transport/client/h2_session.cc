// HTTP/2 client session: nghttp2 frames requests and parses responses; it does no I/O. Frames
// go to the connection's Stream, which buffers them and flushes once per loop turn. Request
// bodies are never copied into nghttp2: DATA frames are written straight from the caller's body
// (NGHTTP2_DATA_FLAG_NO_COPY and the send_data callback).
#include <algorithm>
#include <cassert>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string_view>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

#include "transport/client/client_internal.h"

namespace fanout::transport {

// One pass without branches, so a name costs a few instructions a byte whatever its case.
std::string_view lower_header_name(std::string_view name, char* out) noexcept {
  for (std::size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    const unsigned char upper = static_cast<unsigned char>(c - 'A') < 26 ? 0x20 : 0;
    out[i] = static_cast<char>(c | upper);
  }
  return {out, name.size()};
}

namespace {

// Past this many unflushed bytes the session stops producing frames until the stream drains.
constexpr std::size_t kWriteHighWater = 1 << 20;
// Our receive windows: responses are small, but a generous window avoids WINDOW_UPDATE churn.
constexpr std::int32_t kStreamWindow = 1 << 20;
constexpr std::int32_t kConnectionWindow = 1 << 24;

nghttp2_nv make_nv(std::string_view name, std::string_view value, std::uint8_t flags) {
  nghttp2_nv nv;
  nv.name = reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data()));
  nv.namelen = name.size();
  nv.value = reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data()));
  nv.valuelen = value.size();
  nv.flags = flags;
  return nv;
}

// nghttp2's allocations for one session. A request costs nghttp2 about six small blocks (stream,
// outbound item, the header copy, inflater buffers...), all freed when its stream closes, so
// they are recycled through per-size-class free lists: a pop and a push instead of a glibc
// malloc and free each. One session, one loop thread: no locking. Blocks above 4 KiB, and any
// beyond kMaxFree kept per class, go to malloc/free as before.
class H2Memory {
 public:
  H2Memory() = default;
  H2Memory(const H2Memory&) = delete;
  H2Memory& operator=(const H2Memory&) = delete;
  ~H2Memory() {
    for (Free*& list : free_) {
      while (Free* f = list) {
        list = f->next;
        Header* h = header_of(f);
        expose(f, capacity(*h));
        std::free(h);
      }
    }
  }

  nghttp2_mem* mem() noexcept { return &mem_; }

 private:
  static constexpr std::size_t kClasses = 7;  // 64, 128, ..., 4096 bytes
  static constexpr std::size_t kMaxFree = 1024;
  // Before each block: its class (kClasses for a large one) and, if large, its size. 16 bytes,
  // so the block keeps malloc's alignment.
  struct alignas(16) Header {
    std::size_t cls;
    std::size_t size;
  };
  struct Free {
    Free* next;
  };

  static std::size_t class_of(std::size_t n) noexcept {
    std::size_t k = 0;
    while (k < kClasses && (std::size_t{64} << k) < n) ++k;
    return k;
  }
  static std::size_t capacity(const Header& h) noexcept {
    return h.cls < kClasses ? std::size_t{64} << h.cls : h.size;
  }
  static Header* header_of(void* p) noexcept { return static_cast<Header*>(p) - 1; }

  // Under ASan, a block's bytes beyond what was asked for, and a free block's beyond its link,
  // stay poisoned, so nghttp2 overruns and use-after-free are still reported.
  static void expose(void* p, std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
    ASAN_UNPOISON_MEMORY_REGION(p, n);
#endif
    (void)p;
    (void)n;
  }
  static void hide(void* p, std::size_t n) noexcept {
#if defined(__SANITIZE_ADDRESS__)
    ASAN_POISON_MEMORY_REGION(p, n);
#endif
    (void)p;
    (void)n;
  }

  void* allocate(std::size_t n) noexcept {
    const std::size_t k = class_of(n);
    void* p = nullptr;
    if (k < kClasses && free_[k] != nullptr) {
      Free* f = free_[k];
      expose(f, sizeof(Free));
      free_[k] = f->next;
      --count_[k];
      p = f;
    } else {
      const std::size_t cap = k < kClasses ? std::size_t{64} << k : n;
      auto* h = static_cast<Header*>(std::malloc(sizeof(Header) + cap));
      if (h == nullptr) return nullptr;
      h->cls = k;
      h->size = cap;
      p = h + 1;
    }
    const std::size_t cap = capacity(*header_of(p));
    expose(p, n);
    hide(static_cast<char*>(p) + n, cap - n);
    return p;
  }

  void release(void* p) noexcept {
    if (p == nullptr) return;
    Header* h = header_of(p);
    const std::size_t cap = capacity(*h);
    if (h->cls < kClasses && count_[h->cls] < kMaxFree) {
      expose(p, sizeof(Free));
      auto* f = static_cast<Free*>(p);
      f->next = free_[h->cls];
      free_[h->cls] = f;
      ++count_[h->cls];
      hide(static_cast<char*>(p) + sizeof(Free), cap - sizeof(Free));
      return;
    }
    expose(p, cap);
    std::free(h);
  }

  void* reallocate(void* p, std::size_t n) noexcept {
    if (p == nullptr) return allocate(n);
    if (n == 0) {
      release(p);
      return nullptr;
    }
    const std::size_t cap = capacity(*header_of(p));
    if (n <= cap) {
      expose(p, n);
      hide(static_cast<char*>(p) + n, cap - n);
      return p;
    }
    void* q = allocate(n);
    if (q == nullptr) return nullptr;
    expose(p, cap);  // the old block's bytes past what was last asked for are copied too
    std::memcpy(q, p, cap);
    release(p);
    return q;
  }

  static H2Memory& self(void* user_data) noexcept {
    return *static_cast<H2Memory*>(user_data);
  }

  Free* free_[kClasses] = {};
  std::size_t count_[kClasses] = {};
  nghttp2_mem mem_{
      this,
      [](std::size_t n, void* u) { return self(u).allocate(n); },
      [](void* p, void* u) { self(u).release(p); },
      [](std::size_t count, std::size_t size, void* u) -> void* {
        if (size != 0 && count > SIZE_MAX / size) return nullptr;
        void* p = self(u).allocate(count * size);
        if (p != nullptr) std::memset(p, 0, count * size);
        return p;
      },
      [](void* p, std::size_t n, void* u) { return self(u).reallocate(p, n); },
  };
};

}  // namespace

class ClientH2Session final : public ClientSession {
 public:
  explicit ClientH2Session(ClientConnection& conn) : conn_(conn) {}
  ~ClientH2Session() override {
    if (session_ != nullptr) nghttp2_session_del(session_);
  }

  Protocol protocol() const noexcept override { return Protocol::kHttp2; }

  void start() override {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, on_send);
    nghttp2_session_callbacks_set_send_data_callback(cbs, on_send_data);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option* opt = nullptr;
    nghttp2_option_new(&opt);
    // nghttp2's checks of HTTP messaging (every header's name and value, the pseudo-headers,
    // content-length against the DATA) are off: of a response this client reads :status alone,
    // and checks it itself (on_header); the rest cost ~1,900 instructions per response. HPACK
    // and the framing are checked as before.
    nghttp2_option_set_no_http_messaging(opt, 1);
    // Streams queued by nghttp2 beyond the peer's limit are ours to schedule: we track
    // capacity, so never exceed it silently.
    nghttp2_session_client_new3(&session_, cbs, this, opt, memory_.mem());
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    const nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<std::uint32_t>(kStreamWindow)},
    };
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
    send();
  }

  void submit(Request& r) override {
    const Origin& o = conn_.origin();
    const Client& client = conn_.client();
    // The name-value array is sized once per request and filled in place (a push_back per
    // header checked the capacity each time, out of line: ~190 instructions a request).
    constexpr std::size_t kFixed = 7;
    if (nva_.size() < kFixed + r.headers.size()) nva_.resize(kFixed + r.headers.size());
    nghttp2_nv* nv = nva_.data();
    *nv++ =
        make_nv(":method", "POST", NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE);
    *nv++ = make_nv(":scheme", o.tls() ? "https" : "http",
                    NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE);
    *nv++ = make_nv(":authority", o.authority(), NGHTTP2_NV_FLAG_NO_COPY_NAME);
    *nv++ = make_nv(":path", r.target, NGHTTP2_NV_FLAG_NO_COPY_NAME);
    *nv++ = make_nv("content-type", r.content_type, NGHTTP2_NV_FLAG_NO_COPY_NAME);
    // Copied by nghttp2 (no NO_COPY_VALUE): the buffer is the next request's too.
    const auto [length_end, ec] = std::to_chars(length_, length_ + sizeof length_, r.body.size());
    (void)ec;  // 20 digits hold any size_t
    *nv++ = make_nv("content-length",
                    std::string_view(length_, static_cast<std::size_t>(length_end - length_)),
                    NGHTTP2_NV_FLAG_NO_COPY_NAME);
    *nv++ = make_nv("user-agent", client.options().user_agent, NGHTTP2_NV_FLAG_NO_COPY_NAME);
    // Header names go lower-cased on the wire (RFC 9113): as the caller lowered them
    // (lower_name), or copied, lowered, into one reused buffer, sized once up front so the views
    // into it stay put (nghttp2 copies them again: the buffer is the next request's too).
    std::size_t need = 0;
    for (const HeaderView& h : r.headers) {
      if (h.lower_name.empty()) need += h.name.size();
    }
    if (lowered_.size() < need) lowered_.resize(std::max(need, 2 * lowered_.size()));
    char* out = lowered_.data();
    for (const HeaderView& h : r.headers) {
      std::string_view name = h.lower_name;
      if (name.empty()) {
        name = lower_header_name(h.name, out);
        out += name.size();
      }
      assert(std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
      const bool index = !h.never_index || first_time_on_connection(name);
      *nv++ = make_nv(name, h.value, index ? NGHTTP2_NV_FLAG_NONE : NGHTTP2_NV_FLAG_NO_INDEX);
    }
    const std::size_t nvlen = static_cast<std::size_t>(nv - nva_.data());
    nghttp2_data_provider prd;
    prd.source.ptr = &r;
    prd.read_callback = on_read_body;
    const std::int32_t id = nghttp2_submit_request(session_, nullptr, nva_.data(), nvlen,
                                                   r.body.empty() ? nullptr : &prd, &r);
    if (id < 0) {
      if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE) {
        accepting_ = false;
        conn_.origin().requeue(r);
      } else {
        r.failure_ = Failure::kProtocolError;
        r.detail_ = nghttp2_strerror(id);
        Client::finish(r);
      }
      return;
    }
    r.stream_id_ = id;
    inflight_.push_back(&r);
    // Requests submitted while input is processed (a completion resubmitting) are framed in
    // one nghttp2_session_send after mem_recv returns, not one each.
    if (!in_recv_) send();
  }

  void on_data(const std::uint8_t* data, std::size_t len) override {
    if (dead_) return;
    in_recv_ = true;
    const ssize_t rv = nghttp2_session_mem_recv(session_, data, len);
    in_recv_ = false;
    if (rv < 0) {
      conn_.abort(Failure::kProtocolError, nghttp2_strerror(static_cast<int>(rv)));
      return;
    }
    send();
  }

  void on_drained() override {
    if (blocked_) {
      blocked_ = false;
      send();
    }
  }

  void on_connection_lost(Failure f, std::string_view detail) override {
    dead_ = true;
    while (Request* r = inflight_.pop_front()) {
      nghttp2_session_set_stream_user_data(session_, r->stream_id_, nullptr);
      conn_.client().timers_.cancel(r->timer_);
      if (!r->sent_) {
        conn_.origin().requeue(*r);
      } else {
        r->failure_ = f;
        r->detail_ = std::string(detail);
        Client::finish(*r);
      }
    }
  }

  void cancel(Request& r, Failure f) override {
    nghttp2_session_set_stream_user_data(session_, r.stream_id_, nullptr);
    if (!dead_)
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, r.stream_id_, NGHTTP2_CANCEL);
    conn_.client().timers_.cancel(r.timer_);
    inflight_.remove(&r);
    send();
    conn_.request_done();
    conn_.client().settle(r, f);
  }

  std::size_t capacity() const noexcept override {
    const std::uint32_t peer =
        nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    return std::min<std::size_t>(peer, conn_.client().options().max_streams_per_connection);
  }
  std::size_t active() const noexcept override { return inflight_.size(); }
  bool accepting() const noexcept override { return accepting_ && !dead_; }

 private:
  void send() {
    if (dead_ || blocked_ || sending_) return;
    sending_ = true;
    const int rv = nghttp2_session_send(session_);
    sending_ = false;
    if (rv != 0) {
      conn_.abort(Failure::kProtocolError, nghttp2_strerror(rv));
      return;
    }
    if (nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0) {
      // Both sides sent GOAWAY and every stream is closed: nothing more can happen here.
      accepting_ = false;
      conn_.request_done();
    }
  }

  static ClientH2Session* self(void* user_data) { return static_cast<ClientH2Session*>(user_data); }

  static ssize_t on_send(nghttp2_session*, const std::uint8_t* data, std::size_t len, int,
                         void* user_data) {
    ClientH2Session* s = self(user_data);
    Stream* stream = s->conn_.stream();
    if (stream->pending_output() >= kWriteHighWater) {
      s->blocked_ = true;
      return NGHTTP2_ERR_WOULDBLOCK;
    }
    stream->write(data, len);
    return static_cast<ssize_t>(len);
  }

  static ssize_t on_read_body(nghttp2_session*, std::int32_t, std::uint8_t*, std::size_t length,
                              std::uint32_t* flags, nghttp2_data_source* source, void*) {
    auto* r = static_cast<Request*>(source->ptr);
    const std::size_t n = std::min(length, r->body.size() - r->body_offset_);
    r->body_offset_ += n;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (r->body_offset_ == r->body.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }

  static int on_send_data(nghttp2_session*, nghttp2_frame* frame, const std::uint8_t* framehd,
                          std::size_t length, nghttp2_data_source* source, void* user_data) {
    ClientH2Session* s = self(user_data);
    Stream* stream = s->conn_.stream();
    if (stream->pending_output() >= kWriteHighWater) {
      s->blocked_ = true;
      return NGHTTP2_ERR_WOULDBLOCK;
    }
    auto* r = static_cast<Request*>(source->ptr);
    // on_read_body already advanced the offset past this frame's bytes.
    const std::size_t start = r->body_offset_ - length;
    stream->write(framehd, 9);
    if (frame->data.padlen > 0) {
      const std::uint8_t pad_len = static_cast<std::uint8_t>(frame->data.padlen - 1);
      stream->write(&pad_len, 1);
    }
    stream->write(r->body.data() + start, length);
    if (frame->data.padlen > 1) {
      static const std::uint8_t kZeros[256] = {};
      stream->write(kZeros, frame->data.padlen - 1);
    }
    return 0;
  }

  static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    auto* r =
        static_cast<Request*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (r == nullptr || r->sent_) return 0;
    ClientH2Session* s = self(user_data);
    r->sent_ = true;
    r->sent_ns_ = ClockScope::now_ns();
    r->timer_.set_callback(
        [](TimerEntry&, void* data) noexcept {
          auto* req = static_cast<Request*>(data);
          req->conn_->cancel(*req, Failure::kResponseTimeout);
        },
        r);
    s->conn_.client().timers_.schedule_after(r->timer_,
                                             s->conn_.client().options().response_timeout_ms);
    return 0;
  }

  static int on_header(nghttp2_session* session, const nghttp2_frame* frame,
                       const std::uint8_t* name, std::size_t namelen, const std::uint8_t* value,
                       std::size_t valuelen, std::uint8_t, void*) {
    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || std::memcmp(name, ":status", 7) != 0) {
      return 0;
    }
    auto* r =
        static_cast<Request*>(nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
    if (r == nullptr) return 0;
    if (r->status_ != 0 && !r->status_in_block_) {
      // In trailers, after the final status's own block: malformed (RFC 9113 §8.1), but the
      // receiver had answered; as with a reset after the headers, the answer stands and the
      // stream is reset (INTERNAL_ERROR).
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    const int status =
        r->status_in_block_ ? 0 : parse_status({reinterpret_cast<const char*>(value), valuelen});
    r->status_in_block_ = true;
    if (status == 0) {
      // Not three digits from 100 to 599, or a second one in the block (RFC 9113 §8.3: once
      // each): the response is malformed, whatever the block said before. The stream is reset
      // (INTERNAL_ERROR); the attempt fails, retryable.
      r->status_ = 0;
      r->failure_ = Failure::kProtocolError;
      r->detail_ = "a malformed :status";
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (status >= 200) r->status_ = status;  // 1xx: the final response follows in a next block
    return 0;
  }

  // A response's status code: three digits, 100 to 599 (RFC 9110 §15); 0 when it is not one.
  static int parse_status(std::string_view v) noexcept {
    if (v.size() != 3) return 0;
    int status = 0;
    for (const char c : v) {
      if (c < '0' || c > '9') return 0;
      status = status * 10 + (c - '0');
    }
    return status >= 100 && status <= 599 ? status : 0;
  }

  static int on_frame_recv(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
    ClientH2Session* s = self(user_data);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        auto* r = static_cast<Request*>(
            nghttp2_session_get_stream_user_data(session, frame->hd.stream_id));
        if (r != nullptr) r->status_in_block_ = false;  // the block ends: a next one may have one
        // Headers met the response timeout; the same span again bounds the body, so a
        // receiver that stalls its body cannot hold the stream forever.
        if (r != nullptr && r->status_ != 0) {
          s->conn_.client().timers_.schedule_after(r->timer_,
                                                   s->conn_.client().options().response_timeout_ms);
        }
        break;
      }
      case NGHTTP2_GOAWAY:
        // Streams above last-stream-id are closed by nghttp2 with REFUSED_STREAM and re-queued
        // in on_stream_close; the rest may still complete here.
        s->accepting_ = false;
        s->conn_.request_done();
        break;
      case NGHTTP2_SETTINGS:
        // The peer's stream limit may have changed.
        s->conn_.request_done();
        break;
      default:
        break;
    }
    return 0;
  }

  static int on_data_chunk(nghttp2_session* session, std::uint8_t, std::int32_t stream_id,
                           const std::uint8_t* data, std::size_t len, void*) {
    auto* r = static_cast<Request*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (r == nullptr) return 0;
    const std::size_t cap = r->max_body_excerpt;
    const std::size_t room = cap > r->body_excerpt_.size() ? cap - r->body_excerpt_.size() : 0;
    r->body_excerpt_.append(reinterpret_cast<const char*>(data), std::min(room, len));
    return 0;
  }

  static int on_stream_close(nghttp2_session* session, std::int32_t stream_id,
                             std::uint32_t error_code, void* user_data) {
    auto* r = static_cast<Request*>(nghttp2_session_get_stream_user_data(session, stream_id));
    if (r == nullptr) return 0;
    ClientH2Session* s = self(user_data);
    s->conn_.client().timers_.cancel(r->timer_);
    s->inflight_.remove(r);
    if (r->status_ != 0) {
      // The receiver answered; a reset after the headers does not undo the answer.
      r->failure_ = Failure::kNone;
    } else if (r->failure_ == Failure::kProtocolError) {
      // A malformed :status (on_header); the reset is ours, so not REFUSED_STREAM.
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
      // Not processed (GOAWAY above last-stream-id, or refused): safe to send again.
      s->conn_.origin().requeue(*r);
      s->conn_.request_done();
      return 0;
    } else {
      r->failure_ =
          error_code == NGHTTP2_NO_ERROR ? Failure::kProtocolError : Failure::kStreamReset;
      r->detail_ = error_code == NGHTTP2_NO_ERROR ? "stream closed without a response"
                                                  : nghttp2_http2_strerror(error_code);
    }
    s->conn_.request_done();
    Client::finish(*r);
    return 0;
  }

  // A never-indexed header keeps its value out of the peer's HPACK table, not its name: sent as
  // a literal every time, a name such as x-partoo-event-id (17 characters) is Huffman-coded here
  // and decoded and allocated by the receiver on every request. So the first time a connection
  // sends such a name, the header goes with incremental indexing (name and that one value enter
  // the table); every later one goes never-indexed with the name as an index (RFC 7541 §6.2.2,
  // indexed name). The one value indexed is the id or signature of a request already sent, no
  // secret. True, and the name recorded, the first time; at most kSeededNames names are kept
  // (past them a name goes as a literal, as before). Should the table evict the entry (a
  // connection carrying many distinct paths or custom headers), the name goes as a literal again:
  // the same bytes as without this.
  bool first_time_on_connection(std::string_view name) {
    if (std::find(seeded_names_.begin(), seeded_names_.end(), name) != seeded_names_.end()) {
      return false;
    }
    if (seeded_names_.size() >= kSeededNames) return false;
    seeded_names_.emplace_back(name);
    return true;
  }
  static constexpr std::size_t kSeededNames = 8;

  ClientConnection& conn_;
  H2Memory memory_;  // outlives session_ (deleted in the destructor's body)
  nghttp2_session* session_ = nullptr;
  RequestList inflight_;
  bool accepting_ = true;
  bool dead_ = false;
  bool blocked_ = false;
  bool sending_ = false;
  bool in_recv_ = false;
  std::vector<nghttp2_nv> nva_;
  std::string lowered_;
  char length_[20] = {};                   // the content-length header's digits
  std::vector<std::string> seeded_names_;  // see first_time_on_connection()
};

std::unique_ptr<ClientSession> make_h2_session(ClientConnection& c) {
  return std::make_unique<ClientH2Session>(c);
}

}  // namespace fanout::transport
