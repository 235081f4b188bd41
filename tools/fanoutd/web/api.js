// The page's only door to fanoutd: same-origin fetch with the key in the x-APIKey header (never
// in a URL), every failure turned into words (ApiError.message) that the page can show as is.
// A call that gets no answer within TIMEOUT_MS is abandoned (AbortController) and said so.

export const TIMEOUT_MS = 30_000;

export class ApiError extends Error {
  constructor(status, message, fields = {}, retryAfter = 0) {
    super(message);
    this.status = status;         // 0: the network (or no answer in time)
    this.fields = fields;         // 400: {"items.0.url": "message", ...}
    this.retryAfter = retryAfter; // 429: seconds
  }
}

function words(status, body, retryAfter) {
  const e = body && typeof body === "object" ? body.error : null;
  switch (status) {
    case 401:
      return "This API key was not accepted: it is unknown or has been revoked. Sign in with another key.";
    case 403:
      return "This API key may not do that" +
             (e && e.authorization ? ` (${e.authorization})` : "") + ".";
    case 404:
      return "Not found: it may have been deleted meanwhile.";
    case 413:
      return "That is too large for fanoutd.";
    case 429:
      return `Too many requests for this organisation: try again in ${retryAfter} second${retryAfter === 1 ? "" : "s"}.`;
    case 501:
      return "fanoutd runs without durability: delivery history is not kept.";
    case 503:
      return "fanoutd is busy or stopping: try again in a moment.";
    default:
      if (status >= 500) return `fanoutd failed to answer (HTTP ${status}): try again.`;
      if (e && e.json && typeof e.json === "string") return e.json;
      return `The request was refused (HTTP ${status}).`;
  }
}

export class Api {
  constructor(key, orgId = null) {
    this.key = key;
    this.orgId = orgId;
  }

  withOrg(path) {
    if (this.orgId === null) return path;
    return path + (path.includes("?") ? "&" : "?") + "org_id=" + encodeURIComponent(this.orgId);
  }

  async call(method, path, body) {
    const init = { method, headers: { "x-APIKey": this.key }, credentials: "omit", cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const abort = new AbortController();
    init.signal = abort.signal;
    const timer = setTimeout(() => abort.abort(), TIMEOUT_MS);
    let res, parsed = null;
    try {
      res = await fetch(path, init);
      if (res.status !== 204) {
        try {
          parsed = await res.json();
        } catch (err) {
          if (abort.signal.aborted) throw err;
          parsed = null;
        }
      }
    } catch (err) {
      if (abort.signal.aborted) {
        throw new ApiError(0, `fanoutd did not answer within ${TIMEOUT_MS / 1000} seconds: ` +
                              "check the connection and try again.");
      }
      throw new ApiError(0, "Could not reach fanoutd: check the connection and try again.");
    } finally {
      clearTimeout(timer);
    }
    if (res.ok) return parsed;
    const retryAfter = parseInt(res.headers.get("Retry-After") || "0", 10) || 0;
    const fields = parsed && parsed.error && typeof parsed.error.json === "object" ? parsed.error.json : {};
    let message = words(res.status, parsed, retryAfter);
    if (res.status === 400 && Object.keys(fields).length > 0) {
      message = "Please correct the fields marked below.";
    }
    throw new ApiError(res.status, message, fields, retryAfter);
  }

  me() { return this.call("GET", "/v2/me"); }
  eventTypes() { return this.call("GET", this.withOrg("/v2/webhooks/events")); }
  list(page, perPage) {
    return this.call("GET", this.withOrg(`/v2/webhooks?page=${page}&per_page=${perPage}`));
  }
  async listAll() {
    const all = [];
    for (let page = 1; ; page++) {
      const r = await this.list(page, 100);
      all.push(...r.items);
      if (page >= r.max_page) return all;
    }
  }
  create(items) { return this.call("POST", this.withOrg("/v2/webhooks"), { items }); }
  update(id, change) { return this.call("PATCH", this.withOrg(`/v2/webhooks/${id}`), change); }
  remove(id) { return this.call("DELETE", this.withOrg(`/v2/webhooks/${id}`)); }
  tryout(item) { return this.call("POST", this.withOrg("/v2/webhooks/tryout"), { items: [item] }); }
  deliveries(id, page) {
    return this.call("GET", this.withOrg(`/v2/webhooks/${id}/deliveries?page=${page}&per_page=20`));
  }
  resend(id, eventId) {
    return this.call("POST",
      this.withOrg(`/v2/webhooks/${id}/deliveries/${encodeURIComponent(eventId)}/resend`));
  }
}
