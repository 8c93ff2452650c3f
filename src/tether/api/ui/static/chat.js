// The chat view: history (paged), the live reply over SSE, tool calls with their results,
// typed errors with remediation, the composer (queue / interrupt), the queue, compaction
// (Compact / Clear and a marker where the history was compacted), subagents, archive and
// the chat's workspace panel.
//
// The view opens with the newest page of history (GET …/messages?latest=true) and follows
// the stream from that page's last message (?after=<seq>.0): the stream sends persisted
// messages after it, then the turn's buffered deltas, then live events (ids "seq.n"), so a
// reload rebuilds a partial reply once from its deltas. A dropped connection reconnects
// with Last-Event-ID (EventSource does that itself) and continues exactly where it stopped
// — no duplicated and no lost text. Older pages load as the reader scrolls up.

import { renderMarkdown } from "./md.js";
import { act, ago, api, badge, button, chatBadge, errorBox, events, fill, h, onLeave, state } from "./core.js";
import { workspacePanel } from "./workspaces.js";

const PAGE = 50; // messages per history page (the newest first, older ones on scroll)
const CLIP = 2000; // characters of a tool result shown before "show more"
const BUSY = new Set(["running", "pending", "interrupting"]);

// Images are shown only from their bytes, through blob: URLs of an allowed image type — never
// as HTML, never from an address the message names.
const IMAGE_TYPES = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);
// early feedback only (the server's default image_max_bytes); the server's answer decides
const IMAGE_MAX_BYTES = 5 * 1024 * 1024;

function imageEl(part) {
  const type = String(part.media_type || "");
  const refused = (why) => h("div", { class: "attachment-refused" }, `Attachment not shown: ${why}`);
  if (!IMAGE_TYPES.has(type)) return refused(`${type.slice(0, 60) || "no type"} is not an image type shown here`);
  if (typeof part.data !== "string") return refused("no image data");
  let bytes;
  try {
    const bin = atob(part.data);
    bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  } catch {
    return refused("the data is not base64");
  }
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  onLeave(() => URL.revokeObjectURL(url));
  return h("img", { class: "msg-image", src: url, alt: "attached image", loading: "lazy" });
}

function tokens(n) {
  return Number(n || 0).toLocaleString("en");
}

function textOf(parts) {
  return (parts || []).filter((p) => p.type === "text").map((p) => p.text).join("");
}

