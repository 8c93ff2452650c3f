// The web UI's entry point: sign-in, layout, hash routing, and the smaller pages (chats list,
// templates, admin). Everything goes through the public API with the session cookie.

import { chatPage } from "./chat.js";
import {
  act,
  ago,
  api,
  badge,
  button,
  chatBadge,
  errorBox,
  events,
  fill,
  h,
  leavePage,
  pageHeader,
  state,
  when,
} from "./core.js";
import { newWorkspacePage, workspacePage, workspacesPage } from "./workspaces.js";

const app = document.getElementById("app");

// --- sign in / out ---------------------------------------------------------------------------

async function signIn(token) {
  const s = await api("POST", "/session", { token });
  state.user = s.user;
  state.csrf = s.csrf_token;
}

async function loadSession() {
  try {
    const s = await api("GET", "/session");
    state.user = s.user;
    state.csrf = s.csrf_token;
  } catch {
    state.user = null;
    state.csrf = null;
  }
}

function signInPage(main) {
  const err = h("div");
  const input = h("input", { id: "token", type: "password", autocomplete: "current-password", required: true, placeholder: "tok_…" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin" },
    h("h1", {}, "Sign in to tether"),
    h("p", { class: "hint" }, "Paste an API token, or open the link printed by ", h("code", {}, "tether ui"), "."),
    h("div", { class: "field" }, h("label", { for: "token" }, "API token"), input),
    err,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(submit, err, async () => {
      await signIn(input.value.trim());
      window.location.hash = "#/chats";
    });
  });
  fill(main, form);
  input.focus();
}

async function signOut() {
  try {
    await api("DELETE", "/session");
  } finally {
    state.user = null;
    state.csrf = null;
    window.location.hash = "#/signin";
  }
}

// --- layout ----------------------------------------------------------------------------------

function nav(active) {
  const link = (href, label, key) =>
    h("a", { href, class: active === key ? "active" : "", "aria-current": active === key ? "page" : null }, label);
  const admin = state.user && state.user.role === "admin";
  return h(
    "header",
    { class: "topbar" },
    h("a", { href: "#/chats", class: "brand" }, h("span", { class: "logo", "aria-hidden": "true" }), "tether"),
    state.user
      ? [
          h(
            "nav",
            { "aria-label": "Main" },
            link("#/chats", "Chats", "chats"),
            link("#/workspaces", "Workspaces", "workspaces"),
            link("#/templates", "Templates", "templates"),
            link("#/settings", "Settings", "settings"),
            link("#/admin/tokens", admin ? "Admin" : "Tokens", "admin"),
          ),
          h(
            "div",
            { class: "who-am-i" },
            h("span", { class: "user" }, state.user.name, admin ? h("span", { class: "role" }, "admin") : null),
            button("Sign out", () => signOut(), "btn btn-small btn-ghost"),
          ),
        ]
      : null,
  );
}

// --- chats list ------------------------------------------------------------------------------

