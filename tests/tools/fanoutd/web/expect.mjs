// A small polling `expect` over playwright-core locators (playwright-core has no test runner):
// each expectation re-checks until it holds or its deadline passes, then fails with the last
// value seen. The deadline bounds a wait; it is never the thing tested.
const DEFAULT_MS = 30_000;

async function poll(check, describe, timeout = DEFAULT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (let delay = 10; ; delay = Math.min(delay * 2, 200)) {
    try {
      const r = await check();
      if (r.ok) return;
      last = r.seen;
    } catch (err) {
      last = err.message;
    }
    if (Date.now() >= deadline) throw new Error(`expected ${describe}; last seen: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

const matches = (text, want) => (want instanceof RegExp ? want.test(text) : text.includes(want));

export function expect(target) {
  return {
    toBeVisible: (o = {}) => poll(async () => ({ ok: await target.isVisible(), seen: "hidden" }),
                                  "to be visible", o.timeout),
    toBeDisabled: (o = {}) => poll(async () => ({ ok: await target.isDisabled(), seen: "enabled" }),
                                   "to be disabled", o.timeout),
    toContainText: (want, o = {}) => poll(async () => {
      const text = (await target.allTextContents()).join(" ");
      return { ok: matches(text, want), seen: text };
    }, `text containing ${want}`, o.timeout),
    toBeFocused: (o = {}) => poll(async () => ({
      ok: await target.evaluate((e) => e === document.activeElement), seen: "not focused" }),
    "to have the focus", o.timeout),
    toHaveText: (want, o = {}) => poll(async () => {
      const text = ((await target.first().textContent()) || "").trim();
      return { ok: text === want, seen: text };
    }, `text ${JSON.stringify(want)}`, o.timeout),
    toHaveCount: (n, o = {}) => poll(async () => {
      const c = await target.count();
      return { ok: c === n, seen: c };
    }, `${n} elements`, o.timeout),
    // target: an async function whose expectations must all pass in one run.
    toPass: (o = {}) => poll(async () => {
      await target();
      return { ok: true };
    }, "the block to pass", o.timeout),
  };
}
