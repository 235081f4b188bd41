/* Configure-time probe (CMakeLists.txt, try_run): does the libnghttp2 fanout links stop the two
 * HTTP/2 floods that broke every server built on it?
 *
 *   CVE-2023-44487, "rapid reset": a client opens streams and resets them at once (HEADERS then
 *     RST_STREAM, over and over). The streams never count against SETTINGS_MAX_CONCURRENT_STREAMS,
 *     yet each one reached the server's handler. Fixed upstream in 1.57.0: a token bucket on
 *     incoming RST_STREAM (burst 1000, 33 per second) after which the server sends GOAWAY.
 *   CVE-2024-28182, "CONTINUATION flood": a HEADERS frame without END_HEADERS followed by
 *     CONTINUATION frames without end; nghttp2 decoded every one. Fixed upstream in 1.61.0: more
 *     than 8 CONTINUATION frames after one HEADERS end the session (NGHTTP2_ERR_TOO_MANY_
 *     CONTINUATIONS).
 *
 * Distributions backport both fixes without changing the version (Debian 12 ships "1.52.0" with
 * them: 1.52.0-1+deb12u1 and +deb12u2), so no version number can tell. Nor can a symbol: the
 * options the fixes added (nghttp2_option_set_stream_reset_rate_limit, _max_continuations) are
 * how a server tunes the limits, but a backport may carry the limit without the setter, and the
 * header seen at build time need not be the library loaded at run time. So this program asks the
 * library itself, with its default options: it plays a client (nghttp2's own client session and
 * HPACK deflater make the frames, nothing is hand-encoded but 9-byte frame headers) against a
 * server session through nghttp2_session_mem_recv, and watches whether the session stops it.
 *
 * Exit status: 0 both floods stopped; 1 the rapid reset was not; 2 the CONTINUATION flood was
 * not; 3 neither; 4 the probe itself failed (its well-formed opening was refused, or an
 * allocation failed): no verdict. A line on stdout says what happened.
 *
 * Plain C, only nghttp2's public API of 1.52 (nothing the fixes added), so that it builds against
 * an unpatched library and fails by behaviour rather than by compile error. */
#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

enum {
  kRapidResetRounds = 20000,  /* a fixed library stops the client after about 1000 */
  kContinuationFrames = 4096, /* a fixed library stops after 8 (the default) */
  kSanityRounds = 50          /* well-formed traffic a fixed library must still accept */
};

struct probe {
  int goaway_sent;
  uint32_t goaway_code;
};

static int on_frame_send(nghttp2_session* session, const nghttp2_frame* frame, void* user_data) {
  struct probe* p = (struct probe*)user_data;
  (void)session;
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    p->goaway_sent = 1;
    p->goaway_code = frame->goaway.error_code;
  }
  return 0;
}

static nghttp2_nv make_nv(const char* name, const char* value) {
  nghttp2_nv nv;
  nv.name = (uint8_t*)(uintptr_t)name;
  nv.value = (uint8_t*)(uintptr_t)value;
  nv.namelen = strlen(name);
  nv.valuelen = strlen(value);
  nv.flags = NGHTTP2_NV_FLAG_NONE;
  return nv;
}

/* A server session with default options whose sent frames are seen by `p`. */
static nghttp2_session* new_server(struct probe* p) {
  nghttp2_session_callbacks* cbs = NULL;
  nghttp2_session* s = NULL;
  if (nghttp2_session_callbacks_new(&cbs) != 0) return NULL;
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
  if (nghttp2_session_server_new(&s, cbs, p) != 0) s = NULL;
  nghttp2_session_callbacks_del(cbs);
  return s;
}

/* Everything the server session wants to send, thrown away (on_frame_send sees it). */
static int drain(nghttp2_session* server) {
  for (;;) {
    const uint8_t* data = NULL;
    const ssize_t n = nghttp2_session_mem_send(server, &data);
    if (n < 0) return -1;
    if (n == 0) return 0;
  }
}

/* Moves what `client` queued into `server`. Returns mem_recv's first error, or 0. */
static ssize_t pump(nghttp2_session* client, nghttp2_session* server) {
  for (;;) {
    const uint8_t* data = NULL;
    const ssize_t n = nghttp2_session_mem_send(client, &data);
    if (n < 0) return n;
    if (n == 0) return 0;
    const ssize_t rv = nghttp2_session_mem_recv(server, data, (size_t)n);
    if (rv < 0) return rv;
  }
}

static ssize_t feed(nghttp2_session* server, const uint8_t* data, size_t len) {
  return nghttp2_session_mem_recv(server, data, len);
}

/* Returns 1 when the server session stopped the rapid reset, 0 when it did not, -1 when the probe
 * failed. */
