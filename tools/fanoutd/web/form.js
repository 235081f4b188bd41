// The create and edit form: callback URL, event types (create only), custom headers (rows added
// and removed, at most 5), rules checked as the user types, the server's messages shown on the
// field they name, and "Test" (a tryout per chosen event type, nothing saved). Create, Save and
// Test are disabled while their call is in flight: a double click sends one request.
import { el, $, uniqueId, busy } from "./dom.js";
import { checkUrl, checkUrlCharacters, checkHeaderName, checkHeaderValue, MAX_HEADERS } from "./rules.js";

// A tryout's duration_ms (fractional) as a reader wants it: "14 ms".
function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  return ms < 1 ? "< 1 ms" : `${Math.round(ms)} ms`;
}

export class HookForm {
  // ctx: { api, types, existing (Map type -> webhook), hook (edit) or null, onDone(message) }
  constructor(ctx) {
    this.ctx = ctx;
    this.rows = [];
    this.typeBoxes = new Map();
    this.urlTouched = false;  // blurred once: from then on the whole URL is checked as typed
    this.inFlight = false;
    this.render();
  }

  render() {
    const { hook } = this.ctx;
    $("form-title").textContent = hook ? "Edit webhook" : "Create webhook";
    $("save-button").textContent = hook ? "Save" : "Create";
    $("form-alert").hidden = true;
    $("test-results").replaceChildren();
    $("url").value = hook ? hook.url : "";
    this.setError("url", "");
    this.renderTypes();
    $("header-rows").replaceChildren();
    this.rows = [];
    for (const [name, value] of Object.entries(hook ? hook.custom_headers : {})) {
      this.addRow(name, value);
    }
    this.updateAddButton();
    this.setError("headers", "");
  }

  renderTypes() {
    const box = $("type-list");
    box.replaceChildren();
    this.typeBoxes.clear();
    this.setError("types", "");
    const { hook, types, existing } = this.ctx;
    if (hook) {
      box.append(el("p", { class: "fixed-type" }, hook.event_type,
                    el("span", { class: "hint" }, " (the event type of a webhook cannot change)")));
      return;
    }
    for (const type of types) {
      const id = uniqueId("type");
      const taken = existing.get(type);
      const noteId = taken ? uniqueId("taken") : null;
      const input = el("input", { type: "checkbox", id, value: type, "aria-describedby": noteId });
      if (taken) input.disabled = true;
      const errorId = uniqueId("type-error");
      input.addEventListener("change", () => {
        this.setError("types", "");
        $(errorId).textContent = "";
      });
      const row = el("div", { class: "type" }, input, el("label", { for: id }, type),
                     taken ? el("span", { class: "hint", id: noteId },
                                ` already has a webhook (${taken.url})`) : null,
                     el("p", { class: "error", id: errorId, role: "alert" }));
      this.typeBoxes.set(type, { input, errorId });
      box.append(row);
    }
  }

  chosenTypes() {
    if (this.ctx.hook) return [this.ctx.hook.event_type];
    return [...this.typeBoxes].filter(([, b]) => b.input.checked).map(([t]) => t);
  }

  addRow(name = "", value = "") {
    if (this.rows.length >= MAX_HEADERS) return;
    const nameId = uniqueId("hname"), valueId = uniqueId("hvalue");
    const row = {
      name: el("input", { id: nameId, type: "text", autocomplete: "off", spellcheck: "false" }),
      value: el("input", { id: valueId, type: "text", autocomplete: "off", spellcheck: "false" }),
      error: el("p", { class: "error", role: "alert" }),
    };
    row.name.value = name;
    row.value.value = value;
    const remove = el("button", { type: "button", class: "secondary" }, "Remove");
    remove.setAttribute("aria-label", "Remove header");
    row.node = el("div", { class: "header-row" },
                  el("div", { class: "field" }, el("label", { for: nameId }, "Header name"), row.name),
                  el("div", { class: "field" }, el("label", { for: valueId }, "Header value"), row.value),
                  remove, row.error);
    row.name.addEventListener("input", () => this.checkRows());
    row.value.addEventListener("input", () => this.checkRows());
    remove.addEventListener("click", () => {
      this.rows = this.rows.filter((r) => r !== row);
      row.node.remove();
      this.updateAddButton();
      this.checkRows();
      $("add-header").focus();
    });
    this.rows.push(row);
    $("header-rows").append(row.node);
    this.updateAddButton();
  }

  updateAddButton() {
    const full = this.rows.length >= MAX_HEADERS;
    $("add-header").disabled = full;
    $("headers-hint").textContent = full ? `At most ${MAX_HEADERS} custom headers.` :
      `Optional: up to ${MAX_HEADERS}, names starting with X- (not X-Partoo).`;
  }

  // Checks every row; true when all are valid.
  checkRows() {
    let ok = true;
    this.rows.forEach((row, i) => {
      const others = this.rows.filter((_, j) => j < i).map((r) => r.name.value);
      const problem = checkHeaderName(row.name.value, others) || checkHeaderValue(row.value.value);
      row.error.textContent = problem;
      row.name.setAttribute("aria-invalid", problem ? "true" : "false");
      if (problem) ok = false;
    });
    return ok;
  }

