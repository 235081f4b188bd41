// fanoutd's app page (tools/fanoutd/web/) in a real browser: Debian's chromium, headless, driven
// by Playwright (playwright-core, pinned by package-lock.json). The test starts its own fanoutd
// and two fanout-sinks on 127.0.0.1 port 0, and checks what issue 12 asks: sign in, create two
// webhooks in one go, a duplicate refused on its type, a bad header name shows the rule, Test
// against a sink answering 200 and one answering 500, edit, delete, history with resend, HTML in
// a header value stays text, a revoked key and a 429 are said in words, PROVIDER keys pick an
// organisation, keyboard only, phone width, no request to another origin, no console error.
//
//   node page_test.mjs --fanoutd PATH --sink PATH [--chromium PATH] [--screenshots DIR]
//
// Waiting is Playwright's: every expectation polls until it holds or its timeout passes.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import assert from "node:assert/strict";

// Exit 77 (ctest: skipped) when the browser or Playwright is missing, except under CI (CI set),
// where a missing peer is a failure.
function missing(what) {
  console.log(`${process.env.CI ? "FAILED" : "SKIPPED"}: ${what}`);
  process.exit(process.env.CI ? 1 : 77);
}
let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (err) {
  missing("playwright-core not installed (npm ci --prefix tests/tools/fanoutd/web)");
}

const args = Object.fromEntries(process.argv.slice(2).reduce((acc, a, i, all) => {
  if (a.startsWith("--")) acc.push([a.slice(2), all[i + 1]]);
  return acc;
}, []));
const FANOUTD = args.fanoutd, SINK = args.sink;
const CHROMIUM = args.chromium || "/usr/bin/chromium";
const TIMEOUT = 30_000;

const tmp = mkdtempSync(join(tmpdir(), "fanoutd-page-"));
const children = [];

function cleanup() {
  for (const { child } of children) if (child.exitCode === null) child.kill("SIGKILL");
  if (!process.env.FANOUTD_KEEP_TMP) rmSync(tmp, { recursive: true, force: true });
}

// Stops every child still running with SIGTERM (SIGKILL after 30 s), so that a sanitized build
// writes its reports (LeakSanitizer runs at exit); returns the sanitizer reports found in the
// stderr of every child, running or not.
const SANITIZER_MARKERS = ["ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                           "WARNING: ThreadSanitizer"];
async function stopChildren() {
  await Promise.all(children.map(({ child }) => new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    child.on("exit", () => { clearTimeout(timer); resolve(); });
    child.kill("SIGTERM");
  })));
  return children.filter(({ stderr }) => SANITIZER_MARKERS.some((m) => stderr().includes(m)))
    .map(({ name, stderr }) => `${name}: sanitizer report in stderr:\n${stderr()}`);
}

// Spawns a program that prints "listening on 127.0.0.1:PORT" first; resolves with the port.
function listen(cmd, argv, name) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] });
    let out = "", err = "";
    children.push({ child, name, stderr: () => err });
    child.stdout.on("data", (d) => {
      out += d;
      const m = /^listening on 127\.0\.0\.1:(\d+)/m.exec(out);
      if (m) resolve({ child, port: Number(m[1]), stderr: () => err });
    });
    child.stderr.on("data", (d) => { err += d; });
    child.on("exit", (code) => reject(new Error(`${name} exited ${code}: ${err}`)));
  });
}

function cli(...argv) {
  return execFileSync(FANOUTD, argv, { encoding: "utf8" }).trim().split("\n").pop();
}

const steps = [];
async function step(name, fn) {
  process.stdout.write(`- ${name} ... `);
  await fn();
  steps.push(name);
  console.log("ok");
}