async function chatsPage(main) {
  const err = h("div");
  const search = h("input", { type: "search", placeholder: "Search chats", "aria-label": "Search chats" });
  const archived = h("input", { type: "checkbox", id: "show-archived" });
  const rows = h("div", { class: "chat-list" });
  const [models, workspaces] = await Promise.all([
    api("GET", "/models").catch(() => []),
    api("GET", "/workspaces").catch(() => []),
  ]);
  const names = new Map(workspaces.map((w) => [w.id, w.name]));
  const text = h("textarea", { id: "new-chat", rows: "3", required: true, placeholder: "What should the agent do?", "aria-label": "First message" });
  const model = h(
    "select",
    { id: "new-chat-model", "aria-label": "Model" },
    models.map((m) => h("option", { value: m.name, selected: m.default }, m.name + (m.default ? " (default)" : ""))),
  );
  const ws = h(
    "select",
    { id: "new-chat-workspace", "aria-label": "Workspace" },
    h("option", { value: "" }, "No workspace (the agent can create one)"),
    workspaces.map((w) => h("option", { value: w.id }, `${w.name} (${w.state})`)),
  );
  const start = h("button", { type: "submit", class: "btn btn-primary" }, "Start chat");
  const newErr = h("div");
  const form = h(
    "form",
    { class: "card new-chat" },
    h("h2", {}, "New chat"),
    text,
    h("div", { class: "row" }, h("label", {}, "Model ", model), h("label", {}, "Workspace ", ws), start),
    newErr,
  );
  text.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!text.value.trim()) return;
    act(start, newErr, async () => {
      const chat = await api("POST", "/chats", {
        content: text.value,
        model: model.value || null,
        workspace_id: ws.value || null,
      });
      window.location.hash = `#/chats/${chat.id}`;
    });
  });
  fill(main, 
    pageHeader("Chats"),
    form,
    h("div", { class: "toolbar" }, search, h("label", { for: "show-archived" }, archived, " Show archived")),
    err,
    rows,
  );
  let chats = [];
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = chats
      .filter((c) => c.archived === archived.checked)
      .filter((c) => !q || (c.title || "").toLowerCase().includes(q))
      .sort((a, b) => (a.updated_at < b.updated_at ? 1 : a.updated_at > b.updated_at ? -1 : 0));
    fill(rows, 
      ...(shown.length
        ? shown.map((c) =>
            h(
              "a",
              { class: "chat-row", href: `#/chats/${c.id}`, "data-chat-id": c.id },
              h("span", { class: "chat-row-title" }, c.title || "Untitled chat"),
              chatBadge(c.status),
              h("span", { class: "chat-row-ws" }, c.workspace_id ? names.get(c.workspace_id) || "workspace" : "no workspace"),
              c.queued ? h("span", { class: "pill" }, `${c.queued} queued`) : null,
              h("time", { class: "chat-row-time", datetime: c.updated_at }, ago(c.updated_at)),
            ),
          )
        : [h("p", { class: "empty" }, archived.checked ? "No archived chats." : "No chats yet. Start one above.")]),
    );
  };
  const load = async () => {
    try {
      chats = await api("GET", `/chats?archived=${archived.checked}&limit=200`);
      render();
    } catch (e) {
      fill(err, errorBox(e));
    }
  };
  // One chat changed (the watch stream): replace it in place, or add it.
  const upsert = (d) => {
    const c = d.chat;
    if (!c || !c.id) return;
    const i = chats.findIndex((x) => x.id === c.id);
    if (i >= 0) chats[i] = c;
    else chats.push(c);
    render();
  };
  search.addEventListener("input", render);
  archived.addEventListener("change", load);
  // The list follows the server's watch of this user's chats instead of polling: `ready`
  // comes once the watch has its baseline (and again after a reconnect), then the list is
  // (re)loaded and later changes arrive as events (api/routers/chatwatch.py).
  const handlers = { ready: () => load() };
  for (const name of ["created", "status", "title", "archived", "updated"]) handlers[name] = upsert;
  events("/api/v1/me/chats/stream", handlers);
  await load(); // shown at once; `ready` loads again once the watch is in place
}

// --- templates -------------------------------------------------------------------------------

async function templatesPage(main) {
  const list = await api("GET", "/templates");
  const admin = state.user.role === "admin";
  const err = h("div");
  const source = h("textarea", { id: "template-source", rows: "12", placeholder: "name: my-template\nbackend: local\n…", "aria-label": "Template YAML" });
  const push = h("button", { type: "submit", class: "btn btn-primary" }, "Push template");
  const form = h("form", { class: "card" }, h("h2", {}, "Push a template version"), source, err, h("div", { class: "actions" }, push));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(push, err, async () => {
      const t = await api("POST", "/templates", { source: source.value });
      window.location.hash = `#/templates/${encodeURIComponent(t.name)}`;
    });
  });
  fill(main, 
    pageHeader("Templates"),
    h(
      "div",
      { class: "cards-grid" },
      list.length
        ? list.map((t) =>
            h(
              "a",
              { class: "card card-link", href: `#/templates/${encodeURIComponent(t.name)}` },
              h("h3", {}, t.display_name || t.name, t.deprecated ? h("span", { class: "pill" }, "deprecated") : null),
              h("p", {}, t.description || ""),
              h("div", { class: "hint" }, `${t.name} · ${t.backend}`),
            ),
          )
        : h("p", { class: "empty" }, "No templates yet."),
    ),
    admin ? form : null,
  );
}

