// Checks recorded deliveries the way a receiver would, for standard_webhooks_test.py: `v1`
// (HMAC-SHA256 with the webhook's secret) with the `standardwebhooks` npm package (pinned by
// package-lock.json; its Webhook.verify also refuses a timestamp more than 5 minutes off), and
// `v1a` (Ed25519 with the daemon's public key) with node:crypto, since that package checks `v1`
// only.
//
//   node verify_standard_webhooks.mjs < cases.json
//
// Input: {"cases":[{"name","kind":"v1"|"v1a","secret"?,"public_key_pem"?,"body_base64",
// "headers":{name: value}}]}. Output: {"results":[{"name","ok","error"}]} on stdout, exit 0.
// Exit 77 (the caller skips) when the package is missing, except under CI (CI set): exit 1.
import { verify as edVerify } from "node:crypto";
import { readFileSync } from "node:fs";

let Webhook;
try {
  ({ Webhook } = await import("standardwebhooks"));
} catch (err) {
  console.log(`${process.env.CI ? "FAILED" : "SKIPPED"}: standardwebhooks not installed ` +
              `(npm ci --prefix tests/tools/fanoutd/web): ${err.message}`);
  process.exit(process.env.CI ? 1 : 77);
}

function lower(headers) {
  return Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
}

function checkV1a(c, body) {
  const h = lower(c.headers);
  const id = h["webhook-id"], ts = h["webhook-timestamp"], sigs = h["webhook-signature"];
  if (!id || !ts || !sigs) throw new Error("Missing required headers");
  const now = Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number.parseInt(ts, 10)) > 300) throw new Error("timestamp out of tolerance");
  const content = Buffer.concat([Buffer.from(`${id}.${ts}.`), body]);
  const entries = sigs.split(" ").filter((e) => e.startsWith("v1a,"));
  if (entries.length === 0) throw new Error("no v1a signature");
  if (!entries.some((e) => edVerify(null, content, c.public_key_pem,
                                    Buffer.from(e.slice(4), "base64")))) {
    throw new Error("No matching v1a signature found");
  }
}

const input = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const c of input.cases) {
  const body = Buffer.from(c.body_base64, "base64");
  try {
    if (c.kind === "v1") {
      // The raw bytes, as a receiver must pass them (a string would be re-encoded).
      new Webhook(c.secret).verify(body, c.headers);
    } else if (c.kind === "v1a") {
      checkV1a(c, body);
    } else {
      throw new Error(`unknown kind ${c.kind}`);
    }
    results.push({ name: c.name, ok: true, error: "" });
  } catch (err) {
    results.push({ name: c.name, ok: false, error: String(err.message || err) });
  }
}
console.log(JSON.stringify({ results }));