async function main() {
  if (!existsSync(CHROMIUM)) missing(`no browser at ${CHROMIUM} (apt-get install chromium)`);
  const data = join(tmp, "data");
  mkdirSync(data);
  const config = join(tmp, "fanoutd.toml");
  writeFileSync(config, "[api]\nrate_limit_per_minute = 100\n[retry]\nbase_ms = 100\n");
  const admin = cli("apikey", "create", "--data", data, "--role", "ORG_ADMIN", "--org", "42");
  const provider = cli("apikey", "create", "--data", data, "--role", "PROVIDER", "--orgs", "42,43");
  const doomed = cli("apikey", "create", "--data", data, "--role", "ORG_ADMIN", "--org", "42",
                     "--name", "doomed");
  const ingest = cli("apikey", "create", "--data", data, "--role", "INGEST", "--orgs", "42");
  const daemon = await listen(FANOUTD, ["serve", "--listen", "127.0.0.1:0", "--data", data,
    "--config", config, "--insecure", "--allow-subnet", "127.0.0.1/32"], "fanoutd");
  const okSink = await listen(SINK, ["--listen", "127.0.0.1:0", "--quiet"], "sink 200");
  const badSink = await listen(SINK, ["--listen", "127.0.0.1:0", "--quiet", "--status-mix", "500:1"],
                               "sink 500");
  const base = `http://127.0.0.1:${daemon.port}`;
  const okUrl = `http://127.0.0.1:${okSink.port}/hook`;
  const badUrl = `http://127.0.0.1:${badSink.port}/hook`;
  const api = async (method, path, key, body) => {
    const r = await fetch(base + path, { method, headers: { "x-APIKey": key,
      ...(body ? { "Content-Type": "application/json" } : {}) }, body: body && JSON.stringify(body) });
    return { status: r.status, body: r.status === 204 ? null : await r.json() };
  };

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true,
                                          args: ["--no-sandbox", "--disable-gpu"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const problems = [];
  // The browser logs every answer >= 400 it fetched; those the test provokes (a wrong key, a
  // duplicate, a revoked key, the rate limit) are expected, nothing else is.
  const provoked = /Failed to load resource: the server responded with a status of (400|401|429)/;
  page.on("console", (m) => {
    if (m.type() === "error" && !provoked.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("request", (r) => {
    if (!r.url().startsWith(base + "/")) problems.push(`request to another origin: ${r.url()}`);
  });
  const { expect } = await import("./expect.mjs");
  const alert = page.locator("#alert");
  const rows = page.locator("#hook-rows tr");
  // The list's Create opens the form; the form's Create saves (one of them is hidden at a time,
  // but a view switch is not instant: say which one).
  const listCreate = page.locator("#list-view").getByRole("button", { name: "Create" });
  const formCreate = page.locator("#hook-form").getByRole("button", { name: "Create" });
  const row = (type) => rows.filter({ has: page.getByRole("cell", { name: type, exact: true }) });
  const shots = args.screenshots;
  if (shots) mkdirSync(shots, { recursive: true });

  await step("/ redirects to the page, served with a strict CSP", async () => {
    const res = await page.goto(base + "/");
    assert.equal(new URL(page.url()).pathname, "/settings/integrations/webhooks");
    const csp = res.headers()["content-security-policy"];
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  });

  await step("a wrong key is refused in words", async () => {
    await page.getByLabel("API key").fill("fo_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(alert).toContainText("not accepted");
  });

  await step("an INGEST key is told it cannot manage webhooks", async () => {
    await page.getByLabel("API key").fill(ingest);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(alert).toContainText("INGEST key");
  });

  await step("sign in by keyboard: the empty listing leads to Create", async () => {
    await page.getByLabel("API key").fill(admin);
    await page.getByLabel("API key").press("Enter");
    await expect(page.getByRole("heading", { name: "Webhooks" })).toBeVisible();
    await expect(page.locator("#empty")).toBeVisible();
    await expect(page.locator("#empty")).toContainText("No webhooks yet");
    const stored = await page.evaluate(() => ({ s: sessionStorage.getItem("fanout.apiKey"),
                                                l: localStorage.length, c: document.cookie }));
    assert.equal(stored.s, admin);
    assert.equal(stored.l, 0);
    assert.equal(stored.c, "");
    assert.ok(!page.url().includes(admin), "the key is never in the URL");
  });

  await step("Create: two event types in one go, a header, both rows listed", async () => {
    await listCreate.focus();
    await page.keyboard.press("Enter");
    await expect(page.getByRole("heading", { name: "Create webhook" })).toBeVisible();
    await page.getByLabel("Callback URL").fill(okUrl);
    await page.getByLabel("business_created", { exact: true }).check();
    await page.getByLabel("message_created", { exact: true }).check();
    await page.getByRole("button", { name: "Add header" }).click();
    await page.getByLabel("Header name").fill("X-Token");
    await page.getByLabel("Header value").fill("s3cr3t");
    if (shots) await page.screenshot({ path: join(shots, "webhooks-create.png"), fullPage: true });
    await formCreate.click();
    await expect(page.locator("#status")).toContainText("2 webhooks created");
    await expect(rows).toHaveCount(2);
    await expect(row("business_created")).toContainText(okUrl);
    await expect(row("message_created")).toContainText("X-Token");
  });

  await step("a bad header name shows the rule as the user types", async () => {
    await listCreate.click();
    await page.getByRole("button", { name: "Add header" }).click();
    const name = page.getByLabel("Header name");
    await name.fill("Authorization");
    await expect(page.locator("#header-rows .error")).toHaveText("Must start with X-.");
    await name.fill("X-Partoo-Secret");
    await expect(page.locator("#header-rows .error")).toContainText("reserved");
    await name.fill("X-Bad Name");
    await expect(page.locator("#header-rows .error")).toContainText("a space");
    for (let i = 0; i < 4; i++) await page.getByRole("button", { name: "Add header" }).click();
    await expect(page.getByRole("button", { name: "Add header" })).toBeDisabled();
    await page.getByRole("button", { name: "Cancel" }).click();
  });

  await step("a type that has a webhook is shown as such; a duplicate is refused on its type",
             async () => {
    await listCreate.click();
    await expect(page.getByLabel("business_created", { exact: true })).toBeDisabled();
    await expect(page.locator("#type-list")).toContainText("already has a webhook");
    // Meanwhile someone else creates business_updated: the server refuses, on that type.
    const made = await api("POST", "/v2/webhooks", admin,
                           { items: [{ url: okUrl, event_type: "business_updated" }] });
    assert.equal(made.status, 200);
    await page.getByLabel("Callback URL").fill(okUrl);
    await page.getByLabel("business_updated", { exact: true }).check();
    await page.getByLabel("lead_received", { exact: true }).check();
    await formCreate.click();
    const typeRow = page.locator(".type").filter({ hasText: "business_updated" });
    await expect(typeRow.locator(".error")).toContainText("duplicate");
    await expect(page.locator("#form-alert")).toBeVisible();
    const list = await api("GET", "/v2/webhooks", admin);
    assert.equal(list.body.count, 3, "nothing half-applied: lead_received was not created");
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(rows).toHaveCount(3);
    if (shots) await page.screenshot({ path: join(shots, "webhooks-listing.png"), fullPage: true });
  });

  await step("Test: a sink answering 200 and one answering 500, nothing saved", async () => {
    await listCreate.click();
    await page.getByLabel("Callback URL").fill(okUrl);
    await page.getByLabel("business_deleted", { exact: true }).check();
    await page.getByLabel("lead_received", { exact: true }).check();
    await page.getByRole("button", { name: "Test" }).click();
    const results = page.locator("#test-results table tbody tr");
    await expect(results).toHaveCount(2);
    await expect(results.nth(0)).toContainText("Success");
    await expect(results.nth(0)).toContainText("200");
    await expect(results.nth(1)).toContainText("lead_received");
    await page.getByLabel("Callback URL").fill(badUrl);
    await page.getByRole("button", { name: "Test" }).click();
    await expect(results.nth(0)).toContainText("Failed");
    await expect(results.nth(0)).toContainText("500");
    await expect(page.locator("#test-results table tr.ok")).toHaveCount(0);
    assert.equal((await api("GET", "/v2/webhooks", admin)).body.count, 3, "nothing saved");
    await page.getByRole("button", { name: "Cancel" }).click();
  });

  await step("Edit: the URL and a header value holding HTML, shown as text", async () => {
    await row("business_created").getByRole("button", { name: "Edit" }).click();
    await expect(page.getByRole("heading", { name: "Edit webhook" })).toBeVisible();
    await page.getByLabel("Callback URL").fill(okUrl + "?v=2");
    await page.getByLabel("Header value").fill('<img src=x onerror="window.__xss=1">');
    await page.getByRole("button", { name: "Save" }).click();
    await expect(page.locator("#status")).toContainText("Webhook saved");
    await expect(row("business_created")).toContainText(okUrl + "?v=2");
    await expect(row("business_created")).toContainText('<img src=x onerror="window.__xss=1">');
    assert.equal(await page.locator("#hook-rows img").count(), 0, "no element made from a value");
    assert.equal(await page.evaluate(() => window.__xss), undefined, "nothing ran");
  });

  await step("Delete asks first, then removes the row", async () => {
    await row("message_created").getByRole("button", { name: "Delete" }).click();
    const dialog = page.getByRole("dialog");
    await expect(dialog).toContainText("message_created");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await expect(rows).toHaveCount(3);
    await row("message_created").getByRole("button", { name: "Delete" }).click();
    await dialog.getByRole("button", { name: "Delete" }).click();
    await expect(rows).toHaveCount(2);
    await expect(page.locator("#status")).toContainText("deleted");
  });

  await step("Delivery history with resend", async () => {
    const r = await api("POST", "/v2/events", ingest, { id: "page-e1", org_id: 42,
      type: "business_created", payload: { n: 1 } });
    assert.equal(r.status, 202);
    await row("business_created").getByRole("button", { name: "History" }).click();
    await expect(page.getByRole("heading", { name: "Delivery history: business_created" }))
      .toBeVisible();
    const deliveries = page.locator("#history-rows tr");
    await expect(async () => {
      await page.getByRole("button", { name: "Back to webhooks" }).click();
      await row("business_created").getByRole("button", { name: "History" }).click();
      await expect(deliveries.first()).toContainText("delivered", { timeout: 1000 });
    }).toPass();
    await deliveries.first().getByRole("button", { name: "Resend" }).click();
    await expect(page.locator("#status")).toContainText("sent again");
    await expect(deliveries).toHaveCount(2);
    await page.getByRole("button", { name: "Back to webhooks" }).click();
  });

  await step("phone width: readable, nothing wider than the screen", async () => {
    await page.setViewportSize({ width: 375, height: 800 });
    await expect(rows).toHaveCount(2);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    assert.equal(wide, false);
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  await step("sign out forgets the key", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  await step("a key revoked meanwhile is said in words", async () => {
    await page.getByLabel("API key").fill(doomed);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(rows).toHaveCount(2);
    const listed = execFileSync(FANOUTD, ["apikey", "list", "--data", data], { encoding: "utf8" });
    const id = listed.split("\n").find((l) => l.includes("doomed")).trim().split(/\s+/)[0];
    cli("apikey", "revoke", "--data", data, id);
    // Keys are cached for up to 1 s: wait until the daemon refuses it, then use the page.
    await expect(async () => {
      assert.equal((await api("GET", "/v2/webhooks", doomed)).status, 401);
    }).toPass();
    await listCreate.click();
    await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
    await expect(alert).toContainText("revoked");
  });

  await step("PROVIDER: pick an organisation; 429 says how long to wait", async () => {
    await page.getByLabel("API key").fill(provider);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("Organisation").selectOption("43");
    await page.getByRole("button", { name: "Continue" }).click();
    await expect(page.locator("#empty")).toBeVisible();
    let status = 0;
    for (let i = 0; i < 200 && status !== 429; i++) {
      status = (await api("GET", "/v2/webhooks?org_id=43", provider)).status;
    }
    assert.equal(status, 429);
    await listCreate.click();
    await expect(alert).toContainText(/Too many requests for this organisation: try again in \d+ second/);
  });

  assert.deepEqual(problems, [], "no console error, no page error, no other origin");
  await browser.close();
  await new Promise((resolve) => { daemon.child.on("exit", resolve); daemon.child.kill("SIGTERM"); });
  assert.equal(daemon.child.exitCode, 0, `fanoutd exit: ${daemon.stderr()}`);
  assert.deepEqual(await stopChildren(), [], "no sanitizer report from fanoutd or the sinks");
  console.log(`page test: ${steps.length} steps passed`);
}

main().then(cleanup, async (err) => {
  console.log("FAILED");
  console.error(err);
  for (const report of await stopChildren()) console.error(report);
  cleanup();
  process.exit(1);
});