async function templatePage(main, name) {
  const t = await api("GET", `/templates/${encodeURIComponent(name)}`);
  const spec = t.spec || {};
  fill(main, 
    pageHeader(t.display_name || t.name, h("a", { class: "btn btn-primary", href: "#/workspaces/new" }, "Create workspace")),
    h("p", {}, t.description || ""),
    h("dl", { class: "facts" }, h("dt", {}, "Name"), h("dd", {}, t.name), h("dt", {}, "Backend"), h("dd", {}, t.backend), h("dt", {}, "Version"), h("dd", {}, String(t.active_version ?? "—"))),
    h("h2", {}, "Parameters"),
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Type"), h("th", {}, "Default"), h("th", {}, "Description"))),
      h("tbody", {}, (spec.parameters || []).map((p) => h("tr", {}, h("td", {}, p.display_name || p.name), h("td", {}, p.type), h("td", {}, p.default ?? ""), h("td", {}, p.description || "")))),
    ),
    spec.startup_script ? [h("h2", {}, "Startup script"), h("pre", { class: "log" }, spec.startup_script)] : null,
  );
}

// --- admin -----------------------------------------------------------------------------------

function adminTabs(active) {
  const admin = state.user.role === "admin";
  const tab = (href, label, key) => h("a", { href, class: "tab" + (active === key ? " active" : "") }, label);
  return h(
    "div",
    { class: "tabs" },
    tab("#/admin/tokens", "API tokens", "tokens"),
    admin ? [tab("#/admin/users", "Users", "users"), tab("#/admin/models", "Models", "models")] : null,
  );
}

async function tokensPage(main) {
  const err = h("div");
  const body = h("tbody");
  const secret = h("div");
  const name = h("input", { id: "token-name", required: true, maxlength: "64", placeholder: "laptop" });
  const create = h("button", { type: "submit", class: "btn btn-primary" }, "Create token");
  const form = h("form", { class: "row card" }, h("label", { for: "token-name" }, "New token name"), name, create);
  const load = async () => {
    const tokens = await api("GET", "/users/me/tokens");
    fill(body, 
      ...tokens.map((t) => {
        const revoke = button("Revoke", () => act(revoke, err, async () => {
          await api("DELETE", `/users/me/tokens/${t.id}`);
          await load();
        }), "btn btn-small btn-danger");
        return h("tr", {}, h("td", {}, t.name), h("td", {}, when(t.created_at)), h("td", {}, t.expires_at ? when(t.expires_at) : "never"), h("td", {}, t.last_used_at ? ago(t.last_used_at) : "—"), h("td", {}, revoke));
      }),
    );
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(create, err, async () => {
      const made = await api("POST", "/users/me/tokens", { name: name.value });
      fill(secret, h("div", { class: "alert alert-ok" }, "Copy the new token now; it is shown only once: ", h("code", { class: "secret" }, made.secret)));
      name.value = "";
      await load();
    });
  });
  fill(main, 
    pageHeader("Admin"),
    adminTabs("tokens"),
    form,
    secret,
    err,
    h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Created"), h("th", {}, "Expires"), h("th", {}, "Last used"), h("th", {}, ""))), body),
  );
  await load();
}

