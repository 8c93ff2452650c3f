// Workspaces: list, create form generated from the template's typed parameters, detail
// page, and the panel (status, agents, start/stop, live build and startup logs) that the
// chat view embeds too.

import {
  act,
  ago,
  api,
  appendLog,
  badge,
  button,
  errorBox,
  events,
  every,
  fill,
  h,
  logView,
  onLeave,
  pageHeader,
  when,
  wsBadge,
} from "./core.js";

const IN_PROGRESS = new Set(["starting", "stopping", "deleting", "pending"]);

export async function workspacesPage(main) {
  const table = h("tbody");
  const err = h("div");
  fill(main, 
    pageHeader("Workspaces", h("a", { class: "btn btn-primary", href: "#/workspaces/new" }, "New workspace")),
    err,
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Template"), h("th", {}, "Status"), h("th", {}, "Agent"), h("th", {}, "Stops at"))),
      table,
    ),
  );
  const load = async () => {
    try {
      const list = await api("GET", "/workspaces");
      fill(table, 
        ...(list.length
          ? list.map((ws) =>
              h(
                "tr",
                { "data-workspace": ws.name },
                h("td", {}, h("a", { href: `#/workspaces/${ws.id}` }, ws.name)),
                h("td", {}, ws.template_name),
                h("td", {}, wsBadge(ws.state)),
                h("td", {}, ws.agents.length ? badge(ws.agents[0].status) : "—"),
                h("td", {}, ws.deadline ? when(ws.deadline) : "—"),
              ),
            )
          : [h("tr", {}, h("td", { colspan: "5", class: "empty" }, "No workspaces yet."))]),
      );
    } catch (e) {
      fill(err, errorBox(e));
    }
  };
  await load();
  every(3000, load);
}

// The template's regex checked in the browser (best effort: the server checks again; the
// `pattern` attribute would compile it with the `v` flag, which rejects plain classes).
function checkWith(input, regex, message) {
  let re;
  try {
    re = new RegExp(regex);
  } catch {
    return;
  }
  const check = () =>
    input.setCustomValidity(
      re.test(input.value) ? "" : (message || "must match {regex}").replace("{value}", input.value).replace("{regex}", regex),
    );
  input.addEventListener("input", check);
  check();
}

// One input per template parameter, typed: options → select, bool → checkbox, number →
// number with min/max, string → text with the template's regex. The server validates again.
function parameterField(p) {
  const id = `param-${p.name}`;
  let input;
  if (p.options && p.options.length) {
    input = h(
      "select",
      { id, name: p.name },
      p.options.map((o) => h("option", { value: o.value, selected: o.value === p.default }, o.name)),
    );
  } else if (p.type === "bool") {
    input = h("input", { id, name: p.name, type: "checkbox", checked: p.default === "true" });
  } else if (p.type === "number") {
    const v = p.validation || {};
    input = h("input", { id, name: p.name, type: "number", step: "any", min: v.min ?? null, max: v.max ?? null, value: p.default ?? "" });
  } else {
    const v = p.validation || {};
    input = h("input", { id, name: p.name, type: "text", value: p.default ?? "" });
    if (v.regex) checkWith(input, v.regex, v.error);
  }
  if (p.required) input.required = true;
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, p.display_name || p.name, p.required ? " *" : ""),
    input,
    p.description ? h("div", { class: "hint" }, p.description) : null,
  );
}

function parameterValue(p, form) {
  const input = form.elements.namedItem(p.name);
  if (!input) return null;
  if (p.type === "bool") return input.checked ? "true" : "false";
  return input.value;
}

function checked(input, regex, message) {
  checkWith(input, regex, message);
  return input;
}

export async function newWorkspacePage(main) {
  const err = h("div");
  const params = h("div");
  const templates = await api("GET", "/templates");
  const active = templates.filter((t) => !t.deprecated);
  const select = h(
    "select",
    { id: "ws-template", name: "template", required: true },
    active.map((t) => h("option", { value: t.name }, t.display_name || t.name)),
  );
  let spec = null;
  let loadedFor = null;
  const loadParams = async () => {
    const name = select.value;
    if (!name || name === loadedFor) return; // re-selecting must not wipe what was typed
    loadedFor = name;
    const t = await api("GET", `/templates/${encodeURIComponent(name)}`);
    if (select.value !== name) return; // a later choice won
    spec = t.spec || {};
    const ps = spec.parameters || [];
    fill(params, ...(ps.length ? ps.map(parameterField) : [h("p", { class: "hint" }, "This template has no parameters.")]));
  };
  select.addEventListener("change", loadParams);
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, "Create workspace");
  const form = h(
    "form",
    { class: "card form", novalidate: false },
    h("div", { class: "field" }, h("label", { for: "ws-template" }, "Template"), select),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ws-name" }, "Name"),
      checked(h("input", { id: "ws-name", name: "name", required: true, autocomplete: "off" }), "^[a-z][a-z0-9-]{0,63}$", "lowercase letters, digits and dashes, starting with a letter"),
      h("div", { class: "hint" }, "Lowercase letters, digits and dashes."),
    ),
    h(
      "div",
      { class: "field" },
      h("label", { for: "ws-ttl" }, "Stop after (hours, optional)"),
      h("input", { id: "ws-ttl", name: "ttl", type: "number", min: "0.1", step: "0.1" }),
    ),
    h("h2", {}, "Parameters"),
    params,
    err,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!form.reportValidity()) return;
    const parameters = {};
    for (const p of (spec && spec.parameters) || []) parameters[p.name] = parameterValue(p, form);
    const ttl = parseFloat(form.elements.namedItem("ttl").value);
    act(submit, err, async () => {
      const ws = await api("POST", "/workspaces", {
        template: select.value,
        name: form.elements.namedItem("name").value,
        parameters,
        ttl_ms: ttl > 0 ? Math.round(ttl * 3600 * 1000) : null,
      });
      window.location.hash = `#/workspaces/${ws.id}`;
    });
  });
  fill(main, 
    pageHeader("New workspace"),
    active.length ? form : h("p", { class: "empty" }, "No templates yet: an admin pushes one on the Templates page."),
  );
  await loadParams();
}

