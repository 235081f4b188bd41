// fanoutd's app page (tools/fanoutd/web/) in a real browser: Debian's chromium, headless, driven
// by Playwright (playwright-core, pinned by package-lock.json). The test starts its own fanoutd
// and two fanout-sinks on 127.0.0.1 port 0, and checks: sign in, create two
// webhooks in one go, a duplicate refused on its type, a bad header name and a bad URL show the
// rule as typed, Test against a sink answering 200 and one answering 500 (and a 400 on the
// field), edit, delete, history with resend, HTML in a header value stays text, a revoked key
// (also on reload), 403, 429, 5xx, the network and a timeout said in words, a double click
// creating once, PROVIDER keys picking an organisation, pagination, keyboard only, phone width,
// no request to another origin, no console error. The error paths are in page_errors.mjs.
//
//   node page_test.mjs --fanoutd PATH --sink PATH [--chromium PATH] [--screenshots DIR]
//
// --screenshots DIR writes webhooks-listing.png and webhooks-create.png there (docs/ holds
// copies). Waiting is Playwright's: every expectation polls until it holds or its timeout passes;
// the browser's clock is moved by page.clock, never waited for.
import { execFileSync } from "node:child_process";
import { writeFileSync, mkdirSync, existsSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { args, missing, tmp, cleanup, stopChildren, listen, cli as run, step, steps } from "./harness.mjs";
import { errorSteps, timeoutStep } from "./page_errors.mjs";

let chromium;
try {
  ({ chromium } = await import("playwright-core"));
} catch (err) {
  missing("playwright-core not installed (npm ci --prefix tests/tools/fanoutd/web)");
}

const FANOUTD = args.fanoutd, SINK = args.sink;
const CHROMIUM = args.chromium || "/usr/bin/chromium";
const TIMEOUT = 30_000;
const cli = (...argv) => run(FANOUTD, ...argv);
// Six types besides Partoo's six, so that one organisation can have 11 webhooks (two pages).
const EXTRA_TYPES = ["custom_01", "custom_02", "custom_03", "custom_04", "custom_05", "custom_06"];

async function main() {
  if (!existsSync(CHROMIUM)) missing(`no browser at ${CHROMIUM} (apt-get install chromium)`);
  const data = join(tmp, "data");
  mkdirSync(data);
  const config = join(tmp, "fanoutd.toml");
  writeFileSync(config, `event_types = [${EXTRA_TYPES.map((t) => `"${t}"`).join(", ")}]\n` +
                        "[api]\nrate_limit_per_minute = 300\n[retry]\nbase_ms = 100\n");
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
  // The browser logs every answer >= 400 it fetched, and every request the network refused;
  // those the test provokes (a wrong key, a duplicate, a revoked key, a refused port, 403, 429,
  // 503, going offline) are expected, nothing else is.
  const provoked = new RegExp("Failed to load resource: (the server responded with a status of " +
                              "(400|401|403|429|503)|net::ERR_INTERNET_DISCONNECTED)");
  page.on("console", (m) => {
    if (m.type() === "error" && !provoked.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const posts = [];  // POST /v2/webhooks sent by the page
  page.on("request", (r) => {
    if (!r.url().startsWith(base + "/")) problems.push(`request to another origin: ${r.url()}`);
    if (r.method() === "POST" && new URL(r.url()).pathname === "/v2/webhooks") posts.push(r.url());
  });
  const { expect } = await import("./expect.mjs");
  const alert = page.locator("#alert");
  const status = page.locator("#status");
  const rows = page.locator("#hook-rows tr");
  // The list's Create (title row, and the empty state's own) opens the form; the form's Create
  // saves (one of them is hidden at a time, but a view switch is not instant: say which one).
  const listCreate = page.locator("#list-view .title-row").getByRole("button", { name: "Create" });
  const emptyCreate = page.locator("#empty").getByRole("button", { name: "Create" });
  const formCreate = page.locator("#hook-form").getByRole("button", { name: "Create" });
  const testButton = page.getByRole("button", { name: "Test", exact: true });
  const urlError = page.locator("#url-error");
  // A webhook's row by its event type (data-type: at phone width a cell's text also holds its
  // column's name, from CSS).
  const row = (type) => page.locator(`#hook-rows tr[data-type="${type}"]`);
  const signInHeading = page.getByRole("heading", { name: "Sign in" });
  const listHeading = page.getByRole("heading", { name: "Webhooks", exact: true });
  const wide = () => page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  // The label a stacked cell shows at phone width (td::before, from data-label).
  const cellLabel = (cell) => cell.evaluate((td) => getComputedStyle(td, "::before").content);
  // Holds the page's calls to `pattern` (method `method`) until release(): what the page does
  // while a call is in flight, with no clock involved.
  const hold = async (pattern, method) => {
    let release;
    const gate = new Promise((resolve) => { release = resolve; });
    const handled = [];
    await page.route(pattern, (route) => {
      const done = (async () => {
        if (route.request().method() === method) await gate;
        await route.continue();
      })();
      handled.push(done);
      return done;
    });
    return async () => { release(); await Promise.all(handled); await page.unroute(pattern); };
  };
  // Presses `key` (Tab, Shift+Tab) until `locator` has the focus: reachable by keyboard alone.
  const tabTo = async (locator, key = "Tab") => {
    const target = await locator.elementHandle();
    for (let i = 0; i < 80; i++) {
      if (await target.evaluate((e) => e === document.activeElement)) return;
      await page.keyboard.press(key);
    }
    throw new Error(`not reachable with ${key}`);
  };
  const shots = args.screenshots;
  if (shots) mkdirSync(shots, { recursive: true });

  await step("/ redirects to the page, served with a strict CSP", async () => {
    const res = await page.goto(base + "/");
    assert.equal(new URL(page.url()).pathname, "/settings/integrations/webhooks");
    const csp = res.headers()["content-security-policy"];
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline/);
    await expect(signInHeading).toBeVisible();
  });

  await step("the API key field is masked but no password field (nothing offers to save it)",
             async () => {
    const key = page.getByLabel("API key");
    assert.equal(await key.getAttribute("type"), "text");
    assert.equal(await key.getAttribute("autocomplete"), "off");
    assert.equal(await key.evaluate((e) => getComputedStyle(e).webkitTextSecurity), "disc");
    assert.equal(await page.locator("input[type=password]").count(), 0);
  });

  await step("a wrong key is refused in words", async () => {
    await page.getByLabel("API key").fill("fo_wrong");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(alert).toContainText("not accepted");
    await expect(signInHeading).toBeVisible();
  });

  await step("an INGEST key is told it cannot manage webhooks", async () => {
    await page.getByLabel("API key").fill(ingest);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(alert).toContainText("INGEST key");
  });

  await step("sign in by keyboard: the empty listing has a Create button of its own", async () => {
    await page.getByLabel("API key").fill(admin);
    await page.getByLabel("API key").press("Enter");
    await expect(listHeading).toBeVisible();
    await expect(page.locator("#empty")).toContainText("No webhooks yet");
    const stored = await page.evaluate(() => ({ s: sessionStorage.getItem("fanout.apiKey"),
                                                l: localStorage.length, c: document.cookie }));
    assert.equal(stored.s, admin);
    assert.equal(stored.l, 0);
    assert.equal(stored.c, "");
    assert.ok(!page.url().includes(admin), "the key is never in the URL");
    await emptyCreate.click();
    await expect(page.getByRole("heading", { name: "Create webhook" })).toBeVisible();
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(emptyCreate).toBeVisible();
  });

  await step("Create: two event types in one go, a header, both rows; a double click creates once",
             async () => {
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
    const release = await hold("**/v2/webhooks", "POST");
    const before = posts.length;
    await formCreate.dblclick();
    await expect(formCreate).toBeDisabled();
    await release();
    await expect(status).toContainText("2 webhooks created");
    assert.equal(posts.length - before, 1, "a double click sends one create");
    await expect(rows).toHaveCount(2);
    await expect(row("business_created")).toContainText(okUrl);
    await expect(row("message_created")).toContainText("X-Token");
  });

  await step("a new view clears the last notice", async () => {
    await listCreate.click();
    await expect(page.getByRole("heading", { name: "Create webhook" })).toBeVisible();
    await expect(status).toHaveText("");
    assert.equal(await status.isVisible(), false);
  });

  await step("a bad header name or value shows the rule as the user types; Remove drops a row",
             async () => {
    await page.getByRole("button", { name: "Add header" }).click();
    const name = page.getByLabel("Header name");
    const error = page.locator("#header-rows .error");
    await name.fill("Authorization");
    await expect(error).toHaveText("Must start with X-.");
    await name.fill("X-Partoo-Secret");
    await expect(error).toContainText("reserved");
    await name.fill("X-Bad Name");
    await expect(error).toContainText("a space");
    await name.fill("X-Good");
    await expect(error).toHaveText("");
    const value = page.getByLabel("Header value");
    // Characters as the server counts them: 300 emoji are 300 characters (600 UTF-16 units).
    await value.fill("😀".repeat(300));
    await expect(error).toHaveText("");
    await value.fill("😀".repeat(513));
    await expect(error).toContainText("At most 512 characters");
    await value.fill(" token");
    await expect(error).toContainText("start or end with a space");
    await value.fill("token");
    await expect(error).toHaveText("");
    for (let i = 0; i < 4; i++) await page.getByRole("button", { name: "Add header" }).click();
    await expect(page.getByRole("button", { name: "Add header" })).toBeDisabled();
    const names = page.getByLabel("Header name");
    await expect(names).toHaveCount(5);
    await names.nth(1).fill("X-Second");
    await page.getByRole("button", { name: "Remove header" }).first().click();
    await expect(names).toHaveCount(4);
    assert.equal(await names.first().inputValue(), "X-Second", "the first row went");
    await expect(page.getByRole("button", { name: "Add header" })).toBeVisible();
    assert.equal(await page.getByRole("button", { name: "Add header" }).isDisabled(), false);
  });

  await step("a bad URL shows the rule as the user types", async () => {
    const url = page.getByLabel("Callback URL");
    await url.fill("https://example.com/a b");
    await expect(urlError).toContainText("spaces");
    await url.fill("https://example.com/hook#top");
    await expect(urlError).toContainText("#fragment");
    await url.fill("https://exämple.com/");
    await expect(urlError).toContainText("non-ASCII");
    await url.fill("ftp://example.com/");
    await url.blur();
    await expect(urlError).toContainText("Must start with https:// or http://");
    await url.fill("https://bad_host.example/");
    await expect(urlError).toContainText("only letters, digits");
    await url.fill(okUrl);
    await expect(urlError).toHaveText("");
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
    // Changing the checkbox clears its type's error.
    await page.getByLabel("business_updated", { exact: true }).uncheck();
    await expect(typeRow.locator(".error")).toHaveText("");
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(rows).toHaveCount(3);
    if (shots) await page.screenshot({ path: join(shots, "webhooks-listing.png"), fullPage: true });
  });

  await step("Test: a sink answering 200 and one answering 500, nothing saved; a 400 on its field",
             async () => {
    await listCreate.click();
    await page.getByLabel("Callback URL").fill(okUrl);
    await page.getByLabel("business_deleted", { exact: true }).check();
    await page.getByLabel("lead_received", { exact: true }).check();
    const release = await hold("**/v2/webhooks/tryout", "POST");
    await testButton.click();
    await expect(testButton).toBeDisabled();
    await release();
    const results = page.locator("#test-results table tbody tr");
    await expect(results).toHaveCount(2);
    await expect(results.nth(0)).toContainText("Success");
    await expect(results.nth(0).locator("td").nth(2)).toHaveText("200");
    await expect(results.nth(0).locator("td").nth(3)).toContainText(/^(\d+|< 1) ms$/);
    await expect(results.nth(1)).toContainText("lead_received");
    await page.getByLabel("Callback URL").fill(badUrl);
    await testButton.click();
    await expect(results.nth(0)).toContainText("Failed");
    await expect(results.nth(0).locator("td").nth(2)).toHaveText("500");
    await expect(results.nth(0).locator("td").nth(3)).toContainText(/^(\d+|< 1) ms$/);
    await expect(page.locator("#test-results table tr.ok")).toHaveCount(0);
    // Port 81 passes the page's rules but not the server's allowed_ports: its 400 on the field.
    await page.getByLabel("Callback URL").fill("http://127.0.0.1:81/hook");
    await expect(urlError).toHaveText("");
    await testButton.click();
    await expect(urlError).toContainText("port 81 is not allowed");
    assert.equal((await api("GET", "/v2/webhooks", admin)).body.count, 3, "nothing saved");
    await page.getByRole("button", { name: "Cancel" }).click();
  });

  await step("Edit: the URL and a header value holding HTML, shown as text", async () => {
    await row("business_created").getByRole("button", { name: "Edit" }).click();
    await expect(page.getByRole("heading", { name: "Edit webhook" })).toBeVisible();
    await page.getByLabel("Callback URL").fill(okUrl + "?v=2");
    await page.getByLabel("Header value").fill('<img src=x onerror="window.__xss=1">');
    const release = await hold("**/v2/webhooks/*", "PATCH");
    await page.getByRole("button", { name: "Save" }).click();
    await expect(page.getByRole("button", { name: "Save" })).toBeDisabled();
    await release();
    await expect(status).toContainText("Webhook saved");
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
    await expect(status).toContainText("deleted");
  });

  await step("keyboard only: create and delete with Tab, Enter and Space", async () => {
    await tabTo(listCreate);
    await page.keyboard.press("Enter");
    await expect(page.getByRole("heading", { name: "Create webhook" })).toBeVisible();
    await expect(page.getByLabel("Callback URL")).toBeFocused();
    await page.keyboard.type(okUrl);
    await tabTo(page.getByLabel("custom_01", { exact: true }));
    await page.keyboard.press("Space");
    await tabTo(formCreate);
    await page.keyboard.press("Enter");
    await expect(status).toContainText("1 webhook created");
    await expect(rows).toHaveCount(3);
    await tabTo(row("custom_01").getByRole("button", { name: "Delete" }));
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog");
    await expect(dialog.getByRole("button", { name: "Cancel" })).toBeFocused();
    await tabTo(dialog.getByRole("button", { name: "Delete" }), "Shift+Tab");
    await page.keyboard.press("Space");
    await expect(status).toContainText("custom_01 deleted");
    await expect(rows).toHaveCount(2);
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
    await expect(status).toContainText("sent again");
    await expect(deliveries).toHaveCount(2);
    await page.getByRole("button", { name: "Back to webhooks" }).click();
  });

  await step("phone width: listing, create form (a long URL) and history fit, cells say their column",
             async () => {
    // No hyphen: nothing in it where a line may break.
    const longUrl = `${okUrl}/${"verylongpathsegment".repeat(20)}`;
    const made = await api("POST", "/v2/webhooks", admin,
                           { items: [{ url: longUrl, event_type: "message_updated" }] });
    assert.equal(made.status, 200);
    await page.setViewportSize({ width: 375, height: 800 });
    await listCreate.click();
    await expect(page.locator("#type-list")).toContainText(longUrl);
    assert.equal(await wide(), false, "create form: nothing wider than the screen");
    await page.getByRole("button", { name: "Cancel" }).click();
    await expect(rows).toHaveCount(3);
    assert.equal(await wide(), false, "listing: nothing wider than the screen");
    assert.equal(await cellLabel(row("message_updated").locator("td").first()), '"Callback URL"');
    assert.equal(await cellLabel(row("message_updated").locator("td").nth(1)), '"Event type"');
    await row("business_created").getByRole("button", { name: "History" }).click();
    await expect(page.getByRole("heading", { name: "Delivery history: business_created" }))
      .toBeVisible();
    const deliveries = page.locator("#history-rows tr");
    await expect(deliveries).toHaveCount(2);
    assert.equal(await wide(), false, "history: nothing wider than the screen");
    assert.equal(await cellLabel(deliveries.first().locator("td").first()), '"Event id"');
    assert.equal(await cellLabel(deliveries.first().locator("td").nth(2)), '"Outcome"');
    await page.getByRole("button", { name: "Back to webhooks" }).click();
    await page.setViewportSize({ width: 1280, height: 860 });
    await expect(rows).toHaveCount(3);
  });

  await step("sign out forgets the key", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(signInHeading).toBeVisible();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  const t = { page, context, expect, api, alert, status, rows, row, listCreate, signInHeading,
              listHeading, admin, provider, doomed, data, FANOUTD, cli };
  await errorSteps(t);

  await step("PROVIDER: pick an organisation; pages of 10; 429 says how long to wait", async () => {
    const types = ["business_created", "business_updated", "business_deleted", "message_created",
                   "message_updated", "lead_received", ...EXTRA_TYPES.slice(0, 5)];
    const made = await api("POST", "/v2/webhooks?org_id=43", provider,
                           { items: types.map((event_type) => ({ url: okUrl, event_type })) });
    assert.equal(made.status, 200);
    await page.getByLabel("API key").fill(provider);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("Organisation").selectOption("43");
    await page.getByRole("button", { name: "Continue" }).click();
    const pageText = page.locator("#page-text");
    await expect(pageText).toHaveText("Page 1 of 2 (11 webhooks)");
    await expect(rows).toHaveCount(10);
    await expect(page.getByRole("button", { name: "Previous page" })).toBeDisabled();
    await page.getByRole("button", { name: "Next page" }).click();
    await expect(pageText).toHaveText("Page 2 of 2 (11 webhooks)");
    await expect(rows).toHaveCount(1);
    await expect(page.getByRole("button", { name: "Next page" })).toBeDisabled();
    await page.getByRole("button", { name: "Previous page" }).click();
    await expect(rows).toHaveCount(10);
    await page.getByRole("button", { name: "Next page" }).click();
    await expect(rows).toHaveCount(1);
    // Deleting the last row of the last page goes back to the page before, now the last one.
    await rows.first().getByRole("button", { name: "Delete" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await expect(rows).toHaveCount(10);
    await expect(pageText).toHaveText("Page 1 of 1 (10 webhooks)");
    assert.equal(await page.locator("#pages").isVisible(), false, "one page: no page buttons");
    // Spend the organisation's budget, then use the page. The budget refills as time passes, so
    // the page's call may still get through (the form opens): then go back and spend it again.
    await expect(async () => {
      if (await page.locator("#form-view").isVisible()) {
        await page.getByRole("button", { name: "Cancel" }).click();
      }
      let code = 0;
      for (let i = 0; i < 600 && code !== 429; i++) {
        code = (await api("GET", "/v2/webhooks?org_id=43", provider)).status;
      }
      assert.equal(code, 429);
      await listCreate.click();
      await expect(alert).toContainText(/Too many requests for this organisation: try again in \d+ second/,
                                        { timeout: 2000 });
    }).toPass();
  });

  // Last: it installs a fake clock in the page.
  await timeoutStep(t);

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