async function usersPage(main) {
  const err = h("div");
  const body = h("tbody");
  const secret = h("div");
  const name = h("input", { id: "user-name", required: true, placeholder: "alice" });
  const role = h("select", { id: "user-role" }, h("option", { value: "member" }, "member"), h("option", { value: "admin" }, "admin"));
  const create = h("button", { type: "submit", class: "btn btn-primary" }, "Create user");
  const form = h("form", { class: "row card" }, h("label", { for: "user-name" }, "Name"), name, h("label", { for: "user-role" }, "Role"), role, create);
  const load = async () => {
    const users = await api("GET", "/users");
    fill(body, 
      ...users.map((u) => {
        const toggle = button(u.disabled ? "Enable" : "Disable", () => act(toggle, err, async () => {
          await api("POST", `/users/${u.id}/${u.disabled ? "enable" : "disable"}`);
          await load();
        }), "btn btn-small");
        return h("tr", {}, h("td", {}, u.name), h("td", {}, u.role), h("td", {}, badge(u.disabled ? "off" : "ready", u.disabled ? "disabled" : "active")), h("td", {}, when(u.created_at)), h("td", {}, u.id === state.user.id ? "you" : toggle));
      }),
    );
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(create, err, async () => {
      const made = await api("POST", "/users", { name: name.value, role: role.value });
      fill(secret, h("div", { class: "alert alert-ok" }, `Token of ${made.user.name} (shown once): `, h("code", { class: "secret" }, made.token)));
      name.value = "";
      await load();
    });
  });
  fill(main, pageHeader("Admin"), adminTabs("users"), form, secret, err, h("table", { class: "table" }, h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Role"), h("th", {}, "Status"), h("th", {}, "Created"), h("th", {}, ""))), body));
  await load();
}

const PROVIDERS = ["openai", "anthropic", "openai-compatible", "scripted"];

// Admins add, edit and remove their own models; the operator's are read-only here. A key is
// never shown back: the form names the environment variable that holds it.
async function modelsPage(main) {
  const admin = state.user.role === "admin";
  const err = h("div");
  const body = h("tbody");
  const field = (id, label, input) => h("div", { class: "field" }, h("label", { for: id }, label), input);
  const name = h("input", { id: "model-name", required: true, maxlength: "64", pattern: "[a-z0-9][a-z0-9._\\-]{0,63}", placeholder: "gpt-small" });
  const provider = h("select", { id: "model-provider" }, PROVIDERS.map((p) => h("option", { value: p }, p)));
  const model = h("input", { id: "model-model", required: true, maxlength: "256", placeholder: "provider's model id" });
  const baseUrl = h("input", { id: "model-base-url", type: "url", maxlength: "2048", placeholder: "https://… (openai-compatible)" });
  const keyEnv = h("input", { id: "model-key-env", maxlength: "128", pattern: "[A-Z][A-Z0-9_]*_API_KEY", placeholder: "OPENAI_API_KEY" });
  const windowIn = h("input", { id: "model-window", type: "number", min: "512", step: "1", placeholder: "tokens" });
  const threshold = h("input", { id: "model-threshold", type: "number", min: "0.1", max: "0.95", step: "0.05", placeholder: "0.7" });
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Add model");
  const cancel = button("Cancel", () => resetForm(), "btn");
  cancel.hidden = true;
  const heading = h("h2", {}, "Add a model");
  const form = h(
    "form",
    { class: "card", id: "model-form" },
    heading,
    h(
      "div",
      { class: "model-form" },
      field("model-name", "Name", name),
      field("model-provider", "Provider", provider),
      field("model-model", "Model", model),
      field("model-base-url", "Base URL", baseUrl),
      field("model-key-env", "API key variable", keyEnv),
      field("model-window", "Context window", windowIn),
      field("model-threshold", "Compaction threshold", threshold),
      h("div", { class: "actions" }, save, cancel),
    ),
    h("p", { class: "hint" }, "The key itself stays in the server's environment (a variable ending in _API_KEY); it is never stored or shown here."),
  );
  let editing = null; // the model being edited, or null when adding

  function resetForm() {
    editing = null;
    form.reset();
    name.disabled = false;
    heading.textContent = "Add a model";
    save.textContent = "Add model";
    keyEnv.placeholder = "OPENAI_API_KEY";
    cancel.hidden = true;
  }

  function edit(m) {
    editing = m;
    name.value = m.name;
    name.disabled = true;
    provider.value = m.provider;
    model.value = m.model || "";
    baseUrl.value = m.base_url || "";
    keyEnv.value = "";
    keyEnv.placeholder = "unchanged";
    windowIn.value = m.context_window ?? "";
    threshold.value = m.compaction_threshold ?? "";
    heading.textContent = `Edit ${m.name}`;
    save.textContent = "Save changes";
    cancel.hidden = false;
    name.scrollIntoView({ block: "center" });
    model.focus();
  }

  function fields() {
    const out = { provider: provider.value, model: model.value.trim() };
    if (baseUrl.value.trim()) out.base_url = baseUrl.value.trim();
    else if (editing && editing.base_url) out.base_url = null;
    if (keyEnv.value.trim()) out.api_key_env = keyEnv.value.trim();
    if (windowIn.value) out.context_window = Number(windowIn.value);
    else if (editing && editing.context_window) out.context_window = null;
    if (threshold.value) out.compaction_threshold = Number(threshold.value);
    return out;
  }

  const load = async () => {
    const models = await api("GET", "/models");
    fill(
      body,
      ...models.map((m) => {
        const own = admin && m.source === "admin";
        let actions = null;
        if (own) {
          const editBtn = button("Edit", () => edit(m), "btn btn-small");
          editBtn.dataset.action = "edit-model";
          const del = button("Delete", () => {
            if (del.dataset.armed !== "yes") {
              del.dataset.armed = "yes";
              del.textContent = "Confirm delete";
              return;
            }
            act(del, err, async () => {
              await api("DELETE", `/models/${encodeURIComponent(m.name)}`);
              if (editing && editing.name === m.name) resetForm();
              await load();
            });
          }, "btn btn-small btn-danger");
          del.dataset.action = "delete-model";
          actions = [editBtn, del];
        }
        return h(
          "tr",
          { "data-model": m.name },
          h("td", {}, m.name, m.default ? h("span", { class: "pill" }, "default") : null),
          h("td", {}, m.provider || ""),
          h("td", {}, h("code", {}, m.model || "")),
          h("td", {}, m.context_window ? `${m.context_window} tokens · ${Math.round(m.compaction_threshold * 100)}%` : "—"),
          h("td", {}, m.source || ""),
          h("td", {}, actions || h("span", { class: "hint" }, "server config")),
        );
      }),
    );
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(save, err, async () => {
      if (editing) await api("PATCH", `/models/${encodeURIComponent(editing.name)}`, fields());
      else await api("POST", "/models", { name: name.value.trim(), ...fields() });
      resetForm();
      await load();
    });
  });
  fill(
    main,
    pageHeader("Admin"),
    adminTabs("models"),
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Provider"), h("th", {}, "Model"), h("th", {}, "Context"), h("th", {}, "Source"), h("th", {}, ""))),
      body,
    ),
    err,
    admin ? form : null,
  );
  await load();
}

