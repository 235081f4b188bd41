// Settings > Integrations > Webhooks: sign in with an API key (kept in sessionStorage only),
// pick an organisation (PROVIDER keys), list the organisation's webhooks, create, test, edit,
// delete, and read a webhook's delivery history with resend. Views are sections of index.html
// shown one at a time; every value is rendered as text (dom.js). A view change clears the last
// notice; a button whose call is in flight is disabled until it ends (busy()).
import { Api } from "./api.js";
import { el, $, show, when, busy } from "./dom.js";
import { HookForm } from "./form.js";

const PER_PAGE = 10;
const KEY = "fanout.apiKey", ORG = "fanout.orgId";
const VIEWS = ["signin-view", "org-view", "list-view", "form-view", "history-view"];

const state = { api: null, me: null, types: [], page: 1, form: null, historyHook: null,
                historyPage: 1, deleting: null };

function view(name) {
  notice("");
  for (const v of VIEWS) show(v, v === name);
  show("sign-out", name !== "signin-view");
  const heading = $(name).querySelector("h1");
  if (heading) heading.focus();
}

function notice(message) {
  $("status").textContent = message;
}

function alertBox(message) {
  const box = $("alert");
  box.textContent = message;
  box.hidden = !message;
}

// Whether the session that made a call is still the one signed in: an answer that arrives after
// a sign-out (or another sign-in) is dropped, so a late list never brings a view back.
function stale(api) {
  return state.api !== api;
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY);
  sessionStorage.removeItem(ORG);
  state.api = null;
  state.me = null;
  $("api-key").value = "";
  showSignIn(message);
}

// The sign-in view with `message`; "Retry" when a key is still kept (a failure that was not the
// key's: the network, a 5xx), so the page is never blank nor a lone alert.
function showSignIn(message) {
  if ($("signin-view").hidden) view("signin-view");
  show("retry", Boolean(message) && sessionStorage.getItem(KEY) !== null);
  alertBox(message);
}

function onScreen() {
  return VIEWS.some((v) => !$(v).hidden);
}

// Any failure of a call made from a view: 401 signs out with the reason; the rest is said, on
// the sign-in view (with Retry) when no view is showing yet.
function failed(err) {
  if (err.status === 401) return signOut(err.message);
  if (!onScreen()) return showSignIn(err.message);
  alertBox(err.message);
}

async function signIn(key) {
  alertBox("");
  show("retry", false);
  const api = new Api(key);
  let me;
  try {
    me = await busy([$("signin-button"), $("retry")], () => api.me());
  } catch (err) {
    if (err.status === 401) {
      return signOut("This API key was not accepted: it is unknown or has been revoked.");
    }
    return showSignIn(err.message);
  }
  if (me.role === "INGEST") {
    return signOut("This is an INGEST key: it can publish events but not manage webhooks. Sign in with an ORG_ADMIN or PROVIDER key.");
  }
  sessionStorage.setItem(KEY, key);
  state.me = me;
  state.api = api;
  if (me.role === "PROVIDER") {
    const saved = Number(sessionStorage.getItem(ORG));
    if (me.org_ids.includes(saved)) return useOrg(saved);
    const select = $("org-select");
    select.replaceChildren(...me.org_ids.map((id) => el("option", { value: id }, `Organisation ${id}`)));
    view("org-view");
    return;
  }
  return useOrg(me.org_ids[0], /*explicit=*/false);
}

async function useOrg(orgId, explicit = true) {
  const api = state.api;
  api.orgId = explicit ? orgId : null;
  if (explicit) sessionStorage.setItem(ORG, String(orgId));
  $("org-name").textContent = `Organisation ${orgId}`;
  try {
    state.types = await api.eventTypes();
  } catch (err) {
    return stale(api) ? undefined : failed(err);
  }
  if (stale(api)) return;
  state.page = 1;
  await showList();
}

async function showList() {
  alertBox("");
  const api = state.api;
  if (!api) return;
  let page;
  try {
    page = await api.list(state.page, PER_PAGE);
  } catch (err) {
    return stale(api) ? undefined : failed(err);
  }
  if (stale(api)) return;
  if (page.items.length === 0 && state.page > 1) {
    state.page = Math.max(1, page.max_page);  // deleted the last row of the last page
    return showList();
  }
  const body = $("hook-rows");
  body.replaceChildren(...page.items.map(hookRow));
  show("empty", page.count === 0);
  show("hooks", page.count > 0);
  show("pages", page.max_page > 1);
  $("page-text").textContent = `Page ${page.page} of ${page.max_page} (${page.count} webhook${page.count === 1 ? "" : "s"})`;
  $("prev-page").disabled = page.page <= 1;
  $("next-page").disabled = page.page >= page.max_page;
  view("list-view");
}

function hookRow(hook) {
  const headers = Object.entries(hook.custom_headers);
  return el("tr", { "data-id": hook.id, "data-type": hook.event_type },
    el("td", { class: "url", "data-label": "Callback URL" }, hook.url),
    el("td", { "data-label": "Event type" }, hook.event_type),
    el("td", { "data-label": "Custom headers" }, headers.length === 0 ? el("span", { class: "hint" }, "none") :
      el("ul", { class: "headers" }, headers.map(([n, v]) => el("li", {}, el("code", {}, n), ": ", v)))),
    el("td", { "data-label": "Created" }, when(hook.created_at)),
    el("td", { "data-label": "Updated" }, when(hook.updated_at)),
    el("td", { class: "actions" },
      el("button", { type: "button", class: "secondary", onclick: () => openForm(hook) }, "Edit"),
      el("button", { type: "button", class: "secondary", onclick: () => openHistory(hook, 1) }, "History"),
      el("button", { type: "button", class: "danger", onclick: () => askDelete(hook) }, "Delete")));
}

