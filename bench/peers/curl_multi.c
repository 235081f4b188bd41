/* curl_multi: a libcurl multi-interface load client, the "libcurl multi" peer of
 * bench/compare.sh. N POSTs of one body to one URL with C connections x M streams kept busy
 * (C x M transfers in flight, easy handles reused), then one JSON line on stdout:
 *
 *   {"requests":N,"ok":2xx answers,"elapsed_s":...,"requests_per_s":...,"p50_us":...,
 *    "p99_us":..., ...details}
 *
 * HTTP/2: http:// is h2c with prior knowledge (C seed transfers open the connections, see the
 * workaround in main), https:// is h2 by ALPN (certificate not verified: the local self-signed
 * one); C connections (CURLMOPT_MAX_HOST_CONNECTIONS) multiplexing M
 * streams each (CURLMOPT_PIPELINING = CURLPIPE_MULTIPLEX, CURLMOPT_MAX_CONCURRENT_STREAMS,
 * CURLOPT_PIPEWAIT). --http1: HTTP/1.1 keep-alive, C connections with one request each (M = 1).
 * Latency: from adding a transfer to the multi handle to its completion.
 *
 * Built by bench/compare.sh: cc -O2 -Wall -Wextra curl_multi.c $(pkg-config --cflags --libs
 * libcurl). Never linked with fanout (libcurl brings its own TLS library).
 *
 * Usage: curl_multi --url URL --requests N --body FILE [--conns C] [--streams M] [--http1]
 *                   [--timeout S]
 * Exit status: 0 when all N requests were answered 2xx within the timeout, 1 otherwise, 2 on a
 * usage error.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(void) {
  fprintf(stderr,
          "usage: curl_multi --url URL --requests N --body FILE [--conns C] [--streams M]\n"
          "                  [--http1] [--timeout S]\n"
          "  --url URL       http:// (h2c, prior knowledge) or https:// (h2 by ALPN)\n"
          "  --requests N    POSTs to complete\n"
          "  --body FILE     request body (sent as application/json)\n"
          "  --conns C       connections (default 1)\n"
          "  --streams M     streams per connection (default 100; 1 with --http1)\n"
          "  --http1         HTTP/1.1 keep-alive instead of HTTP/2\n"
          "  --timeout S     give up after S seconds (default 120)\n");
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long parse_positive(const char *flag, const char *text) {
  char *end = NULL;
  errno = 0;
  long v = strtol(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || v <= 0) {
    fprintf(stderr, "curl_multi: %s wants a positive integer, got '%s'\n", flag, text);
    exit(2);
  }
  return v;
}

static size_t discard(char *ptr, size_t size, size_t nmemb, void *userdata) {
  (void)ptr;
  (void)userdata;
  return size * nmemb;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

static uint32_t percentile(const uint32_t *sorted, long n, double q) {
  if (n <= 0) return 0;
  long i = (long)(q * (double)n + 0.5) - 1;
  if (i < 0) i = 0;
  if (i >= n) i = n - 1;
  return sorted[i];
}

struct slot {
  CURL *easy;
  double started;
  int seed; /* h2c: opens one of the C connections with prior knowledge (see main) */
};

