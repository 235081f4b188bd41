// fanout-load: a load generator built on fanout's engine, the way h2load is built on nghttp2.
// tools/README.md ("fanout-load") documents every option, the output and the exit status.
//
// Two targets:
//   --url URL          the embedded engine: K orgs x T event types, each (org, type) subscribed
//                      to URL (Engine::load); this thread publishes events spread over them
//                      (Producer::publish: parse, route, sign, enqueue) into W workers that POST
//                      them; an Observer counts each event's final outcome and its latency.
//   --ingest URL       a running fanoutd: NDJSON batches to POST /v2/events with an INGEST key
//                      through transport::Client (h2c or HTTP/1.1); counts the per-item statuses
//                      of the answers and re-sends the busy ones.
//
// Engine mode, as fast as possible (default): a window of at most --window events accepted and
// not final (default 2 x W x C x M: every connection stays full and the pending queue never runs
// dry); over it, or when publish() answers busy, the publisher waits on a condition variable the
// Observer signals. --rate R paces publishing by the clock instead (same window bound).
// Bounded always: --events N (default 100000) or --duration S, and --duration-max S (default
// 600) over the whole run, after which it stops the engine and reports (exit 1).
//
// Latency: Outcome::latency_us (publish() to final outcome) in a log-bucketed histogram (16
// buckets per power of two, <= 6.25% relative error), one per worker thread, merged at the end;
// beside it Outcome::last_response_us (the last attempt's first byte written to its answer,
// what h2load reports per request), for events that got an answer.
// CPU: getrusage for the process and for the publishing thread alone.
//
// Helpers for bench/engine/engine_vs_h2load.sh: --print-body (the delivery body, for h2load),
// --sign-rate-only (Ed25519 signatures/s on this thread, engine Signer and raw BoringSSL),
// --waiting-retries (memory per waiting retry against a receiver answering 503).
//
// Exit status: 0 when every published event got a final outcome and the run was not cut (ingest:
// every event answered accepted or dropped); 1 otherwise; 2 on a usage or setup error.
//
// Files: options.{h,cc} (the command line), events.{h,cc} (what is published), measure.{h,cc}
// (histogram, CPU time, JSON, progress lines), observer.h (the engine's Observer),
// engine_mode.cc (--url), ingest_mode.cc (--ingest), extra_modes.cc (--waiting-retries,
// --sign-rate-only); modes.h declares the runs.
#include <cstdio>
#include <string>

#include "routing/envelope.h"
#include "tools/fanout-load/events.h"
#include "tools/fanout-load/modes.h"
#include "tools/fanout-load/options.h"

int main(int argc, char** argv) {
  using namespace fanout::load;
  const Options o = parse_args(argc, argv);
  if (o.print_body) {
    const EventSource src(o.orgs, event_types(o.types), o.payload_bytes, o.event_id);
    const std::string body = fanout::routing::build_delivery_body(src.types()[0], src.payload());
    std::fwrite(body.data(), 1, body.size(), stdout);
    return 0;
  }
  if (o.sign_rate_only) return run_sign_rate_only(o);
  if (!o.ingest.empty()) return run_ingest(o);
  if (o.waiting_retries) return run_waiting_retries(o);
  return run_engine(o);
}