export async function workspacePage(main, id) {
  const panel = h("div");
  fill(main, pageHeader("Workspace"), panel);
  const { ws } = await workspacePanel(panel, id, { full: true });
  if (ws) main.querySelector("h1").textContent = `Workspace ${ws.name}`;
}

// The panel: renders into `root`, keeps itself current (build events via the log stream,
// status by polling), returns the first view of the workspace.
export async function workspacePanel(root, id, { full = false } = {}) {
  const head = h("div", { class: "ws-head" });
  const err = h("div");
  const buildLog = logView();
  buildLog.classList.add("build-log");
  const buildTitle = h("h3", {}, "Build log");
  const agentLog = logView();
  const agentTitle = h("h3", {}, "Startup script log");
  fill(root, 
    h("div", { class: "ws-panel", "data-workspace-id": id }, head, err, buildTitle, buildLog, full ? [agentTitle, agentLog] : null),
  );
  let followingBuild = null;
  let followingAgent = null;
  let ws = null;
  let closed = false;
  const sources = [];
  let timer = null;
  const close = () => {
    closed = true;
    sources.forEach((s) => s.close());
    if (timer) window.clearInterval(timer);
  };
  onLeave(close);

  const followBuild = (build) => {
    if (followingBuild === build.id) return;
    followingBuild = build.id;
    buildLog.replaceChildren();
    buildTitle.textContent = `Build #${build.build_number} (${build.transition}) log`;
    let last = 0;
    sources.forEach((s) => s.close());
    const source = events(`/api/v1/workspaces/${id}/logs?follow=true&build=${build.build_number}`, {
      log: (d, ev) => {
        const n = Number(ev.lastEventId || 0);
        if (n && n <= last) return; // a reconnect replays from the start
        last = n || last;
        appendLog(buildLog, d.output, d.level);
      },
      done: () => {
        source.close();
        refresh();
      },
    });
    sources.push(source);
  };

  const followAgent = (agent) => {
    if (!full || followingAgent === agent.id) return;
    followingAgent = agent.id;
    agentLog.replaceChildren();
    let last = 0;
    const source = events(`/api/v1/workspaces/${id}/agents/${agent.id}/logs?follow=true`, {
      log: (d) => {
        if (d.id <= last) return;
        last = d.id;
        appendLog(agentLog, d.output, d.level);
      },
      done: () => source.close(),
    });
    sources.push(source);
  };

  const transition = (verb) => {
    const btn = button(verb[0].toUpperCase() + verb.slice(1), () =>
      act(btn, err, async () => {
        if (verb === "delete") {
          if (!window.confirm(`Delete workspace ${ws.name}? Its files are removed.`)) return;
          await api("DELETE", `/workspaces/${id}`);
        } else {
          await api("POST", `/workspaces/${id}/${verb}`, verb === "start" ? {} : undefined);
        }
        await refresh();
      }),
      verb === "start" ? "btn btn-primary" : verb === "delete" ? "btn btn-danger" : "btn",
    );
    btn.dataset.action = verb;
    return btn;
  };

  const render = () => {
    const agent = ws.agents[0];
    const busy = IN_PROGRESS.has(ws.state);
    const buttons = [];
    if (!busy && ws.state !== "deleted") {
      if (ws.state === "running") buttons.push(transition("stop"), transition("rebuild"));
      else buttons.push(transition("start"));
      if (full) buttons.push(transition("delete"));
    }
    fill(head, 
      h(
        "div",
        { class: "ws-title" },
        full ? null : h("a", { href: `#/workspaces/${ws.id}`, class: "ws-name" }, ws.name),
        h("span", { class: "ws-state" }, "Workspace ", wsBadge(ws.state)),
      ),
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Template"),
        h("dd", {}, ws.template_name),
        h("dt", {}, "Agent"),
        h("dd", {}, agent ? [badge(agent.status), " ", badge(agent.lifecycle_state)] : "none"),
        ws.deadline ? [h("dt", {}, "Stops at"), h("dd", {}, when(ws.deadline))] : null,
        ws.latest_build ? [h("dt", {}, "Last build"), h("dd", {}, `#${ws.latest_build.build_number} ${ws.latest_build.transition} · ${ago(ws.latest_build.created_at)}`)] : null,
        ws.latest_build && ws.latest_build.error ? [h("dt", {}, "Build error"), h("dd", { class: "text-bad" }, ws.latest_build.error)] : null,
      ),
      h("div", { class: "actions" }, buttons),
    );
    if (ws.latest_build) followBuild(ws.latest_build);
    if (agent) followAgent(agent);
  };

  const refresh = async () => {
    if (closed) return;
    try {
      ws = await api("GET", `/workspaces/${id}`);
      render();
    } catch (e) {
      fill(err, errorBox(e));
    }
  };
  await refresh();
  timer = window.setInterval(refresh, 2000);
  return { ws, close, refresh };
}
