// Building the page from values: every value becomes a text node (never markup), so a URL or a
// header value holding HTML shows as text and runs nothing.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) {
      node.addEventListener(name.slice(2), value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function $(id) {
  return document.getElementById(id);
}

export function show(id, visible) {
  $(id).hidden = !visible;
}

// "2026-11-27T16:10:44.929678Z" as the reader's local date and time.
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

let uniqueCounter = 0;
export function uniqueId(prefix) {
  uniqueCounter += 1;
  return `${prefix}-${uniqueCounter}`;
}

// Runs `call` (an async function) with `buttons` disabled, so a second click cannot send it
// again while it is in flight; re-enables them however it ends.
export async function busy(buttons, call) {
  const was = buttons.map((b) => b.disabled);
  for (const b of buttons) b.disabled = true;
  try {
    return await call();
  } finally {
    buttons.forEach((b, i) => { b.disabled = was[i]; });
  }
}