static int rapid_reset_stopped(void) {
  struct probe p = {0, 0};
  nghttp2_session* server = new_server(&p);
  nghttp2_session* client = NULL;
  nghttp2_session_callbacks* cbs = NULL;
  int verdict = -1;
  int round;
  const nghttp2_nv nva[] = {make_nv(":method", "GET"), make_nv(":scheme", "http"),
                            make_nv(":path", "/"), make_nv(":authority", "probe")};
  if (server == NULL || nghttp2_session_callbacks_new(&cbs) != 0) goto out;
  if (nghttp2_session_client_new(&client, cbs, NULL) != 0) {
    client = NULL;
    goto out;
  }
  /* The client session's first output is the connection preface, then its SETTINGS. */
  if (nghttp2_submit_settings(client, NGHTTP2_FLAG_NONE, NULL, 0) != 0) goto out;
  if (pump(client, server) != 0) goto out;
  for (round = 1; round <= kRapidResetRounds; ++round) {
    const int32_t id = nghttp2_submit_request(client, NULL, nva, 4, NULL, NULL);
    if (id < 0 || pump(client, server) != 0) goto out;
    if (nghttp2_submit_rst_stream(client, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL) != 0) goto out;
    if (pump(client, server) != 0 || drain(server) != 0) goto out;
    if (p.goaway_sent) {
      if (round <= kSanityRounds || p.goaway_code == NGHTTP2_NO_ERROR) {
        printf("rapid reset: GOAWAY(%u) after only %d streams: the probe's frames were refused\n",
               p.goaway_code, round);
        goto out;
      }
      printf("rapid reset: stopped after %d streams (GOAWAY error %u)\n", round, p.goaway_code);
      verdict = 1;
      goto out;
    }
  }
  printf("rapid reset: %d streams opened and reset, never stopped\n", kRapidResetRounds);
  verdict = 0;
out:
  if (client != NULL) nghttp2_session_del(client);
  if (cbs != NULL) nghttp2_session_callbacks_del(cbs);
  if (server != NULL) nghttp2_session_del(server);
  return verdict;
}

/* A frame header (RFC 9113 §4.1). */
static void frame_header(uint8_t out[9], size_t length, uint8_t type, uint8_t flags,
                         int32_t stream_id) {
  out[0] = (uint8_t)(length >> 16);
  out[1] = (uint8_t)(length >> 8);
  out[2] = (uint8_t)length;
  out[3] = type;
  out[4] = flags;
  out[5] = (uint8_t)((uint32_t)stream_id >> 24);
  out[6] = (uint8_t)((uint32_t)stream_id >> 16);
  out[7] = (uint8_t)((uint32_t)stream_id >> 8);
  out[8] = (uint8_t)stream_id;
}

/* HPACK from nghttp2's deflater: `nva` as the next header block fragment. */
static ssize_t deflate(nghttp2_hd_deflater* d, uint8_t* out, size_t cap, const nghttp2_nv* nva,
                       size_t n) {
  if (nghttp2_hd_deflate_bound(d, nva, n) > cap) return -1;
  return nghttp2_hd_deflate_hd(d, out, cap, nva, n);
}

/* Returns 1 when the server session stopped the CONTINUATION flood, 0 when it did not, -1 when
 * the probe failed. */
static int continuation_flood_stopped(void) {
  static const uint8_t settings[9] = {0, 0, 0, NGHTTP2_SETTINGS, 0, 0, 0, 0, 0};
  struct probe p = {0, 0};
  nghttp2_session* server = new_server(&p);
  nghttp2_hd_deflater* deflater = NULL;
  int verdict = -1;
  int i;
  uint8_t frame[9 + 256];
  ssize_t len;
  const nghttp2_nv request[] = {make_nv(":method", "GET"), make_nv(":scheme", "http"),
                                make_nv(":path", "/"), make_nv(":authority", "probe")};
  const nghttp2_nv more = make_nv("x-probe", "continuation");
  if (server == NULL || nghttp2_hd_deflate_new(&deflater, 4096) != 0) goto out;
  if (feed(server, (const uint8_t*)NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN) < 0) goto out;
  if (feed(server, settings, sizeof settings) < 0) goto out;
  /* HEADERS on stream 1: END_STREAM, but not END_HEADERS. */
  len = deflate(deflater, frame + 9, sizeof frame - 9, request, 4);
  if (len < 0) goto out;
  frame_header(frame, (size_t)len, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_STREAM, 1);
  if (feed(server, frame, 9 + (size_t)len) < 0) goto out;
  for (i = 1; i <= kContinuationFrames; ++i) {
    ssize_t rv;
    len = deflate(deflater, frame + 9, sizeof frame - 9, &more, 1);
    if (len < 0) goto out;
    frame_header(frame, (size_t)len, NGHTTP2_CONTINUATION, NGHTTP2_FLAG_NONE, 1);
    rv = feed(server, frame, 9 + (size_t)len);
    if (rv >= 0 && drain(server) != 0) goto out;
    if (rv < 0 || (p.goaway_sent && p.goaway_code != NGHTTP2_NO_ERROR)) {
      if (i == 1) {
        printf("CONTINUATION flood: the first CONTINUATION was refused (%ld): the probe failed\n",
               (long)rv);
        goto out;
      }
      printf("CONTINUATION flood: stopped at CONTINUATION frame %d (%s)\n", i,
             rv < 0 ? nghttp2_strerror((int)rv) : "GOAWAY");
      verdict = 1;
      goto out;
    }
  }
  printf("CONTINUATION flood: %d CONTINUATION frames accepted, never stopped\n",
         kContinuationFrames);
  verdict = 0;
out:
  if (deflater != NULL) nghttp2_hd_deflate_del(deflater);
  if (server != NULL) nghttp2_session_del(server);
  return verdict;
}

int main(void) {
  const nghttp2_info* info = nghttp2_version(0);
  int reset, continuation;
  printf("libnghttp2 %s\n", info != NULL ? info->version_str : "?");
  reset = rapid_reset_stopped();
  continuation = continuation_flood_stopped();
  if (reset < 0 || continuation < 0) return 4;
  return (reset ? 0 : 1) | (continuation ? 0 : 2);
}