function jsonText(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function clipped(text) {
  const pre = h("pre", { class: "output" });
  if (text.length <= CLIP) {
    pre.textContent = text;
    return pre;
  }
  pre.textContent = text.slice(0, CLIP) + "…";
  const more = button(`Show more (${text.length - CLIP} more characters)`, () => {
    pre.textContent = text;
    more.remove();
  }, "btn btn-small");
  return h("div", {}, pre, more);
}

export async function chatPage(main, id) {
  let chat;
  try {
    chat = await api("GET", `/chats/${id}`);
  } catch (err) {
    fill(main, 
      h("div", { class: "page-head" }, h("h1", {}, "Chat")),
      errorBox(err),
      h("p", {}, h("a", { href: "#/chats" }, "Back to your chats")),
    );
    return;
  }

  // --- layout ---------------------------------------------------------------------------
  const title = h("h1", { class: "chat-title" }, chat.title || "Untitled chat");
  const statusSlot = h("span", { class: "chat-status", "aria-live": "polite" });
  const archiveBtn = button("", () => act(archiveBtn, topErr, async () => {
    chat = await api("POST", `/chats/${id}/archive`, { archived: !chat.archived });
    renderHead();
  }), "btn btn-small");
  const compactBtn = button("Compact", () => act(compactBtn, topErr, async () => {
    await api("POST", `/chats/${id}/compact`);
    await loadCompactions();
  }), "btn btn-small");
  compactBtn.dataset.action = "compact";
  compactBtn.title = "Summarise the older history for the model (the messages stay here)";
  const clearBtn = button("Clear", () => act(clearBtn, topErr, async () => {
    await api("POST", `/chats/${id}/clear`);
    await loadCompactions();
  }), "btn btn-small");
  clearBtn.dataset.action = "clear";
  clearBtn.title = "Start a fresh context for the model (the messages stay here)";
  const meta = h("div", { class: "chat-meta" });
  const topErr = h("div");
  const earlier = button("Show earlier messages", () => loadOlder(), "btn btn-small earlier");
  earlier.hidden = true;
  const list = h("div", { class: "messages", role: "log", "aria-label": "Messages" });
  const live = h("div", { class: "msg msg-assistant live", hidden: true });
  const liveBody = h("div");
  const liveCards = h("div", { class: "cards" });
  live.append(h("div", { class: "who" }, "Assistant ", h("span", { class: "typing" }, "writing…")), liveBody, liveCards);
  const turnErr = h("div", { class: "turn-error" });
  const scroller = h("div", { class: "scroller" }, earlier, list, live, turnErr);
  const queueList = h("ol", { class: "queue-list" });
  const queueBox = h("div", { class: "queue", hidden: true }, h("h3", {}, "Queued messages"), queueList);
  const input = h("textarea", {
    id: "composer",
    rows: "3",
    placeholder: "Message the agent (Enter to send, Shift+Enter for a new line)",
    "aria-label": "Message",
  });
  const mode = h(
    "fieldset",
    { class: "busy-mode", hidden: true },
    h("legend", {}, "While it works:"),
    h("label", {}, h("input", { type: "radio", name: "busy", value: "queue", checked: true }), " queue"),
    h("label", {}, h("input", { type: "radio", name: "busy", value: "interrupt" }), " interrupt"),
  );
  const sendBtn = h("button", { type: "submit", class: "btn btn-primary" }, "Send");
  const fileIn = h("input", { id: "attach", type: "file", accept: [...IMAGE_TYPES].join(","), multiple: true, class: "visually-hidden" });
  const attachLabel = h("label", { for: "attach", class: "btn btn-small", tabindex: "0", role: "button" }, "Attach image");
  attachLabel.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      fileIn.click();
    }
  });
  const attachList = h("div", { class: "attachments" });
  let attachments = []; // {part, url}
  const stopBtn = button("Interrupt", () => act(stopBtn, sendErr, async () => {
    // the stream reports the status; a late HTTP answer must not overwrite a newer one
    await api("POST", `/chats/${id}/interrupt`);
  }), "btn btn-danger");
  stopBtn.dataset.action = "interrupt";
  stopBtn.hidden = true;
  const sendErr = h("div");
  const composer = h(
    "form",
    { class: "composer" },
    input,
    attachList,
    h("div", { class: "composer-bar" }, mode, h("div", { class: "actions" }, fileIn, attachLabel, stopBtn, sendBtn)),
    sendErr,
  );
  const side = h("aside", { class: "chat-side" });
  const wsSlot = h("div");
  const kids = h("div", { class: "subagents" });
  side.append(wsSlot, kids);
  fill(main, 
    h(
      "div",
      { class: "chat-layout" },
      h(
        "section",
        { class: "chat-main" },
        h("div", { class: "chat-head" }, h("div", {}, title, meta), h("div", { class: "actions" }, statusSlot, compactBtn, clearBtn, archiveBtn)),
        topErr,
        scroller,
        queueBox,
        composer,
      ),
      side,
    ),
  );
  main.classList.add("main-chat");
  onLeave(() => main.classList.remove("main-chat"));

  function renderHead() {
    title.textContent = chat.title || "Untitled chat";
    archiveBtn.textContent = chat.archived ? "Unarchive" : "Archive";
    fill(meta, 
      chat.model ? h("span", {}, "Model ", h("code", {}, chat.model)) : null,
      chat.parent_chat_id ? h("span", {}, " · subagent of ", h("a", { href: `#/chats/${chat.parent_chat_id}` }, "parent chat")) : null,
      h("span", {}, ` · updated ${ago(chat.updated_at)}`),
      chat.usage ? h("span", { class: "chat-usage" }, ` · ${tokens(chat.usage.input_tokens)} in / ${tokens(chat.usage.output_tokens)} out tokens`) : null,
    );
  }

  // The chat row again (title, usage, archived) after a turn ends or an event says so.
  async function refreshChat() {
    try {
      const fresh = await api("GET", `/chats/${id}`);
      chat = { ...fresh, status: chat.status };
      renderHead();
      showWorkspace(chat.workspace_id); // one the agent bound during the turn
    } catch {
      /* the stream keeps the status; the head is refreshed on the next turn */
    }
  }

  // --- status, errors, workspace ---------------------------------------------------------
  let panel = null;
  let panelFor; // undefined until the first showWorkspace (null means "no workspace")
  async function showWorkspace(wsId) {
    if (wsId === panelFor) return;
    panelFor = wsId;
    if (panel) panel.close();
    panel = null;
    if (!wsId) {
      fill(wsSlot, h("div", { class: "card" }, h("h3", {}, "Workspace"), h("p", { class: "hint" }, "No workspace yet. The agent can create one, or create one on the Workspaces page.")));
      return;
    }
    panel = await workspacePanel(wsSlot, wsId);
  }
  onLeave(() => panel && panel.close());

  async function startWorkspace(btn, where) {
    await act(btn, where, async () => {
      if (!chat.workspace_id) throw new Error("this chat has no workspace");
      await api("POST", `/workspaces/${chat.workspace_id}/start`, {});
      if (panel) await panel.refresh();
    });
  }

  function typedError(err) {
    const actions = [];
    const remedy = String(err.remediation || "");
    if (remedy.includes("start_workspace") && chat.workspace_id) {
      const b = button("Start workspace", () => startWorkspace(b, null), "btn btn-primary btn-small");
      b.dataset.action = "start-workspace";
      actions.push(b);
    }
    return errorBox(err, actions);
  }

  let wasBusy = BUSY.has(chat.status);
  function setStatus(data) {
    if (data.status) chat.status = data.status;
    fill(statusSlot, chatBadge(chat.status));
    const busy = BUSY.has(chat.status);
    stopBtn.hidden = !busy;
    mode.hidden = !busy;
    live.querySelector(".typing").hidden = !busy;
    if (data.workspace_id !== undefined && data.workspace_id !== chat.workspace_id) {
      chat.workspace_id = data.workspace_id;
      showWorkspace(chat.workspace_id);
    }
    if (chat.status === "error" && (data.last_error || data.last_error_code)) {
      fill(turnErr, typedError({ code: data.last_error_code, message: data.last_error, remediation: remedyOf(data.last_error_code) }));
    } else if (busy) {
      turnErr.replaceChildren();
    }
    if (!busy) loadChildren();
    if (!busy && wasBusy) refreshChat(); // usage and an automatic title come with the turn's end
    wasBusy = busy;
  }

  function remedyOf(code) {
    return { workspace_stopped: "start_workspace", no_workspace: "create_workspace", agent_unreachable: "stop_workspace, then start_workspace" }[code] || null;
  }

  async function loadChildren() {
    try {
      const children = await api("GET", `/chats/${id}/children`);
      fill(kids, 
        ...(children.length
          ? [h("h3", {}, "Subagents"), h("ul", {}, children.map((c) => h("li", {}, h("a", { href: `#/chats/${c.id}` }, c.title || "subagent"), " ", chatBadge(c.status))))]
          : []),
      );
    } catch {
      /* the list is a nicety; the chat itself still works */
    }
  }

  function showQueue(queued) {
    fill(queueList, ...queued.map((q) => {
      const images = (q.parts || []).filter((p) => p.type === "image").length;
      return h("li", { class: "queued" }, textOf(q.parts) || "", images ? h("span", { class: "pill" }, `${images} image${images > 1 ? "s" : ""}`) : null);
    }));
    queueBox.hidden = queued.length === 0;
  }

  // --- tool calls -------------------------------------------------------------------------
  const cards = new Map(); // tool_call_id → {el, setArgs, setResult}

  function card(callId, toolName) {
    let c = cards.get(callId);
    if (c) return c;
    const state_ = h("span", { class: "tool-state" }, badge("running", "running"));
    const argsPre = h("pre", { class: "args" });
    const argsShort = h("span", { class: "tool-args-short" });
    const result = h("div", { class: "tool-result" }, h("p", { class: "hint" }, "Waiting for the result…"));
    const el = h(
      "details",
      { class: "tool", "data-call-id": callId, "data-tool": toolName },
      h("summary", {}, h("span", { class: "tool-name" }, toolName), argsShort, state_),
      h("div", { class: "tool-body" }, h("h4", {}, "Arguments"), argsPre, h("h4", {}, "Result"), result),
    );
    c = {
      el,
      setArgs(args) {
        const text = jsonText(args || {});
        argsPre.textContent = text;
        const one = JSON.stringify(args || {});
        argsShort.textContent = one.length > 90 ? one.slice(0, 89) + "…" : one;
      },
      setResult(part) {
        if (part.is_error) {
          fill(state_, badge("error", "error"));
          fill(result, typedError({ code: part.error_code || "tool_error", message: jsonText(part.result), remediation: part.remediation }));
          el.open = true;
          return;
        }
        const r = part.result;
        const failed = r && typeof r === "object" && (r.error || (r.exit_code !== undefined && r.exit_code !== 0));
        fill(state_, badge(failed ? "failed" : "succeeded", failed ? "failed" : "ok"));
        const out = [];
        if (r && typeof r === "object" && "exit_code" in r) {
          out.push(h("div", { class: "hint" }, `exit code ${r.exit_code}${r.truncated ? " · output truncated" : ""}`));
          out.push(clipped(String(r.output ?? "")));
          if (r.error) out.push(h("div", { class: "text-bad" }, String(r.error)));
        } else if (r && typeof r === "object" && typeof r.content === "string") {
          out.push(clipped(r.content));
        } else {
          out.push(clipped(jsonText(r)));
        }
        fill(result, ...out);
      },
    };
    cards.set(callId, c);
    return c;
  }

  // --- messages ---------------------------------------------------------------------------
  const seen = new Set(); // seqs of the persisted messages in the view
  let prevBefore = null; // the older page's before_seq; null: the first message is loaded
  let loadingOlder = false;
  let compactions = []; // the chat's compaction records, oldest first

  function messageEl(m) {
    if (m.visibility === "model") return null;
    const parts = m.parts || [];
    if (m.role === "tool") {
      const orphans = [];
      for (const p of parts) {
        if (p.type !== "tool-result") continue;
        const known = cards.has(p.tool_call_id);
        const c = card(p.tool_call_id, p.tool_name);
        c.setResult(p);
        if (!known) orphans.push(c.el);
      }
      return orphans.length ? h("div", { class: "msg msg-tool", "data-seq": m.seq }, orphans) : null;
    }
    if (m.role !== "user" && m.role !== "assistant") return null;
    const body = [];
    for (const p of parts) {
      if (p.type === "text" && p.text) body.push(renderMarkdown(p.text));
      else if (p.type === "image") body.push(imageEl(p));
      else if (p.type === "reasoning" && p.text)
        body.push(h("details", { class: "reasoning" }, h("summary", {}, "Thinking"), h("pre", {}, p.text)));
      else if (p.type === "tool-call") {
        const c = card(p.tool_call_id, p.tool_name);
        c.setArgs(p.args);
        body.push(c.el);
      }
    }
    if (!body.length) return null;
    const content = h("div", { class: "msg-body" }, body);
    const el = h(
      "div",
      { class: `msg msg-${m.role}`, "data-seq": m.seq, "data-id": m.id },
      h(
        "div",
        { class: "who" },
        m.role === "user" ? "You" : "Assistant",
        h("time", { datetime: m.created_at, title: m.created_at }, ago(m.created_at)),
        m.role === "user" && m.id ? editButton(m, content) : null,
      ),
      content,
    );
    return el;
  }

  // Edit a user message: it and everything after it are replaced and the chat runs again
  // (PATCH …/messages/{id}; a busy chat answers with the typed chat_busy).
  function editButton(m, content) {
    const btn = button("Edit", () => {
      if (content.querySelector(".edit-box")) return;
      const images = (m.parts || []).filter((p) => p.type === "image");
      const area = h("textarea", { class: "edit-text", rows: "3", "aria-label": "Edited message" });
      area.value = textOf(m.parts);
      const where = h("div");
      const save = h("button", { type: "submit", class: "btn btn-primary btn-small" }, "Save and rerun");
      const cancel = button("Cancel", () => {
        box.remove();
        for (const c of content.children) c.hidden = false;
      }, "btn btn-small");
      const box = h(
        "form",
        { class: "edit-box" },
        area,
        images.length ? h("p", { class: "hint" }, `${images.length} attached image${images.length > 1 ? "s" : ""} kept`) : null,
        h("div", { class: "actions" }, save, cancel),
        where,
      );
      box.addEventListener("submit", (ev) => {
        ev.preventDefault();
        const text = area.value;
        if (!text.trim() && !images.length) return;
        const next = images.length ? [...(text.trim() ? [{ type: "text", text }] : []), ...images] : text;
        act(save, where, async () => {
          await api("PATCH", `/chats/${id}/messages/${m.id}`, { content: next });
          // the stream's `edit` event removes the replaced messages; the new one follows
        });
      });
      area.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
          ev.preventDefault();
          box.requestSubmit();
        } else if (ev.key === "Escape") {
          cancel.click();
        }
      });
      for (const c of content.children) c.hidden = true;
      content.append(box);
      area.focus();
    }, "btn btn-small btn-link");
    btn.dataset.action = "edit-message";
    btn.setAttribute("aria-label", "Edit this message");
    return btn;
  }

  // An edit replaced the messages from `fromSeq` on: they leave the view.
  function dropFrom(fromSeq) {
    for (const el of [...list.children]) {
      if (Number(el.dataset.seq) >= fromSeq) el.remove();
    }
    for (const seq of [...seen]) if (seq >= fromSeq) seen.delete(seq);
    for (const [callId, c] of cards) if (!c.el.isConnected) cards.delete(callId);
    liveCards.replaceChildren();
    resetLive();
  }

  function nearBottom() {
    return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 80;
  }
  function toBottom() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  function addMessage(m) {
    if (seen.has(m.seq)) return;
    seen.add(m.seq);
    const stick = nearBottom();
    const el = messageEl(m);
    if (el) list.append(el);
    if (m.role === "assistant") resetLive(); // its text was the live text
    if (stick || m.role === "user") toBottom();
  }

  // The newest page; returns the seq to follow the stream from.
  async function loadLatest() {
    const page = await api("GET", `/chats/${id}/messages?latest=true&limit=${PAGE}`);
    for (const m of page.messages) seen.add(m.seq);
    fill(list, ...page.messages.map(messageEl).filter(Boolean));
    prevBefore = page.prev_before_seq;
    earlier.hidden = prevBefore === null;
    toBottom();
    return page.messages.length ? page.messages[page.messages.length - 1].seq : 0;
  }

  async function loadOlder() {
    if (prevBefore === null || loadingOlder) return;
    loadingOlder = true;
    earlier.disabled = true;
    try {
      const page = await api("GET", `/chats/${id}/messages?before_seq=${prevBefore}&limit=${PAGE}`);
      const fresh = page.messages.filter((m) => !seen.has(m.seq));
      for (const m of fresh) seen.add(m.seq);
      const height = scroller.scrollHeight;
      const top = scroller.scrollTop;
      list.prepend(...fresh.map(messageEl).filter(Boolean));
      scroller.scrollTop = top + scroller.scrollHeight - height; // the reader's place stays
      prevBefore = page.prev_before_seq;
      earlier.hidden = prevBefore === null;
      markCompactions();
    } catch (err) {
      fill(topErr, errorBox(err));
    } finally {
      loadingOlder = false;
      earlier.disabled = false;
    }
  }
  scroller.addEventListener("scroll", () => {
    if (scroller.scrollTop < 120) loadOlder();
  });

  // --- compaction -------------------------------------------------------------------------
  // Messages up to the latest compaction are no longer sent to the model: they stay here,
  // marked, with a divider where each compaction cut the history.
  async function loadCompactions() {
    try {
      compactions = (await api("GET", `/chats/${id}/compactions`)).filter((c) => !c.invalidated);
    } catch {
      return; /* the marker is a nicety; the next compaction event tries again */
    }
    markCompactions();
  }

  function markCompactions() {
    for (const old of list.querySelectorAll(".compaction-marker")) old.remove();
    const through = compactions.length ? compactions[compactions.length - 1].through_seq : 0;
    const els = [...list.children];
    for (const el of els) el.classList.toggle("msg-compacted", Number(el.dataset.seq) <= through);
    for (const c of compactions) {
      const next = els.find((el) => Number(el.dataset.seq) > c.through_seq);
      const first = els.length ? Number(els[0].dataset.seq) : 0;
      if (next === els[0] && prevBefore !== null && first > c.through_seq + 1) continue; // not loaded yet
      const marker = compactionMarker(c);
      if (next) list.insertBefore(marker, next);
      else list.append(marker);
    }
  }

  function compactionMarker(c) {
    const cleared = c.kind === "clear";
    return h(
      "div",
      { class: "compaction-marker", role: "separator", "data-kind": c.kind, "data-through": c.through_seq },
      h("span", { class: "compaction-label" }, cleared ? "Context cleared" : "History compacted"),
      h("span", { class: "hint" }, cleared
        ? " — the model starts afresh here; the messages above stay for reading."
        : ` — the model gets a summary of the messages above (kept here for reading)${c.tokens_before ? `; ~${c.tokens_before} tokens before` : ""}.`),
      !cleared && c.summary ? h("details", { class: "compaction-summary" }, h("summary", {}, "Summary"), h("pre", {}, c.summary)) : null,
    );
  }

  // --- the live reply -----------------------------------------------------------------------
  let liveText = "";
  let liveReasoning = "";
  let frame = 0;
  function resetLive() {
    liveText = "";
    liveReasoning = "";
    liveBody.replaceChildren();
    // cards still here were not persisted yet (the message holding them moved the rest)
    live.hidden = liveCards.childElementCount === 0;
    list.after(live);
  }
  function paintLive() {
    frame = 0;
    const stick = nearBottom();
    fill(
      liveBody,
      liveReasoning ? h("details", { class: "reasoning" }, h("summary", {}, "Thinking"), h("pre", {}, liveReasoning)) : null,
      liveText ? renderMarkdown(liveText) : null,
    );
    live.hidden = !liveText && !liveReasoning && liveCards.childElementCount === 0;
    if (stick) toBottom();
  }
  function schedulePaint() {
    if (!frame) frame = window.requestAnimationFrame(paintLive);
  }
  function onPart(d) {
    if (d.kind === "text") {
      liveText += d.delta || "";
      schedulePaint();
    } else if (d.kind === "reasoning") {
      liveReasoning += d.delta || "";
      schedulePaint();
    } else if (d.kind === "tool-call-start" || d.kind === "tool-call") {
      const c = card(d.tool_call_id, d.tool_name);
      if (d.args) c.setArgs(d.args);
      if (!c.el.isConnected) liveCards.append(c.el);
      schedulePaint();
    } else if (d.kind === "tool-result") {
      card(d.tool_call_id, d.tool_name).setResult(d);
    }
  }

  // --- composer ---------------------------------------------------------------------------
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  function showAttachments() {
    fill(attachList, ...attachments.map((a, i) => {
      const remove = button("Remove", () => {
        URL.revokeObjectURL(a.url);
        attachments.splice(i, 1);
        showAttachments();
      }, "btn btn-small");
      return h("div", { class: "attachment" }, h("img", { src: a.url, alt: a.name }), h("span", { class: "hint" }, a.name), remove);
    }));
  }
  onLeave(() => attachments.forEach((a) => URL.revokeObjectURL(a.url)));

  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  fileIn.addEventListener("change", () => act(attachLabel, sendErr, async () => {
    for (const file of fileIn.files) {
      if (!IMAGE_TYPES.has(file.type)) throw new Error(`${file.name}: only PNG, JPEG, GIF and WebP images can be attached`);
      if (file.size > IMAGE_MAX_BYTES) throw new Error(`${file.name}: larger than ${IMAGE_MAX_BYTES / 1024} KiB`);
      const data = await readBase64(file);
      attachments.push({ name: file.name, url: URL.createObjectURL(file), part: { type: "image", media_type: file.type, data } });
    }
    fileIn.value = "";
    showAttachments();
  }));

  composer.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const text = input.value;
    if (!text.trim() && !attachments.length) return;
    const content = attachments.length
      ? [...(text.trim() ? [{ type: "text", text }] : []), ...attachments.map((a) => a.part)]
      : text;
    const busy = composer.querySelector("input[name=busy]:checked").value;
    act(sendBtn, sendErr, async () => {
      await api("POST", `/chats/${id}/messages`, { content, busy });
      input.value = "";
      attachments.forEach((a) => URL.revokeObjectURL(a.url));
      attachments = [];
      showAttachments();
      fill(turnErr);
    });
  });

  // --- go -----------------------------------------------------------------------------------
  renderHead();
  const lastSeq = await loadLatest();
  list.after(live);
  loadCompactions();
  setStatus(chat);
  showWorkspace(chat.workspace_id);
  loadChildren();
  try {
    showQueue(await api("GET", `/chats/${id}/queue`));
  } catch {
    /* shown again by the next queue_update */
  }
  events(`/api/v1/chats/${id}/stream` + (lastSeq ? `?after=${lastSeq}.0` : ""), {
    message: (m) => addMessage(m),
    message_part: (d) => onPart(d),
    status: (d) => setStatus(d),
    compaction: () => loadCompactions(),
    edit: (d) => {
      dropFrom(Number(d.superseded_from_seq));
      loadCompactions(); // an edit before a cut invalidates that compaction
    },
    title: (d) => {
      if (typeof d.title === "string") {
        chat.title = d.title;
        renderHead();
      }
    },
    error: (d) => {
      fill(turnErr, typedError({ code: d.code || "error", message: d.message, remediation: remedyOf(d.code) }));
    },
    retry: (d) => {
      fill(turnErr, h("div", { class: "alert alert-warn" }, `Model provider failed (${d.error}); retry ${d.attempt}/${d.max_attempts} in ${d.delay_s}s`));
    },
    queue_update: (d) => showQueue(d.queued || []),
  });
  input.focus();
  return state;
}