// --- settings (the signed-in user's own) -------------------------------------------------------

async function settingsPage(main) {
  const err = h("div");
  const saved = h("div", { "aria-live": "polite" });
  const [ctx, models, usage] = await Promise.all([
    api("GET", "/me/context"),
    api("GET", "/models").catch(() => []),
    api("GET", "/users/me/usage").catch(() => null),
  ]);
  const pct = h("input", { id: "threshold", type: "number", min: "10", max: "95", step: "1", placeholder: "not set" });
  const current = h("p", { class: "hint", id: "threshold-current" });
  const show = (value) => {
    pct.value = value === null || value === undefined ? "" : String(Math.round(value * 100));
    current.textContent = value === null || value === undefined
      ? "Not set: each model's own threshold applies."
      : `Your chats are compacted when a request would fill ${Math.round(value * 100)}% of the model's context window (where that is below the model's own).`;
  };
  show(ctx.compaction_threshold);
  const save = h("button", { type: "submit", class: "btn btn-primary" }, "Save");
  const unset = button("Use each model's own", () => act(unset, err, async () => {
    const out = await api("PUT", "/me/context", { compaction_threshold: null });
    show(out.compaction_threshold);
    fill(saved, h("div", { class: "alert alert-ok" }, "Saved."));
  }), "btn");
  unset.dataset.action = "unset-threshold";
  const form = h(
    "form",
    { class: "card settings-form", novalidate: true },
    h("h2", {}, "Context compaction"),
    h("p", {}, "Long chats are compacted — older messages are summarised for the model (they stay readable) — when a request would fill a share of the model's context window. You may lower that share for your own chats."),
    h("div", { class: "row" }, h("label", { for: "threshold" }, "Threshold (% of the window)"), pct, save, unset),
    current,
    err,
    saved,
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(save, err, async () => {
      fill(saved);
      const raw = pct.value.trim();
      // the server checks the bounds too (a typed 400); this only turns percent into a share
      const value = raw === "" ? null : Number(raw) / 100;
      const out = await api("PUT", "/me/context", { compaction_threshold: Number.isFinite(value) ? value : raw });
      show(out.compaction_threshold);
      fill(saved, h("div", { class: "alert alert-ok" }, "Saved."));
    });
  });
  const windows = models.filter((m) => m.context_window);
  const n = (v) => Number(v || 0).toLocaleString("en");
  const usageCard = usage
    ? h(
        "div",
        { class: "card settings-form", id: "my-usage" },
        h("h2", {}, "Your usage this month"),
        h(
          "dl",
          { class: "usage-facts" },
          h("dt", {}, "Input tokens"), h("dd", {}, n(usage.input_tokens)),
          h("dt", {}, "Output tokens"), h("dd", {}, n(usage.output_tokens)),
          h("dt", {}, "Model requests"), h("dd", {}, n(usage.requests)),
          h("dt", {}, "Limit"), h("dd", {}, usage.limit_tokens === null ? "none" : `${n(usage.limit_tokens)} tokens (${n(usage.remaining_tokens)} left)`),
          h("dt", {}, "Resets"), h("dd", {}, when(usage.resets_at)),
        ),
        h("p", { class: "hint" }, "As the model providers reported them; a chat's own total is shown in the chat."),
      )
    : null;
  fill(
    main,
    pageHeader("Settings"),
    usageCard,
    form,
    h(
      "div",
      { class: "card settings-form", id: "usage-slot" },
      h("h2", {}, "Models' own thresholds"),
      windows.length
        ? h("ul", {}, windows.map((m) => h("li", {}, h("code", {}, m.name), ` — ${m.context_window} tokens, compacted at ${Math.round(m.compaction_threshold * 100)}%`)))
        : h("p", { class: "hint" }, "No configured model states its context window: chats are compacted only on request or when a provider reports an overflow."),
    ),
  );
}

