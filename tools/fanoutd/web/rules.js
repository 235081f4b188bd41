// The seed's rules (docs/webhook-contract.md §1), checked as the user types. The server checks
// them again and its message wins; these only spare a round trip. Each returns "" or the rule in
// words.

const FORBIDDEN = new Set([" ", "(", ")", "<", ">", "@", ",", ";", ":", "\\", "\"", "/", "[",
                           "]", "?", "=", "{", "}"]);
export const MAX_HEADERS = 5;

function hasControl(s) {
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

export function checkUrl(url) {
  if (url.trim() === "") return "Enter the callback URL.";
  if (new TextEncoder().encode(url).length > 2048) return "At most 2048 bytes.";
  let u;
  try {
    u = new URL(url);
  } catch (err) {
    return "Must be a valid URL, such as https://example.com/webhooks.";
  }
  if (u.protocol !== "https:" && u.protocol !== "http:") return "Must be an https:// URL.";
  if (!u.hostname) return "Must name a host.";
  if (u.username || u.password) return "Must not hold a user name or password.";
  return "";
}

export function checkHeaderName(name, others) {
  if (name === "") return "Enter a header name.";
  if (!/^[\x00-\x7f]*$/.test(name)) return "Only ASCII characters.";
  if (hasControl(name)) return "No control characters.";
  if (!/^x-/i.test(name)) return "Must start with X-.";
  if (/^x-partoo/i.test(name)) return "Must not start with X-Partoo (reserved).";
  if (name.length > 128) return "At most 128 characters.";
  for (const ch of name) {
    if (FORBIDDEN.has(ch)) return `Must not contain ${ch === " " ? "a space" : `"${ch}"`}.`;
  }
  const lower = name.toLowerCase();
  if (others.some((o) => o.toLowerCase() === lower)) return "Already used (names ignore case).";
  return "";
}

export function checkHeaderValue(value) {
  if (value.length > 512) return "At most 512 characters.";
  if (hasControl(value)) return "No control characters.";
  return "";
}
