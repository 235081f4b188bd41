// The seed's rules (docs/webhook-contract.md §1), checked as the user types, as the server checks
// them (routing/subscription.cc: check_url, check_key, check_value). The server checks them
// again and its message wins (the allowed ports, for one, are its configuration); these only
// spare a round trip. Each returns "" or the rule in words.

const FORBIDDEN = new Set([" ", "(", ")", "<", ">", "@", ",", ";", ":", "\\", "\"", "/", "[",
                           "]", "?", "=", "{", "}"]);
export const MAX_HEADERS = 5;
const MAX_URL_BYTES = 2048, MAX_NAME = 128, MAX_VALUE_CHARS = 512;

function hasControl(s) {
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

// Whether this fanoutd accepts http:// callback URLs (its insecure mode): api_web.cc serves the
// page with data-http="allowed" on <html> then.
export function httpAllowed() {
  return document.documentElement.dataset.http === "allowed";
}

// The characters that no URL may hold as typed, whatever else is wrong: checked on every
// keystroke (typing more never fixes them).
export function checkUrlCharacters(url) {
  for (const ch of url) {
    const c = ch.codePointAt(0);
    if (c === 0x20) return "Must not contain spaces: percent-encode them (%20).";
    if (c < 0x20 || c === 0x7f) return "Must not contain control characters (tabs, line breaks).";
    if (c > 0x7e) return `Must not contain non-ASCII characters such as "${ch}": percent-encode them.`;
  }
  if (url.includes("#")) return "Must not have a #fragment: it is never sent to the receiver.";
  return "";
}

// Dotted IPv4 as inet_pton reads it: four decimal numbers 0-255, no leading zeros.
const IPV4 = /^(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})\.(0|[1-9]\d{0,2})$/;

function hostProblem(host) {
  const last = host.slice(host.lastIndexOf(".") + 1);
  if (/^\d+$/.test(last) || /^0[xX][0-9a-fA-F]*$/.test(last)) {
    const m = IPV4.exec(host);
    if (m && m.slice(1).every((n) => Number(n) <= 255)) return "";
    return "Host ends in a number but is not an IPv4 address such as 192.0.2.10.";
  }
  if (host.length > 253) return "Host must be at most 253 characters.";
  if (host.endsWith(".")) return "Host must not end with a dot.";
  for (const label of host.split(".")) {
    if (label === "") return "Host has an empty label (two dots in a row, or a leading dot).";
    if (label.length > 63) return "Host has a label longer than 63 characters.";
    const bad = /[^A-Za-z0-9-]/.exec(label);
    if (bad) return `Host must not contain "${bad[0]}": only letters, digits, "-" and ".".`;
    if (label.startsWith("-") || label.endsWith("-")) return "Host labels must not start or end with \"-\".";
  }
  return "";
}

function ipv6Problem(literal) {
  if (literal.includes("%")) return "IPv6 zone ids (%) are not allowed.";
  try {
    new URL(`http://[${literal}]/`);
  } catch (err) {
    return "Not a valid IPv6 address.";
  }
  return "";
}

export function checkUrl(url, http = httpAllowed()) {
  if (url === "") return "Enter the callback URL.";
  if (new TextEncoder().encode(url).length > MAX_URL_BYTES) return "At most 2048 bytes.";
  const chars = checkUrlCharacters(url);
  if (chars) return chars;
  const form = http ? "https://host[:port][/path][?query] (or http://)" : "https://host[:port][/path][?query]";
  const sep = url.indexOf("://");
  if (sep < 0 || !/^[A-Za-z][A-Za-z0-9+.-]*$/.test(url.slice(0, sep))) return `Must have the form ${form}.`;
  const scheme = url.slice(0, sep).toLowerCase();
  if (scheme === "http" && !http) return "Must be an https:// URL: this fanoutd refuses http://.";
  if (scheme !== "https" && scheme !== "http") {
    return http ? "Must start with https:// or http://." : "Must start with https://.";
  }
  const rest = url.slice(sep + 3);
  const end = rest.search(/[/?]/);
  let authority = end < 0 ? rest : rest.slice(0, end);
  if (authority.includes("@")) {
    return "Must not hold a user name or password: send credentials in a custom X- header.";
  }
  let host, port = null;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0) return "An IPv6 host opens \"[\" but never closes it.";
    host = authority.slice(1, close);
    const after = authority.slice(close + 1);
    if (after.startsWith(":")) port = after.slice(1);
    else if (after !== "") return "Only a :port may follow \"]\".";
    if (host === "") return "Must name a host after \"://\".";
    const p = ipv6Problem(host);
    if (p) return p;
  } else {
    const colon = authority.indexOf(":");
    host = colon < 0 ? authority : authority.slice(0, colon);
    if (colon >= 0) port = authority.slice(colon + 1);
    if (host === "") return "Must name a host after \"://\".";
    const p = hostProblem(host);
    if (p) return p;
  }
  if (port !== null) {
    if (port === "") return "A \":\" after the host needs a port number (1 to 65535).";
    if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
      return "The port must be a number from 1 to 65535.";
    }
  }
  return "";
}

export function checkHeaderName(name, others) {
  if (name === "") return "Enter a header name.";
  if (!/^[\x00-\x7f]*$/.test(name)) return "Only ASCII characters.";
  if (hasControl(name)) return "No control characters.";
  if (!/^x-/i.test(name)) return "Must start with X-.";
  if (/^x-partoo/i.test(name)) return "Must not start with X-Partoo (reserved).";
  if (name.length > MAX_NAME) return `At most ${MAX_NAME} characters.`;
  for (const ch of name) {
    if (FORBIDDEN.has(ch)) return `Must not contain ${ch === " " ? "a space" : `"${ch}"`}.`;
  }
  const lower = name.toLowerCase();
  if (others.some((o) => o.toLowerCase() === lower)) return "Already used (names ignore case).";
  return "";
}

// Characters as the server counts them: code points (an emoji is one, not two UTF-16 units).
export function checkHeaderValue(value) {
  const chars = [...value].length;
  if (chars > MAX_VALUE_CHARS) return `At most ${MAX_VALUE_CHARS} characters (this one has ${chars}).`;
  if (hasControl(value)) return "No control characters (tabs, line breaks).";
  if (value.startsWith(" ") || value.endsWith(" ")) {
    return "Must not start or end with a space (HTTP would strip it).";
  }
  return "";
}
