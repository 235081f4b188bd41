// The HTTP/2 flood tests' scripted client (http_server_flood_test.cc): frames written by hand
// (9-byte headers, RFC 9113 §4.1), header blocks from nghttp2's HPACK deflater, and a TCP client
// on the test's loop that sends them one write at a time and, when asked, parses what the server
// sends back (frames, GOAWAY, each stream's :status through nghttp2's inflater).
#pragma once

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace fanout::transport::flood {

inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

inline void put32(std::string& out, std::uint32_t v) {
  out.push_back(static_cast<char>(v >> 24));
  out.push_back(static_cast<char>(v >> 16));
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}

inline std::uint32_t get32(std::string_view s, std::size_t at) {
  const auto b = [&](std::size_t i) { return std::uint32_t{static_cast<std::uint8_t>(s[at + i])}; };
  return (b(0) << 24) | (b(1) << 16) | (b(2) << 8) | b(3);
}

// One frame: header (RFC 9113 §4.1) and payload.
inline std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream_id,
                         std::string_view payload = {}) {
  std::string f;
  f.push_back(static_cast<char>(payload.size() >> 16));
  f.push_back(static_cast<char>(payload.size() >> 8));
  f.push_back(static_cast<char>(payload.size()));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  put32(f, stream_id & 0x7fffffffu);
  f.append(payload);
  return f;
}

inline std::string settings_frame(std::size_t entries) {
  std::string payload;
  for (std::size_t i = 0; i < entries; ++i) {
    payload.push_back(0);
    payload.push_back(NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    put32(payload, 100);
  }
  return frame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_NONE, 0, payload);
}

inline std::string ping_frame(std::uint64_t opaque) {
  std::string payload;
  put32(payload, static_cast<std::uint32_t>(opaque >> 32));
  put32(payload, static_cast<std::uint32_t>(opaque));
  return frame(NGHTTP2_PING, NGHTTP2_FLAG_NONE, 0, payload);
}

inline std::string rst_frame(std::uint32_t stream_id, std::uint32_t code) {
  std::string payload;
  put32(payload, code);
  return frame(NGHTTP2_RST_STREAM, NGHTTP2_FLAG_NONE, stream_id, payload);
}

using Fields = std::vector<std::pair<std::string, std::string>>;

inline Fields get(std::string path) {
  return {{":method", "GET"}, {":scheme", "http"}, {":path", std::move(path)}, {":authority", "x"}};
}

// The HPACK encoder of one connection: nghttp2's deflater, so every block continues the same
// dynamic table as the server's inflater.
class Hpack {
 public:
  Hpack() { EXPECT_EQ(nghttp2_hd_deflate_new(&deflater_, 4096), 0); }
  ~Hpack() { nghttp2_hd_deflate_del(deflater_); }
  Hpack(const Hpack&) = delete;
  Hpack& operator=(const Hpack&) = delete;

  std::string block(const Fields& fields) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [n, v] : fields) {
      nva.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(n.data())),
                     reinterpret_cast<std::uint8_t*>(const_cast<char*>(v.data())), n.size(),
                     v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(deflater_, reinterpret_cast<std::uint8_t*>(out.data()),
                                            out.size(), nva.data(), nva.size());
    EXPECT_GE(n, 0);
    out.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    return out;
  }

 private:
  nghttp2_hd_deflater* deflater_ = nullptr;
};

// A request in one HEADERS frame (END_HEADERS, END_STREAM).
inline std::string request(Hpack& hpack, std::uint32_t stream_id, const Fields& fields) {
  return frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, stream_id,
               hpack.block(fields));
}

