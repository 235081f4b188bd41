// How the HTTP/2 client encodes a never-indexed header (transport/client/h2_session.cc,
// first_time_on_connection()): its value never enters the peer's HPACK table after the first
// request of a connection, and its name is sent as an index, not spelled out every time. And
// how header names are lowered: by the client, or once by the caller (HeaderView::lower_name).
//
// The peer is a loopback TCP server on the client's loop that only reads; what it reads goes
// through nghttp2's own server session (the real decoder), which reports each header with the
// never-indexed flag as sent, and each HEADERS frame's length. A fresh nghttp2 deflater, fed the
// same header lists, gives the lengths the two encodings would have.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>
#include <uv.h>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/client_fixture.h"
#include "transport/client/client.h"

namespace fanout::transport {
namespace {

using fanout::test_support::Requests;

struct Field {
  std::string name, value;
  bool never_indexed = false;
};
struct Block {
  std::size_t length = 0;  // the HEADERS frame's payload
  std::vector<Field> fields;
};

// Accepts one connection, reads everything and decodes it with a server session; stops the
// loop once `want` request HEADERS frames have arrived. Never writes.
class DecodingPeer {
 public:
  DecodingPeer(uv_loop_t* loop, std::size_t want) : loop_(loop), want_(want) {
    nghttp2_session_callbacks* cbs = nullptr;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_server_new(&session_, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    port_ = fanout::test_support::listen_on_loopback(loop, &server_, this, on_connection);
  }
  ~DecodingPeer() { nghttp2_session_del(session_); }
  DecodingPeer(const DecodingPeer&) = delete;
  DecodingPeer& operator=(const DecodingPeer&) = delete;

  void close() {
    if (accepted_ && !uv_is_closing(reinterpret_cast<uv_handle_t*>(&conn_))) {
      uv_close(reinterpret_cast<uv_handle_t*>(&conn_), nullptr);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&server_), nullptr);
  }

  std::uint16_t port() const { return port_; }
  // By stream id, in arrival order.
  const std::map<std::int32_t, Block>& blocks() const { return blocks_; }
  std::string error;

 private:
  static void on_connection(uv_stream_t* server, int status) {
    auto* self = static_cast<DecodingPeer*>(server->data);
    if (status != 0 || self->accepted_) return;
    uv_tcp_init(self->loop_, &self->conn_);
    self->conn_.data = self;
    if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&self->conn_)) != 0) return;
    self->accepted_ = true;
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&self->conn_),
        [](uv_handle_t* h, std::size_t, uv_buf_t* b) {
          auto* p = static_cast<DecodingPeer*>(h->data);
          *b = uv_buf_init(p->buf_, sizeof p->buf_);
        },
        on_read);
  }
  static void on_read(uv_stream_t* s, ssize_t n, const uv_buf_t* b) {
    auto* self = static_cast<DecodingPeer*>(s->data);
    if (n <= 0) return;
    const auto used =
        nghttp2_session_mem_recv(self->session_, reinterpret_cast<const std::uint8_t*>(b->base),
                                 static_cast<std::size_t>(n));
    if (used < 0) {
      self->error = nghttp2_strerror(static_cast<int>(used));
      uv_stop(self->loop_);
    }
  }
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name,
                       std::size_t namelen, const std::uint8_t* value, std::size_t valuelen,
                       std::uint8_t flags, void* data) {
    auto* self = static_cast<DecodingPeer*>(data);
    self->blocks_[f->hd.stream_id].fields.push_back(
        {std::string(reinterpret_cast<const char*>(name), namelen),
         std::string(reinterpret_cast<const char*>(value), valuelen),
         (flags & NGHTTP2_NV_FLAG_NO_INDEX) != 0});
    return 0;
  }
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* data) {
    auto* self = static_cast<DecodingPeer*>(data);
    if (f->hd.type != NGHTTP2_HEADERS) return 0;
    self->blocks_[f->hd.stream_id].length = f->hd.length;
    if (++self->headers_seen_ == self->want_) uv_stop(self->loop_);
    return 0;
  }

  uv_loop_t* loop_;
  std::size_t want_;
  nghttp2_session* session_ = nullptr;
  uv_tcp_t server_{};
  uv_tcp_t conn_{};
  bool accepted_ = false;
  std::uint16_t port_ = 0;
  char buf_[65536];
  std::size_t headers_seen_ = 0;
  std::map<std::int32_t, Block> blocks_;
};

// The length of each list's header block from one fresh deflater, as a connection would send
// them in turn; `index_first` says whether the first list's never-indexed fields go indexed.
std::vector<std::size_t> deflated_lengths(const std::vector<std::vector<Field>>& lists,
                                          bool index_first) {
  nghttp2_hd_deflater* d = nullptr;
  EXPECT_EQ(nghttp2_hd_deflate_new(&d, 4096), 0);
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < lists.size(); ++i) {
    std::vector<nghttp2_nv> nva;
    for (const Field& f : lists[i]) {
      const bool no_index = f.never_indexed || (i > 0 && f.name == "x-partoo-event-id") ||
                            (i == 0 && !index_first && f.name == "x-partoo-event-id");
      nva.push_back(
          {reinterpret_cast<std::uint8_t*>(const_cast<char*>(f.name.data())),
           reinterpret_cast<std::uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(),
           f.value.size(),
           static_cast<std::uint8_t>(no_index ? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE)});
    }
    std::vector<std::uint8_t> buf(nghttp2_hd_deflate_bound(d, nva.data(), nva.size()));
    const auto n = nghttp2_hd_deflate_hd(d, buf.data(), buf.size(), nva.data(), nva.size());
    EXPECT_GE(n, 0);
    out.push_back(static_cast<std::size_t>(n));
  }
  nghttp2_hd_deflate_del(d);
  return out;
}