int main(int argc, char **argv) {
  const char *url = NULL, *body_path = NULL;
  long n = 0, conns = 1, streams = 100, timeout_s = 120;
  int http1 = 0, streams_given = 0, verbose = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = (i + 1 < argc) ? argv[i + 1] : NULL;
    if (strcmp(a, "--http1") == 0) {
      http1 = 1;
      continue;
    }
    if (strcmp(a, "--verbose") == 0) {
      verbose = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage();
      return 0;
    }
    if (v == NULL) {
      fprintf(stderr, "curl_multi: %s needs a value\n", a);
      usage();
      return 2;
    }
    if (strcmp(a, "--url") == 0) {
      url = v;
    } else if (strcmp(a, "--requests") == 0) {
      n = parse_positive(a, v);
    } else if (strcmp(a, "--body") == 0) {
      body_path = v;
    } else if (strcmp(a, "--conns") == 0) {
      conns = parse_positive(a, v);
    } else if (strcmp(a, "--streams") == 0) {
      streams = parse_positive(a, v);
      streams_given = 1;
    } else if (strcmp(a, "--timeout") == 0) {
      timeout_s = parse_positive(a, v);
    } else {
      fprintf(stderr, "curl_multi: unknown option %s\n", a);
      usage();
      return 2;
    }
    i++;
  }
  if (url == NULL || body_path == NULL || n == 0) {
    usage();
    return 2;
  }
  if (http1) {
    if (streams_given && streams != 1) {
      fprintf(stderr, "curl_multi: --http1 sends one request at a time per connection\n");
      return 2;
    }
    streams = 1;
  }
  int tls = strncmp(url, "https://", 8) == 0;

  /* The body, read once. */
  FILE *f = fopen(body_path, "rb");
  if (f == NULL) {
    fprintf(stderr, "curl_multi: cannot open %s: %s\n", body_path, strerror(errno));
    return 2;
  }
  char *body = NULL;
  size_t body_len = 0, cap = 0;
  for (;;) {
    if (body_len == cap) {
      cap = cap ? cap * 2 : 4096;
      char *grown = realloc(body, cap);
      if (grown == NULL) {
        fprintf(stderr, "curl_multi: out of memory\n");
        return 2;
      }
      body = grown;
    }
    size_t got = fread(body + body_len, 1, cap - body_len, f);
    body_len += got;
    if (got == 0) break;
  }
  fclose(f);

  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    fprintf(stderr, "curl_multi: curl_global_init failed\n");
    return 1;
  }
  CURLM *multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, conns);
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, conns);
  curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, conns);
  if (http1) {
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
  } else {
    curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(multi, CURLMOPT_MAX_CONCURRENT_STREAMS, streams);
  }

  struct curl_slist *headers = NULL;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");

  long window = conns * streams;
  if (window > n) window = n;
  struct slot *slots = calloc((size_t)window, sizeof *slots);
  uint32_t *lat_us = malloc((size_t)n * sizeof *lat_us);
  if (slots == NULL || lat_us == NULL) {
    fprintf(stderr, "curl_multi: out of memory\n");
    return 1;
  }
  for (long i = 0; i < window; i++) {
    CURL *e = curl_easy_init();
    slots[i].easy = e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)&slots[i]);
    curl_easy_setopt(e, CURLOPT_VERBOSE, (long)verbose);
    if (http1) {
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    } else if (tls || i >= conns) {
      /* h2 by ALPN over TLS. Over h2c (i >= conns): never opens a connection, waits for a
       * multiplexing one (PIPEWAIT) opened by a seed and reuses it. */
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
      curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    } else {
      /* h2c seed: libcurl 7.88.x (Debian 12) fails every transfer that reuses a connection
       * with CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE ("Error in the HTTP2 framing layer", curl
       * issue 10634, fixed in 8.0). So only the first C transfers ask for prior knowledge, each
       * on a fresh connection, and then switch to 2TLS, which over http:// reuses an h2
       * connection as it is. Any transfer that ends up on HTTP/1.1 counts in "not_h2". */
      slots[i].seed = 1;
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE);
      curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
    }
    if (tls) {
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }

  long started = 0, done = 0, ok = 0, failed = 0, not_h2 = 0, connects = 0;
  long first_status_fail = 0;
  CURLcode first_error = CURLE_OK;
  double t0 = now_s();
  double deadline = t0 + (double)timeout_s;
  for (long i = 0; i < window; i++) {
    slots[i].started = now_s();
    curl_multi_add_handle(multi, slots[i].easy);
    started++;
  }
  int running = 1, timed_out = 0;
  while (done < n) {
    CURLMcode mc = curl_multi_perform(multi, &running);
    if (mc != CURLM_OK) {
      fprintf(stderr, "curl_multi: curl_multi_perform: %s\n", curl_multi_strerror(mc));
      break;
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL *e = msg->easy_handle;
      CURLcode result = msg->data.result;
      char *priv = NULL;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
      struct slot *s = (struct slot *)(void *)priv;
      double t = now_s();
      lat_us[done] = (uint32_t)((t - s->started) * 1e6 + 0.5);
      done++;
      long status = 0, version = 0, new_conns = 0;
      curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
      curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
      curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &new_conns);
      connects += new_conns;
      if (result == CURLE_OK && status >= 200 && status < 300) {
        ok++;
      } else {
        failed++;
        if (result != CURLE_OK && first_error == CURLE_OK) first_error = result;
        if (result == CURLE_OK && first_status_fail == 0) first_status_fail = status;
      }
      if (!http1 && result == CURLE_OK && version != CURL_HTTP_VERSION_2_0) not_h2++;
      curl_multi_remove_handle(multi, e);
      if (s->seed) {
        s->seed = 0;
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 0L);
        curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
      }
      if (started < n) {
        s->started = t;
        curl_multi_add_handle(multi, e);
        started++;
      }
    }
    if (done >= n) break;
    if (now_s() > deadline) {
      timed_out = 1;
      break;
    }
    mc = curl_multi_poll(multi, NULL, 0, 100, NULL);
    if (mc != CURLM_OK) {
      fprintf(stderr, "curl_multi: curl_multi_poll: %s\n", curl_multi_strerror(mc));
      break;
    }
  }
  double elapsed = now_s() - t0;

  qsort(lat_us, (size_t)done, sizeof *lat_us, cmp_u32);
  printf("{\"requests\":%ld,\"ok\":%ld,\"elapsed_s\":%.6f,\"requests_per_s\":%.1f,"
         "\"p50_us\":%u,\"p99_us\":%u,\"completed\":%ld,\"failed\":%ld,\"connections\":%ld,"
         "\"not_h2\":%ld,\"timed_out\":%s,\"conns\":%ld,\"streams\":%ld,\"http\":\"%s\","
         "\"first_error\":\"%s\",\"first_bad_status\":%ld,\"libcurl\":\"%s\"}\n",
         n, ok, elapsed, elapsed > 0 ? (double)ok / elapsed : 0.0,
         percentile(lat_us, done, 0.50), percentile(lat_us, done, 0.99), done, failed, connects,
         not_h2, timed_out ? "true" : "false", conns, streams,
         http1 ? "1.1" : (tls ? "2 (TLS, ALPN)" : "2 (h2c, prior knowledge)"),
         first_error == CURLE_OK ? "" : curl_easy_strerror(first_error), first_status_fail,
         curl_version_info(CURLVERSION_NOW)->version);

  for (long i = 0; i < window; i++) {
    curl_multi_remove_handle(multi, slots[i].easy);
    curl_easy_cleanup(slots[i].easy);
  }
  curl_multi_cleanup(multi);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  free(slots);
  free(lat_us);
  free(body);
  return (ok == n && not_h2 == 0 && !timed_out) ? 0 : 1;
}