// A TCP client speaking raw HTTP/2 frames. With `read`, it parses what the server sends: frames,
// GOAWAY, each stream's :status (nghttp2's inflater) and end. Without, it never reads (the socket's
// receive buffer is made small, so the server's output backs up soon).
class FloodClient {
 public:
  FloodClient(uv_loop_t* loop, std::uint16_t port, bool read = true) : read_(read) {
    EXPECT_EQ(nghttp2_hd_inflate_new(&inflater_), 0);
    EXPECT_EQ(uv_tcp_init_ex(loop, &tcp_, AF_INET), 0);
    tcp_.data = this;
    // Each write leaves at once (no Nagle delay) and whole (a send buffer larger than any write),
    // so the server sees the frames as they are sent, a write in one read.
    EXPECT_EQ(uv_tcp_nodelay(&tcp_, 1), 0);
    int send_buffer = 1 << 20;
    EXPECT_EQ(uv_send_buffer_size(reinterpret_cast<uv_handle_t*>(&tcp_), &send_buffer), 0);
    if (!read_) {
      int size = 4096;
      EXPECT_EQ(uv_recv_buffer_size(reinterpret_cast<uv_handle_t*>(&tcp_), &size), 0);
    }
    sockaddr_in addr{};
    uv_ip4_addr("127.0.0.1", port, &addr);
    connect_.data = this;
    EXPECT_EQ(
        uv_tcp_connect(&connect_, &tcp_, reinterpret_cast<const sockaddr*>(&addr), on_connect), 0);
  }
  ~FloodClient() { nghttp2_hd_inflate_del(inflater_); }  // after close() and its callback
  FloodClient(const FloodClient&) = delete;
  FloodClient& operator=(const FloodClient&) = delete;