  headers() {
    const out = {};
    for (const row of this.rows) out[row.name.value] = row.value.value;
    return out;
  }

  // As the user types (full = false): the characters no URL may hold, or the whole rule once the
  // field was left or shows a problem; on leaving it (full = true): the whole rule.
  checkUrl(full) {
    const value = $("url").value;
    if (full && value === "" && !this.urlTouched) return;
    if (full) this.urlTouched = true;
    const whole = full || this.urlTouched || $("url-error").textContent !== "";
    this.setError("url", whole ? checkUrl(value) : checkUrlCharacters(value));
  }

  setError(field, message) {
    const target = $(`${field}-error`);
    target.textContent = message;
    const input = field === "url" ? $("url") : null;
    if (input) input.setAttribute("aria-invalid", message ? "true" : "false");
  }

  // Client checks before a request; true when it may go.
  validate(needTypes) {
    const urlProblem = checkUrl($("url").value);
    this.setError("url", urlProblem);
    const rowsOk = this.checkRows();
    let typesOk = true;
    if (needTypes && this.chosenTypes().length === 0) {
      this.setError("types", "Choose at least one event type.");
      typesOk = false;
    }
    return !urlProblem && rowsOk && typesOk;
  }

  // The server's 400 fields on the fields they name (items.N.* refer to the chosen types).
  showServerErrors(fields, types) {
    for (const [key, message] of Object.entries(fields)) {
      const m = /^items\.(\d+)\.(.+)$/.exec(key);
      const field = m ? m[2] : key;
      if (field === "url") {
        this.setError("url", message);
      } else if (field === "custom_headers") {
        this.setError("headers", message);
      } else if (field === "event_type" && m && this.typeBoxes.has(types[Number(m[1])])) {
        const { errorId } = this.typeBoxes.get(types[Number(m[1])]);
        $(errorId).textContent = message;
      } else {
        this.setError("types", `${field}: ${message}`);
      }
    }
  }

  // Runs `call` unless another of this form's calls is in flight, with `button` disabled.
  async once(button, call) {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      await busy([button], call);
    } finally {
      this.inFlight = false;
    }
  }

  save() {
    const { api, hook } = this.ctx;
    if (this.inFlight || !this.validate(!hook)) return;
    const types = this.chosenTypes();
    const url = $("url").value, headers = this.headers();
    return this.once($("save-button"), async () => {
      $("form-alert").hidden = true;
      let done;
      try {
        if (hook) {
          await api.update(hook.id, { url, custom_headers: headers });
          done = "Webhook saved.";
        } else {
          const made = await api.create(types.map((t) => ({ url, event_type: t, custom_headers: headers })));
          done = `${made.items.length} webhook${made.items.length === 1 ? "" : "s"} created.`;
        }
      } catch (err) {
        return this.fail(err, types);
      }
      await this.ctx.onDone(done);
    });
  }

  fail(err, types) {
    if (err.status === 401) return this.ctx.onUnauthorized(err.message);
    $("form-alert").textContent = err.message;
    $("form-alert").hidden = false;
    if (err.fields) this.showServerErrors(err.fields, types);
  }

  test() {
    if (this.inFlight || !this.validate(!this.ctx.hook)) return;
    return this.once($("test-button"), () => this.runTests());
  }

  async runTests() {
    const types = this.chosenTypes();
    const url = $("url").value, headers = this.headers();
    const results = $("test-results");
    results.replaceChildren(el("p", { role: "status" }, "Testing…"));
    $("form-alert").hidden = true;
    const rows = [];
    for (const type of types) {
      try {
        const r = await this.ctx.api.tryout({ url, event_type: type, custom_headers: headers });
        rows.push({ type, ...r.items[0] });
      } catch (err) {
        if (err.status === 401) return this.ctx.onUnauthorized(err.message);
        // A 400 names fields (items.0.* is this type's one item): shown on them, as on save.
        if (err.status === 400 && err.fields) this.showServerErrors(err.fields, [type]);
        const said = err.status === 400 && err.fields ? Object.values(err.fields).join(" ") : "";
        rows.push({ type, success: false, status_code: null, duration_ms: null,
                    error: said || err.message });
      }
    }
    const table = el("table", { class: "results" },
      el("caption", {}, "Test results (nothing was saved)"),
      el("thead", {}, el("tr", {}, ["Event type", "Result", "Status code", "Duration", "Error"]
        .map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows.map((r) => el("tr", { class: r.success ? "ok" : "failed" },
        el("td", { "data-label": "Event type" }, r.type),
        el("td", { "data-label": "Result" }, r.success ? "Success" : "Failed"),
        el("td", { "data-label": "Status code" },
           r.status_code === null || r.status_code === undefined ? "—" : String(r.status_code)),
        el("td", { "data-label": "Duration" },
           duration(r.duration_ms)),
        el("td", { "data-label": "Error" }, r.error || "")))));
    results.replaceChildren(table);
  }
}