class H2HpackTest : public fanout::test_support::ClientLoopTest {
 protected:
  void close_peers() override {
    if (peer_) peer_->close();
  }
  void free_peers() override { peer_.reset(); }
  std::unique_ptr<DecodingPeer> peer_;
  Requests reqs_;  // still in flight at TearDown (the peer never answers): the client fails them
};

TEST_F(H2HpackTest, ANeverIndexedHeaderGoesByNameIndexAndItsValuesStayOutOfTheTable) {
  constexpr std::size_t kRequests = 4;
  peer_ = std::make_unique<DecodingPeer>(&loop_, kRequests);
  ClientOptions o = loopback_options();
  o.insecure = true;  // http:// (h2c with prior knowledge)
  make_client(o);
  const std::string ids[kRequests] = {
      "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "11111111222222223333333344444444",
      "abcdefabcdefabcdefabcdefabcdef01", "9876543210fedcba9876543210fedcba"};
  Requests& reqs = reqs_;
  for (std::size_t i = 0; i < kRequests; ++i) {
    reqs.push_back(make_request(false, "127.0.0.1", peer_->port(), "/hook", "{}"));
    reqs.back()->header_storage = {{"X-Partoo-Event-Id", ids[i], /*never_index=*/true},
                                   {"X-Partoo-Attempt", "1", /*never_index=*/false}};
    reqs.back()->headers = reqs.back()->header_storage;
  }
  remaining_ = static_cast<int>(reqs.size());
  for (auto& r : reqs) client_->submit(*r);
  run_loop();
  ASSERT_EQ(peer_->error, "");
  for (auto& r : reqs) {
    ASSERT_FALSE(r->done) << "completed before the peer saw it: " << to_string(r->got.failure)
                          << " " << r->got_detail;
  }
  const auto& blocks = peer_->blocks();
  ASSERT_EQ(blocks.size(), kRequests);

  // What arrived: the ids in order, the first with indexing, every later one never indexed.
  std::vector<std::vector<Field>> lists;
  std::vector<std::size_t> lengths;
  for (const auto& [stream, block] : blocks) {
    const std::size_t i = lists.size();
    std::size_t found = 0;
    for (const Field& f : block.fields) {
      if (f.name != "x-partoo-event-id") continue;
      ++found;
      EXPECT_EQ(f.value, ids[i]);
      EXPECT_EQ(f.never_indexed, i > 0) << "request " << i;
    }
    EXPECT_EQ(found, 1u) << "request " << i;
    lists.push_back(block.fields);
    lengths.push_back(block.length);
  }

  // The same lists through a fresh deflater: the lengths as sent, and shorter from the second
  // request on than with the name spelled out every time (17 characters, 13 bytes Huffman-coded).
  const std::vector<std::size_t> indexed_name = deflated_lengths(lists, /*index_first=*/true);
  const std::vector<std::size_t> literal_name = deflated_lengths(lists, /*index_first=*/false);
  EXPECT_EQ(lengths, indexed_name);
  for (std::size_t i = 1; i < kRequests; ++i) {
    EXPECT_GE(literal_name[i], lengths[i] + 10) << "request " << i;
  }
}

// Only A-Z change, whatever the byte (HTTP/1.1 field names are tokens; HTTP/2 wants them lower).
TEST(LowerHeaderName, LowersAsciiUpperCaseOnly) {
  std::string all(256, '\0');
  for (int c = 0; c < 256; ++c) all[static_cast<std::size_t>(c)] = static_cast<char>(c);
  std::string out(all.size(), '\0');
  EXPECT_EQ(lower_header_name(all, out.data()).size(), all.size());
  for (int c = 0; c < 256; ++c) {
    const char want = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : static_cast<char>(c);
    EXPECT_EQ(out[static_cast<std::size_t>(c)], want) << "byte " << c;
  }
}

// A name the caller lowered once (lower_name) goes as given, unchecked (here one unlike `name`,
// to show which is sent); any other is lowered by the client.
TEST_F(H2HpackTest, NamesGoLowerCasedAsTheCallerLoweredThemOrByTheClient) {
  peer_ = std::make_unique<DecodingPeer>(&loop_, 1);
  ClientOptions o = loopback_options();
  o.insecure = true;
  make_client(o);
  reqs_.push_back(make_request(false, "127.0.0.1", peer_->port(), "/hook", "{}"));
  reqs_.back()->header_storage = {{"X-Mixed-Case", "a"},
                                  // lower_name is what goes, even unlike `name`
                                  {"X-Given", "b", /*never_index=*/false, "x-other"},
                                  {"X-Id", "c", /*never_index=*/true, "x-id"}};
  reqs_.back()->headers = reqs_.back()->header_storage;
  remaining_ = 1;
  client_->submit(*reqs_.back());
  run_loop();
  ASSERT_EQ(peer_->error, "");
  ASSERT_EQ(peer_->blocks().size(), 1u);
  std::map<std::string, std::string> got;
  for (const Field& f : peer_->blocks().begin()->second.fields) got[f.name] = f.value;
  EXPECT_EQ(got["x-mixed-case"], "a");
  EXPECT_EQ(got["x-other"], "b");
  EXPECT_EQ(got.count("x-given"), 0u);
  EXPECT_EQ(got["x-id"], "c");
  for (const auto& [name, value] : got) {
    EXPECT_EQ(name.find_first_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ"), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace fanout::transport
