// The page test's error paths (page_test.mjs hands over its page and helpers in `t`): a key
// revoked meanwhile and a failing fanoutd on reload, 403, the network, and a call that gets no
// answer (the page's timeout, reached by moving the browser's fake clock, not by waiting).
import { execFileSync } from "node:child_process";
import assert from "node:assert/strict";
import { step } from "./harness.mjs";

const PAGE_TIMEOUT_MS = 30_000;  // tools/fanoutd/web/api.js TIMEOUT_MS

// Holds the page's requests for the whole webhook list (the form asks for it): `asked` resolves
// once the first is held, `held` keeps their routes; the caller answers them and unroutes
// `listAll`.
async function holdListRequests(page) {
  let seen;
  const asked = new Promise((resolve) => { seen = resolve; });
  const held = [];
  const listAll = (url) => url.pathname === "/v2/webhooks" && url.searchParams.get("per_page") === "100";
  await page.route(listAll, (route) => { held.push(route); seen(); });
  return { asked, held, listAll };
}

async function signIn(t, key) {
  await t.page.getByLabel("API key").fill(key);
  await t.page.getByRole("button", { name: "Sign in" }).click();
  await t.expect(t.listHeading).toBeVisible();
}

export async function errorSteps(t) {
  const { page, context, expect, alert, rows, row, signInHeading, listHeading, listCreate } = t;
  const kept = () => page.evaluate(() => sessionStorage.getItem("fanout.apiKey"));
  const retry = page.getByRole("button", { name: "Retry" });

  await step("a key revoked meanwhile: a reload signs out with the reason", async () => {
    await signIn(t, t.doomed);
    await expect(rows).toHaveCount(3);
    const listed = execFileSync(t.FANOUTD, ["apikey", "list", "--data", t.data], { encoding: "utf8" });
    const id = listed.split("\n").find((l) => l.includes("doomed")).trim().split(/\s+/)[0];
    t.cli("apikey", "revoke", "--data", t.data, id);
    // Keys are cached for up to 1 s: wait until the daemon refuses it, then use the page.
    await expect(async () => {
      assert.equal((await t.api("GET", "/v2/webhooks", t.doomed)).status, 401);
    }).toPass();
    await page.reload();
    await expect(signInHeading).toBeVisible();
    await expect(page.getByLabel("API key")).toBeVisible();
    await expect(alert).toContainText("revoked");
    assert.equal(await page.evaluate(() => sessionStorage.length), 0, "the revoked key is gone");
    assert.equal(await retry.isVisible(), false);
  });

  await step("a reload while fanoutd fails (503, the network): the sign-in view, Retry", async () => {
    await signIn(t, t.admin);
    await page.route("**/v2/me", (route) => route.fulfill({ status: 503,
      contentType: "application/json", body: '{"error":{"json":"the daemon is stopping"}}' }));
    await page.reload();
    await expect(signInHeading).toBeVisible();
    await expect(alert).toContainText("busy or stopping");
    await expect(retry).toBeVisible();
    assert.equal(await kept(), t.admin, "not the key's fault: it is kept");
    await page.unroute("**/v2/me");
    await page.route("**/v2/me", (route) => route.abort("internetdisconnected"));
    await retry.click();
    await expect(alert).toContainText("Could not reach fanoutd");
    await expect(retry).toBeVisible();
    await page.unroute("**/v2/me");
    await retry.click();
    await expect(listHeading).toBeVisible();
    await expect(rows).toHaveCount(3);
  });

  await step("403 is said in words, nothing changes", async () => {
    await page.route("**/v2/webhooks/*", (route) => route.request().method() === "DELETE"
      ? route.fulfill({ status: 403, contentType: "application/json",
                        body: '{"error":{"authorization":"not an admin of this organisation"}}' })
      : route.continue());
    await row("business_updated").getByRole("button", { name: "Delete" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete" }).click();
    await expect(alert).toContainText("This API key may not do that (not an admin of this organisation)");
    await expect(listHeading).toBeVisible();
    await expect(rows).toHaveCount(3);
    await page.unroute("**/v2/webhooks/*");
  });

  await step("offline: the network failure is said in words, the page stays", async () => {
    await context.setOffline(true);
    await listCreate.click();
    await expect(alert).toContainText("Could not reach fanoutd");
    await expect(listHeading).toBeVisible();
    await context.setOffline(false);
    await listCreate.click();
    await expect(page.getByRole("heading", { name: "Create webhook" })).toBeVisible();
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(signInHeading).toBeVisible();
  });

  // A CI run under ASan lost this race: Cancel's list came back after Sign out and showed the
  // list again over the sign-in view.
  await step("an answer that comes after sign-out brings no view back", async () => {
    await signIn(t, t.admin);
    const { asked, held, listAll } = await holdListRequests(page);
    await listCreate.click();
    await asked;  // the form waits for the list
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(signInHeading).toBeVisible();
    const answered = page.waitForResponse((r) => listAll(new URL(r.url())));
    for (const route of held) await route.continue();
    await answered;
    await page.unroute(listAll);
    // Let the page's fetch chain run out (tasks, not time), then look.
    for (let i = 0; i < 5; i++) await page.evaluate(() => new Promise((r) => setTimeout(r, 0)));
    await expect(signInHeading).toBeVisible();
    assert.equal(await page.locator("#form-view").isHidden(), true, "the form stayed hidden");
    assert.equal(await page.getByLabel("API key").isEditable(), true, "the key can be typed again");
  });
}

export async function timeoutStep(t) {
  const { page, expect, alert, listHeading, listCreate } = t;
  await step("a call with no answer times out, said in words (the browser's clock moved)", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn(t, t.admin);
    await page.clock.install();
    const { asked, held, listAll } = await holdListRequests(page);
    await listCreate.click();
    await asked;  // the request is out, so its timer is set
    await page.clock.runFor(PAGE_TIMEOUT_MS + 1000);
    await expect(alert).toContainText("did not answer within 30 seconds");
    await expect(listHeading).toBeVisible();
    await page.unroute(listAll);
    for (const route of held) await route.abort().catch(() => {});
  });
}