  // One uv_write (queued until connected).
  void send(std::string bytes) {
    if (closing_) return;
    ++in_flight_;
    auto* w = new WriteReq{{}, std::move(bytes), this};
    w->req.data = w;
    uv_buf_t b = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
    if (uv_write(&w->req, reinterpret_cast<uv_stream_t*>(&tcp_), &b, 1, on_write) != 0) {
      write_failed_ = true;
      --in_flight_;
      delete w;
    }
  }
  void close() {
    if (closing_) return;
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_),
             [](uv_handle_t* h) { static_cast<FloodClient*>(h->data)->closed_ = true; });
  }

  [[nodiscard]] std::size_t in_flight() const { return in_flight_; }
  [[nodiscard]] bool write_failed() const { return write_failed_; }
  [[nodiscard]] bool eof() const { return eof_; }
  [[nodiscard]] bool closed() const { return closed_; }
  [[nodiscard]] bool goaway() const { return goaway_; }
  [[nodiscard]] std::uint32_t goaway_code() const { return goaway_code_; }
  [[nodiscard]] std::uint32_t goaway_last_stream() const { return goaway_last_stream_; }
  // The server ended the connection: GOAWAY, EOF or a failed write.
  [[nodiscard]] bool ended() const { return goaway_ || eof_ || write_failed_; }
  [[nodiscard]] std::size_t settings_acks() const { return settings_acks_; }
  [[nodiscard]] std::size_t ping_acks() const { return ping_acks_; }
  // The server's SETTINGS value for `id`, 0 when it sent none.
  [[nodiscard]] std::uint32_t server_setting(std::uint16_t id) const {
    auto it = settings_.find(id);
    return it == settings_.end() ? 0 : it->second;
  }
  // :status of the answer on `stream_id`, 0 before it came.
  [[nodiscard]] int status(std::uint32_t stream_id) const {
    auto it = status_.find(stream_id);
    return it == status_.end() ? 0 : it->second;
  }
  [[nodiscard]] bool stream_ended(std::uint32_t stream_id) const {
    return ended_streams_.count(stream_id) != 0;
  }

 private:
  struct WriteReq {
    uv_write_t req;
    std::string bytes;
    FloodClient* client;
  };

  static void on_connect(uv_connect_t* req, int status) {
    auto* self = static_cast<FloodClient*>(req->data);
    if (status != 0) {
      self->write_failed_ = true;
      return;
    }
    if (!self->read_ || self->closing_) return;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&self->tcp_),
        [](uv_handle_t*, std::size_t, uv_buf_t* b) {
          static char chunk[65536];
          *b = uv_buf_init(chunk, sizeof chunk);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
          auto* c = static_cast<FloodClient*>(s->data);
          if (n > 0) {
            c->received_.append(b->base, static_cast<std::size_t>(n));
            c->parse();
          } else if (n < 0) {
            c->eof_ = true;
            uv_read_stop(s);
          }
        });
  }
  static void on_write(uv_write_t* req, int status) {
    auto* w = static_cast<WriteReq*>(req->data);
    --w->client->in_flight_;
    if (status < 0) w->client->write_failed_ = true;
    delete w;
  }

  void parse() {
    while (received_.size() >= 9) {
      const std::size_t len = get32(received_, 0) >> 8;
      if (received_.size() < 9 + len) return;
      const auto type = static_cast<std::uint8_t>(received_[3]);
      const auto flags = static_cast<std::uint8_t>(received_[4]);
      const std::uint32_t id = get32(received_, 5) & 0x7fffffffu;
      const std::string_view payload = std::string_view(received_).substr(9, len);
      on_frame(type, flags, id, payload);
      received_.erase(0, 9 + len);
    }
  }
  void on_frame(std::uint8_t type, std::uint8_t flags, std::uint32_t id, std::string_view payload) {
    switch (type) {
      case NGHTTP2_GOAWAY:
        goaway_ = true;
        goaway_last_stream_ = get32(payload, 0) & 0x7fffffffu;
        goaway_code_ = get32(payload, 4);
        break;
      case NGHTTP2_PING:
        if ((flags & NGHTTP2_FLAG_ACK) != 0) ++ping_acks_;
        break;
      case NGHTTP2_SETTINGS:
        if ((flags & NGHTTP2_FLAG_ACK) != 0) {
          ++settings_acks_;
          break;
        }
        for (std::size_t at = 0; at + 6 <= payload.size(); at += 6) {
          const auto key =
              static_cast<std::uint16_t>((static_cast<std::uint8_t>(payload[at]) << 8) |
                                         static_cast<std::uint8_t>(payload[at + 1]));
          settings_[key] = get32(payload, at + 2);
        }
        break;
      case NGHTTP2_HEADERS:
        // The server sends neither padding nor priority, and answers fit one frame.
        EXPECT_NE(flags & NGHTTP2_FLAG_END_HEADERS, 0);
        inflate(id, payload);
        if ((flags & NGHTTP2_FLAG_END_STREAM) != 0) ended_streams_.insert(id);
        break;
      case NGHTTP2_DATA:
        if ((flags & NGHTTP2_FLAG_END_STREAM) != 0) ended_streams_.insert(id);
        break;
      case NGHTTP2_RST_STREAM:
        ended_streams_.insert(id);
        break;
      default:
        break;
    }
  }
  void inflate(std::uint32_t stream_id, std::string_view block) {
    auto* in = reinterpret_cast<std::uint8_t*>(const_cast<char*>(block.data()));
    std::size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, left, 1);
      ASSERT_GE(n, 0) << "the server's header block does not decode";
      in += n;
      left -= static_cast<std::size_t>(n);
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) != 0) {
        const std::string_view name(reinterpret_cast<const char*>(nv.name), nv.namelen);
        if (name == ":status") {
          status_[stream_id] =
              std::stoi(std::string(reinterpret_cast<const char*>(nv.value), nv.valuelen));
        }
      }
      if ((flags & NGHTTP2_HD_INFLATE_FINAL) != 0) {
        nghttp2_hd_inflate_end_headers(inflater_);
        return;
      }
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) == 0 && left == 0) return;
    }
  }

  bool read_;
  uv_tcp_t tcp_{};
  uv_connect_t connect_{};
  nghttp2_hd_inflater* inflater_ = nullptr;
  std::string received_;
  std::size_t in_flight_ = 0;
  bool write_failed_ = false;
  bool eof_ = false;
  bool closing_ = false;
  bool closed_ = false;
  bool goaway_ = false;
  std::uint32_t goaway_code_ = 0;
  std::uint32_t goaway_last_stream_ = 0;
  std::size_t settings_acks_ = 0;
  std::size_t ping_acks_ = 0;
  std::map<std::uint16_t, std::uint32_t> settings_;
  std::map<std::uint32_t, int> status_;
  std::set<std::uint32_t> ended_streams_;
};

}  // namespace fanout::transport::flood
