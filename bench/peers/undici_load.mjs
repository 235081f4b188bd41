// undici_load: the Node.js undici load client, the "undici" peer of bench/compare.sh.
// N POSTs of one body to one URL through an undici Pool, C connections, then one JSON line:
//
//   {"requests":N,"ok":2xx answers,"elapsed_s":...,"requests_per_s":...,"p50_us":...,
//    "p99_us":..., ...details}
//
// HTTP/1.1 (--http1, http:// or https://): C keep-alive connections, pipelining 1, C requests in
// flight. HTTP/2 (https:// only: undici speaks h2 only when ALPN picks it, never h2c): allowH2,
// C connections x M streams (pipelining and maxConcurrentStreams M), C x M in flight; the
// certificate is not verified (the local self-signed one). The ALPN protocol of every connection
// is recorded: "alpn" in the output, and a run that did not get what it asked for fails.
// Latency: from pool.request() to the end of the response body.
//
// Usage: node undici_load.mjs --url URL --requests N --body FILE [--conns C] [--streams M]
//                             [--http1] [--timeout S]
// Exit status: 0 when all N requests were answered 2xx within the timeout, 1 otherwise, 2 on a
// usage error.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import process from 'node:process';
import { Pool, buildConnector } from 'undici';

function usage(code) {
  process.stderr.write(
    'usage: node undici_load.mjs --url URL --requests N --body FILE [--conns C] [--streams M]\n' +
      '                            [--http1] [--timeout S]\n' +
      '  --url URL       https:// (h2 by ALPN) or, with --http1, http:// or https://\n' +
      '  --requests N    POSTs to complete\n' +
      '  --body FILE     request body (sent as application/json)\n' +
      '  --conns C       connections (default 1)\n' +
      '  --streams M     streams per connection (default 100; 1 with --http1)\n' +
      '  --http1         HTTP/1.1 keep-alive, pipelining 1\n' +
      '  --timeout S     give up after S seconds (default 120)\n',
  );
  process.exit(code);
}

function positive(flag, text) {
  if (!/^[1-9][0-9]*$/.test(text ?? '')) {
    process.stderr.write(`undici_load: ${flag} wants a positive integer, got '${text}'\n`);
    process.exit(2);
  }
  return Number(text);
}

const opts = { conns: 1, streams: 100, http1: false, timeout: 120 };
let streamsGiven = false;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--http1') { opts.http1 = true; continue; }
  if (a === '-h' || a === '--help') usage(0);
  const v = argv[++i];
  if (v === undefined) { process.stderr.write(`undici_load: ${a} needs a value\n`); usage(2); }
  switch (a) {
    case '--url': opts.url = v; break;
    case '--requests': opts.requests = positive(a, v); break;
    case '--body': opts.body = v; break;
    case '--conns': opts.conns = positive(a, v); break;
    case '--streams': opts.streams = positive(a, v); streamsGiven = true; break;
    case '--timeout': opts.timeout = positive(a, v); break;
    default: process.stderr.write(`undici_load: unknown option ${a}\n`); usage(2);
  }
}
if (!opts.url || !opts.requests || !opts.body) usage(2);
const url = new URL(opts.url);
const tls = url.protocol === 'https:';
if (opts.http1) {
  if (streamsGiven && opts.streams !== 1) {
    process.stderr.write('undici_load: --http1 sends one request at a time per connection\n');
    process.exit(2);
  }
  opts.streams = 1;
} else if (!tls) {
  process.stderr.write('undici_load: undici has no h2c; HTTP/2 needs https:// (or use --http1)\n');
  process.exit(2);
}

const body = readFileSync(opts.body);
const n = opts.requests;
const window = Math.min(n, opts.conns * opts.streams);

// Every connection's negotiated protocol (ALPN over TLS; "http/1.1" for plain TCP).
const alpn = {};
const baseConnect = buildConnector({ allowH2: !opts.http1, rejectUnauthorized: false });
function connect(options, callback) {
  baseConnect(options, (err, socket) => {
    if (!err) {
      const proto = tls ? socket.alpnProtocol || 'none' : 'http/1.1';
      alpn[proto] = (alpn[proto] || 0) + 1;
    }
    callback(err, socket);
  });
}

const pool = new Pool(url.origin, {
  connections: opts.conns,
  pipelining: opts.streams,
  allowH2: !opts.http1,
  maxConcurrentStreams: opts.streams,
  connect,
  keepAliveTimeout: 600e3,
  keepAliveMaxTimeout: 600e3,
});

const path = url.pathname + url.search;
const headers = { 'content-type': 'application/json' };
const latUs = new Float64Array(n);
let issued = 0;
let done = 0;
let ok = 0;
let failed = 0;
let firstError = '';
let firstBadStatus = 0;

async function worker() {
  while (issued < n) {
    issued++;
    const t = performance.now();
    try {
      const res = await pool.request({ path, method: 'POST', body, headers });
      await res.body.dump();
      if (res.statusCode >= 200 && res.statusCode < 300) {
        ok++;
      } else {
        failed++;
        if (!firstBadStatus) firstBadStatus = res.statusCode;
      }
    } catch (err) {
      failed++;
      if (!firstError) firstError = String(err && (err.code || err.message) || err);
    }
    latUs[done++] = (performance.now() - t) * 1000;
  }
}

function percentile(sorted, count, q) {
  if (count === 0) return 0;
  const i = Math.min(count - 1, Math.max(0, Math.round(q * count) - 1));
  return Math.round(sorted[i]);
}

const wanted = opts.http1 ? 'http/1.1' : 'h2';
function report(elapsedS, timedOut) {
  const sorted = latUs.subarray(0, done).sort();
  const wrongProto = Object.keys(alpn).some((p) => p !== wanted);
  const out = {
    requests: n,
    ok,
    elapsed_s: Number(elapsedS.toFixed(6)),
    requests_per_s: Number((elapsedS > 0 ? ok / elapsedS : 0).toFixed(1)),
    p50_us: percentile(sorted, done, 0.5),
    p99_us: percentile(sorted, done, 0.99),
    completed: done,
    failed,
    timed_out: timedOut,
    conns: opts.conns,
    streams: opts.streams,
    http: opts.http1 ? '1.1' : '2 (TLS, ALPN)',
    alpn,
    first_error: firstError,
    first_bad_status: firstBadStatus,
    undici: undiciVersion(),
    node: process.versions.node,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  return ok === n && !timedOut && !wrongProto ? 0 : 1;
}

function undiciVersion() {
  try {
    const pkg = new URL('./node_modules/undici/package.json', import.meta.url);
    return JSON.parse(readFileSync(pkg, 'utf8')).version;
  } catch {
    return '?';
  }
}

const t0 = performance.now();
const timer = setTimeout(() => {
  const code = report((performance.now() - t0) / 1000, true);
  process.exit(code || 1);
}, opts.timeout * 1000);

await Promise.all(Array.from({ length: window }, worker));
const elapsed = (performance.now() - t0) / 1000;
clearTimeout(timer);
const code = report(elapsed, false);
await pool.destroy();
process.exit(code);
