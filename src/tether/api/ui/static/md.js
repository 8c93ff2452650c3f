// Markdown → DOM, safe by construction: every piece of text becomes a text node (never
// innerHTML), and links keep only http(s)/mailto targets. Model and tool output is
// untrusted; nothing here can create a script, an event handler or a javascript: URL.

const SAFE_SCHEMES = new Set(["http:", "https:", "mailto:"]);

export function safeHref(url) {
  try {
    const u = new URL(url, window.location.href);
    return SAFE_SCHEMES.has(u.protocol) ? u.href : null;
  } catch {
    return null;
  }
}

const INLINE =
  /(`+)([\s\S]*?[^`])\1(?!`)|\*\*([^*\n]+)\*\*|(?<!\w)__([^_\n]+)__(?!\w)|\*([^*\s][^*\n]*)\*|\[([^\]\n]+)\]\(([^)\s]+)\)|(https?:\/\/[^\s<>()]+[^\s<>().,;:!?'"])/g;

function inline(text, parent) {
  let last = 0;
  const re = new RegExp(INLINE); // own lastIndex: bold/italic recurse
  for (let m = re.exec(text); m; m = re.exec(text)) {
    if (m.index > last) parent.append(document.createTextNode(text.slice(last, m.index)));
    last = re.lastIndex;
    if (m[1]) {
      const code = document.createElement("code");
      code.textContent = m[2];
      parent.append(code);
    } else if (m[3] || m[4]) {
      const b = document.createElement("strong");
      inline(m[3] || m[4], b);
      parent.append(b);
    } else if (m[5]) {
      const i = document.createElement("em");
      inline(m[5], i);
      parent.append(i);
    } else if (m[6]) {
      const href = safeHref(m[7]);
      if (href) {
        parent.append(link(href, m[6]));
      } else {
        parent.append(document.createTextNode(m[0])); // shown as typed, not a link
      }
    } else if (m[8]) {
      const href = safeHref(m[8]);
      parent.append(href ? link(href, m[8]) : document.createTextNode(m[8]));
    }
  }
  if (last < text.length) parent.append(document.createTextNode(text.slice(last)));
}

function link(href, label) {
  const a = document.createElement("a");
  a.href = href;
  a.rel = "noopener noreferrer nofollow";
  a.target = "_blank";
  a.textContent = label;
  return a;
}

function el(tag, cls) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  return e;
}

// Renders `text` into a new <div class="md">.
export function renderMarkdown(text) {
  const root = el("div", "md");
  const lines = String(text ?? "").replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  let para = [];
  const flush = () => {
    if (!para.length) return;
    const p = el("p");
    para.forEach((line, n) => {
      if (n) p.append(document.createElement("br"));
      inline(line, p);
    });
    root.append(p);
    para = [];
  };
  while (i < lines.length) {
    const line = lines[i];
    const fence = /^\s*(```+|~~~+)\s*([\w+.-]*)\s*$/.exec(line);
    if (fence) {
      flush();
      const body = [];
      i++;
      while (i < lines.length && !lines[i].trim().startsWith(fence[1])) body.push(lines[i++]);
      i++; // closing fence (or end of text while streaming)
      const pre = el("pre");
      const code = el("code");
      if (fence[2]) code.dataset.lang = fence[2];
      code.textContent = body.join("\n");
      pre.append(code);
      root.append(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      flush();
      const h = el(`h${Math.min(6, heading[1].length + 2)}`);
      inline(heading[2], h);
      root.append(h);
      i++;
      continue;
    }
    const item = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(line);
    if (item) {
      flush();
      const ordered = /\d/.test(item[1]);
      const list = el(ordered ? "ol" : "ul");
      while (i < lines.length) {
        const m = /^\s*([-*+]|\d+[.)])\s+(.*)$/.exec(lines[i]);
        if (!m || /\d/.test(m[1]) !== ordered) break;
        const li = el("li");
        inline(m[2], li);
        list.append(li);
        i++;
      }
      root.append(list);
      continue;
    }
    if (/^\s*>/.test(line)) {
      flush();
      const quote = el("blockquote");
      const body = [];
      while (i < lines.length && /^\s*>/.test(lines[i])) body.push(lines[i++].replace(/^\s*>\s?/, ""));
      quote.append(renderMarkdown(body.join("\n")));
      root.append(quote);
      continue;
    }
    if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
      flush();
      root.append(el("hr"));
      i++;
      continue;
    }
    if (!line.trim()) flush();
    else para.push(line);
    i++;
  }
  flush();
  return root;
}
