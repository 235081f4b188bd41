// fanout-load's runs, one per mode; each returns the exit status (tools/README.md).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fanout/engine.h"
#include "tools/fanout-load/events.h"
#include "tools/fanout-load/options.h"

namespace fanout::load {

// --url: the embedded engine against a receiver (engine_mode.cc).
int run_engine(const Options& o);
// --waiting-retries: memory per waiting retry (extra_modes.cc).
int run_waiting_retries(const Options& o);
// --sign-rate-only: Ed25519 signatures/s on this thread (extra_modes.cc).
int run_sign_rate_only(const Options& o);
// --ingest: NDJSON batches to a running fanoutd (ingest_mode.cc).
int run_ingest(const Options& o);

// The engine for --url: options, signing key and one subscription per (org, type), loaded and
// started, for at most `budget` events in flight. Exits 2 on a setup error.
std::unique_ptr<fanout::Engine> make_engine(const Options& o, const EventSource& src,
                                            fanout::Observer* observer, std::uint64_t budget);

// "h2c", "h2 over TLS (ALPN)", "http/1.1" or "http/1.1 over TLS", for the summary.
std::string protocol_name(const Options& o, std::string_view url);

}  // namespace fanout::load