// --- routing ---------------------------------------------------------------------------------

const ROUTES = [
  [/^#\/chats\/([0-9a-f-]{36})$/, "chats", chatPage],
  [/^#\/chats\/?$/, "chats", chatsPage],
  [/^#\/workspaces\/new$/, "workspaces", newWorkspacePage],
  [/^#\/workspaces\/([0-9a-f-]{36})$/, "workspaces", workspacePage],
  [/^#\/workspaces\/?$/, "workspaces", workspacesPage],
  [/^#\/templates\/([^/]+)$/, "templates", (m, n) => templatePage(m, decodeURIComponent(n))],
  [/^#\/templates\/?$/, "templates", templatesPage],
  [/^#\/admin\/tokens$/, "admin", tokensPage],
  [/^#\/admin\/users$/, "admin", usersPage],
  [/^#\/admin\/models$/, "admin", modelsPage],
  [/^#\/settings$/, "settings", settingsPage],
];

async function route() {
  leavePage();
  const hash = window.location.hash || "#/chats";
  const link = /^#\/signin\?token=([^&]+)$/.exec(hash);
  const main = h("main", { id: "main", tabindex: "-1" });
  if (link) {
    history.replaceState(null, "", "#/signin"); // the one-time secret leaves the address bar
    try {
      await signIn(decodeURIComponent(link[1]));
      window.location.hash = "#/chats";
      return;
    } catch (err) {
      fill(app, nav(null), main);
      signInPage(main);
      main.prepend(errorBox(err));
      return;
    }
  }
  if (!state.user) await loadSession();
  if (!state.user || hash.startsWith("#/signin")) {
    if (state.user) {
      window.location.hash = "#/chats";
      return;
    }
    fill(app, nav(null), main);
    signInPage(main);
    return;
  }
  for (const [re, key, page] of ROUTES) {
    const m = re.exec(hash);
    if (!m) continue;
    fill(app, nav(key), main);
    try {
      await page(main, ...m.slice(1));
    } catch (err) {
      fill(main, errorBox(err));
    }
    return;
  }
  window.location.hash = "#/chats";
}

window.addEventListener("hashchange", route);
route();
