// Shared pieces of the web UI: DOM building (text only, never innerHTML), the API client
// (cookie session + CSRF header), status badges, times, and page clean-up.

export const state = { user: null, csrf: null, models: null };

export function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "value" || k === "checked" || k === "disabled" || k === "selected")
      e[k] = v;
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  append(e, children);
  return e;
}

// replaceChildren that skips null/false (the DOM would print them as text)
export function fill(parent, ...children) {
  parent.replaceChildren();
  append(parent, children);
  return parent;
}

function append(parent, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else if (c instanceof Node) parent.append(c);
    else parent.append(document.createTextNode(String(c)));
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "http_" + status;
    this.remediation = body && body.remediation;
    this.details = body && body.details;
  }
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const res = await fetch("/api/v1" + path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  if (res.status !== 204) {
    try {
      data = await res.json();
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data);
    if (res.status === 401 && !path.startsWith("/session")) {
      state.user = null;
      window.location.hash = "#/signin";
    }
    throw err;
  }
  return data;
}

// An error as the user sees it: message, typed code and the remediation when there is one.
export function errorBox(err, actions) {
  const code = err.code || "error";
  return h(
    "div",
    { class: "alert alert-error", role: "alert" },
    h("strong", {}, "Error "),
    h("code", { class: "code" }, code),
    h("span", {}, ": " + (err.message || String(err))),
    err.remediation ? h("div", { class: "remedy" }, "What to do: " + err.remediation) : null,
    actions && actions.length ? h("div", { class: "actions" }, actions) : null,
  );
}

export function flash(container, err) {
  container.replaceChildren(errorBox(err));
}

// Status as text and colour (never colour alone). Kind picks the colour.
const KINDS = {
  running: "busy",
  pending: "busy",
  starting: "busy",
  stopping: "busy",
  deleting: "busy",
  connecting: "busy",
  canceling: "busy",
  interrupting: "busy",
  waiting: "ok",
  connected: "ok",
  ready: "ok",
  succeeded: "ok",
  error: "bad",
  failed: "bad",
  start_error: "bad",
  start_timeout: "bad",
  timeout: "bad",
  disconnected: "bad",
  stopped: "off",
  deleted: "off",
  canceled: "off",
  off: "off",
  paused: "off",
};
const CHAT_LABELS = { waiting: "idle", running: "working", pending: "queued to run" };

export function badge(status, label, kind) {
  const s = String(status || "unknown");
  kind = kind || KINDS[s] || "off";
  return h(
    "span",
    { class: `badge badge-${kind}`, "data-status": s, title: s },
    h("span", { class: "dot", "aria-hidden": "true" }),
    label || s.replace(/_/g, " "),
  );
}

// A workspace's state: "running" is the good state here, not activity.
export function wsBadge(state) {
  return badge(state, null, state === "running" ? "ok" : null);
}

// A chat's status in words a user reads ("working", "idle").
export function chatBadge(status) {
  return badge(status, CHAT_LABELS[status]);
}

export function ago(iso) {
  if (!iso) return "";
  const t = new Date(iso).getTime();
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 45) return "just now";
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "—";
}

// Page clean-up: streams and timers a page opened end when the user leaves it.
let cleanups = [];
export function onLeave(fn) {
  cleanups.push(fn);
}
export function leavePage() {
  const fns = cleanups;
  cleanups = [];
  for (const fn of fns) {
    try {
      fn();
    } catch (e) {
      console.error(e);
    }
  }
}

export function every(ms, fn) {
  const id = window.setInterval(fn, ms);
  onLeave(() => window.clearInterval(id));
}

// An EventSource that closes when the page is left.
export function events(url, handlers) {
  const source = new EventSource(url, { withCredentials: true });
  for (const [name, fn] of Object.entries(handlers)) {
    source.addEventListener(name, (ev) => {
      let data = null;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return;
      }
      fn(data, ev);
    });
  }
  onLeave(() => source.close());
  return source;
}

export function pageHeader(title, ...extra) {
  return h("div", { class: "page-head" }, h("h1", {}, title), h("div", { class: "page-actions" }, extra));
}

export function button(label, onclick, cls = "btn") {
  return h("button", { type: "button", class: cls, onclick }, label);
}

// Run an action from a button: disabled while it runs, errors shown in `where`.
export async function act(btn, where, fn) {
  btn.disabled = true;
  try {
    await fn();
    if (where) where.replaceChildren();
  } catch (err) {
    if (where) where.replaceChildren(errorBox(err));
    else console.error(err);
  } finally {
    btn.disabled = false;
  }
}

export function logView() {
  return h("pre", { class: "log", tabindex: "0", "aria-live": "polite" });
}

export function appendLog(pre, line, level) {
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
  const span = h("span", { class: level === "error" ? "log-error" : "" }, line + "\n");
  pre.append(span);
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}