async function openForm(hook = null) {
  alertBox("");
  const api = state.api;
  let existing = new Map();
  if (!hook) {
    try {
      existing = new Map((await api.listAll()).map((h) => [h.event_type, h]));
    } catch (err) {
      return stale(api) ? undefined : failed(err);
    }
    if (stale(api)) return;
  }
  state.form = new HookForm({
    api: state.api, types: state.types, existing, hook,
    onDone: async (message) => {
      await showList();
      notice(message);
    },
    onUnauthorized: (message) => signOut(message),
  });
  view("form-view");
  $("url").focus();
}

function askDelete(hook) {
  state.deleting = hook;
  $("delete-text").textContent = `Delete the ${hook.event_type} webhook to ${hook.url}? Events not yet delivered to it are dropped.`;
  $("delete-dialog").showModal();
}

async function confirmDelete() {
  const hook = state.deleting;
  state.deleting = null;
  if (!hook) return;
  try {
    await busy([$("delete-confirm")], () => state.api.remove(hook.id));
  } catch (err) {
    $("delete-dialog").close();
    return failed(err);
  }
  $("delete-dialog").close();
  await showList();
  notice(`Webhook for ${hook.event_type} deleted.`);
}

async function openHistory(hook, page) {
  alertBox("");
  state.historyHook = hook;
  state.historyPage = page;
  $("history-title").textContent = `Delivery history: ${hook.event_type}`;
  $("history-url").textContent = hook.url;
  const api = state.api;
  let r;
  try {
    r = await api.deliveries(hook.id, page);
  } catch (err) {
    if (stale(api)) return;
    if (err.status === 401) return signOut(err.message);
    $("history-rows").replaceChildren();
    show("history-empty", false);
    view("history-view");
    return alertBox(err.message);
  }
  if (stale(api)) return;
  $("history-rows").replaceChildren(...r.items.map((d) => el("tr", {},
    el("td", { "data-label": "Event id" }, el("code", {}, d.event_id)),
    el("td", { "data-label": "Created" }, when(d.created_at)),
    el("td", { "data-label": "Outcome" }, d.outcome),
    el("td", { "data-label": "Attempts" }, String(d.attempts_made)),
    el("td", { "data-label": "Last answer" }, lastAnswer(d)),
    el("td", { class: "actions" }, el("button", { type: "button", class: "secondary",
                               onclick: () => resend(hook, d.event_id) }, "Resend")))));
  show("history-empty", r.count === 0);
  $("history-page").textContent = `Page ${r.page} of ${r.max_page}`;
  $("history-prev").disabled = r.page <= 1;
  $("history-next").disabled = r.page >= r.max_page;
  view("history-view");
}

function lastAnswer(d) {
  const a = d.attempts && d.attempts.length ? d.attempts[d.attempts.length - 1] : null;
  if (!a) return "—";
  return a.status ? `HTTP ${a.status}` : (a.failure || "no answer");
}

async function resend(hook, eventId) {
  const api = state.api;
  try {
    await api.resend(hook.id, eventId);
  } catch (err) {
    return stale(api) ? undefined : failed(err);
  }
  if (stale(api)) return;
  await openHistory(hook, 1);
  notice(`Event ${eventId} sent again.`);
}

function wire() {
  $("signin-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) return alertBox("Enter an API key.");
    signIn(key);
  });
  $("retry").addEventListener("click", () => {
    const key = sessionStorage.getItem(KEY);
    if (key) signIn(key);
  });
  $("org-form").addEventListener("submit", (e) => {
    e.preventDefault();
    useOrg(Number($("org-select").value));
  });
  $("sign-out").addEventListener("click", () => signOut());
  for (const b of document.querySelectorAll("[data-action=create]")) {
    b.addEventListener("click", () => openForm(null));
  }
  $("prev-page").addEventListener("click", () => { state.page -= 1; showList(); });
  $("next-page").addEventListener("click", () => { state.page += 1; showList(); });
  $("hook-form").addEventListener("submit", (e) => { e.preventDefault(); state.form.save(); });
  $("test-button").addEventListener("click", () => state.form.test());
  $("add-header").addEventListener("click", () => {
    state.form.addRow();
    const rows = document.querySelectorAll("#header-rows input");
    if (rows.length) rows[rows.length - 2].focus();
  });
  $("url").addEventListener("input", () => state.form && state.form.checkUrl(false));
  $("url").addEventListener("blur", () => state.form && state.form.checkUrl(true));
  $("cancel-button").addEventListener("click", () => showList());
  $("delete-confirm").addEventListener("click", confirmDelete);
  $("delete-cancel").addEventListener("click", () => $("delete-dialog").close());
  $("history-back").addEventListener("click", () => showList());
  $("history-prev").addEventListener("click", () => openHistory(state.historyHook, state.historyPage - 1));
  $("history-next").addEventListener("click", () => openHistory(state.historyHook, state.historyPage + 1));
}

wire();
const savedKey = sessionStorage.getItem(KEY);
if (savedKey) {
  signIn(savedKey);
} else {
  view("signin-view");
}
