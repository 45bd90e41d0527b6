// The agent's page: ask (streamed answers with citations), search, read a source, and watch the
// agent's collections, ingest queue and sync. Server text only ever reaches the page as text
// nodes (textContent), never as HTML.

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "outpost.token";
const REFRESH_MS = 4000;

// ---------------------------------------------------------------------------------------------
// Small helpers

/** An element with a class and text; children appended in order. */
function el(tag, { cls, text, attrs } = {}, ...children) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const child of children) if (child) node.append(child);
  return node;
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

function headers(json) {
  const h = {};
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

/** An API failure, with the server's message when it gave one. */
class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function failure(resp) {
  let message = `${resp.status} ${resp.statusText}`;
  try {
    const body = await resp.json();
    const err = body && body.error;
    if (typeof err === "string") message = err;
    else if (err) message = err.message || err.code || message;
  } catch {
    /* not JSON */
  }
  if (resp.status === 401) needToken();
  if (resp.status === 429) {
    const after = resp.headers.get("Retry-After");
    if (after) message += ` (try again in ${after} s)`;
  }
  return new ApiError(resp.status, message);
}

/** `fetch` with the token; JSON in and out; throws ApiError. */
async function api(method, path, body) {
  const resp = await fetch(path, {
    method,
    headers: headers(body !== undefined),
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) throw await failure(resp);
  authorized();
  return resp.json();
}

function needToken() {
  if (!$("auth-prompt").hidden) return;
  $("auth-prompt").hidden = false;
  $("token-input").classList.add("attention");
  $("token-input").focus();
}

function authorized() {
  $("auth-prompt").hidden = true;
  $("token-input").classList.remove("attention");
}

function setStatus(id, text, isError) {
  const node = $(id);
  node.textContent = text || "";
  node.classList.toggle("error", Boolean(isError));
}

function when(ms) {
  if (!ms) return "never";
  return new Date(ms).toLocaleString();
}

// ---------------------------------------------------------------------------------------------
// Ask: POST /v1/chat/completions with "stream": true, read as server-sent events

let sources = []; // of the current answer: [{n, document_id, title, source, byte_start, byte_end, text, cited}]
let answerText = "";
let running = null; // AbortController of the answer in progress

/** Reads `data:` events of a text/event-stream body; calls `onData` with each payload. */
async function readEvents(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data && onData(data) === false) return;
    }
  }
}

/** Renders the answer, turning `[1]`, `[1, 2]` into links to the sources they name. */
function renderAnswer() {
  const box = $("answer");
  box.replaceChildren();
  const known = new Set(sources.map((s) => s.n));
  const pattern = /\[(\d+(?:\s*,\s*\d+)*)\]/g;
  let last = 0;
  for (const m of answerText.matchAll(pattern)) {
    const numbers = m[1].split(",").map((x) => Number(x.trim()));
    if (!numbers.every((n) => known.has(n))) continue;
    box.append(answerText.slice(last, m.index));
    numbers.forEach((n, i) => {
      if (i > 0) box.append(" ");
      const link = el("a", {
        cls: "citation",
        text: `[${n}]`,
        attrs: { href: `#source-${n}`, "data-n": String(n), "data-testid": "citation" },
      });
      box.append(link);
    });
    last = m.index + m[0].length;
  }
  box.append(answerText.slice(last));
}

function renderSources() {
  const list = $("sources");
  list.replaceChildren();
  $("sources-heading").hidden = sources.length === 0;
  for (const s of sources) {
    const link = el("a", {
      cls: "source-link",
      text: s.title || s.source || s.document_id,
      attrs: { href: `#source-${s.n}`, "data-n": String(s.n), title: snippet(s.text || "") },
    });
    const li = el(
      "li",
      { cls: s.cited ? "cited" : "", attrs: { id: `source-${s.n}`, value: String(s.n), "data-testid": "source" } },
      link,
      el("span", { cls: "muted", text: ` ${s.source || ""}` }),
      s.cited ? el("span", { cls: "badge", text: "cited" }) : null,
    );
    list.append(li);
  }
}

function setRunning(controller) {
  running = controller;
  $("ask-button").disabled = Boolean(controller);
  $("stop-button").hidden = !controller;
}

async function ask(question) {
  if (running) running.abort();
  const controller = new AbortController();
  setRunning(controller);
  answerText = "";
  sources = [];
  delete $("answer").dataset.done;
  renderAnswer();
  renderSources();
  $("answer").classList.add("streaming");
  setStatus("ask-status", "Thinking…");
  const request = { messages: [{ role: "user", content: question }], stream: true };
  const maxTokens = Number($("max-tokens").value);
  if (Number.isInteger(maxTokens) && maxTokens > 0) request.max_tokens = maxTokens;
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST",
      headers: headers(true),
      body: JSON.stringify(request),
      signal: controller.signal,
    });
    if (!resp.ok) throw await failure(resp);
    authorized();
    let finish = null;
    await readEvents(resp.body, (data) => {
      if (data === "[DONE]") return false;
      let chunk;
      try {
        chunk = JSON.parse(data);
      } catch {
        return true;
      }
      if (chunk.error) throw new ApiError(500, chunk.error.message || "generation failed");
      if (Array.isArray(chunk.sources)) {
        sources = chunk.sources;
        renderSources();
      }
      const choice = (chunk.choices || [])[0];
      if (choice) {
        const piece = choice.delta && choice.delta.content;
        if (piece) {
          answerText += piece;
          setStatus("ask-status", "Answering…");
        }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      renderAnswer();
      return true;
    });
    setStatus("ask-status", finish === "length" ? "Stopped at the length limit." : "");
    $("answer").dataset.done = "true";
  } catch (e) {
    if (e.name === "AbortError") setStatus("ask-status", "Stopped.");
    else setStatus("ask-status", e.message, true);
  } finally {
    $("answer").classList.remove("streaming");
    if (running === controller) setRunning(null);
  }
}

// ---------------------------------------------------------------------------------------------
// Search: POST /v1/search

let results = [];

async function search(query) {
  setStatus("search-status", "Searching…");
  const list = $("search-results");
  list.replaceChildren();
  try {
    const body = await api("POST", "/v1/search", { query, k: 10, mode: "hybrid" });
    results = body.results || [];
    setStatus("search-status", results.length ? "" : "Nothing found.");
    results.forEach((r, i) => {
      const title = el("a", {
        cls: "result-link",
        text: r.title || r.source || r.document_id,
        attrs: { href: "#source-view", "data-i": String(i) },
      });
      const score = typeof r.score === "number" ? r.score.toFixed(3) : String(r.score ?? "");
      list.append(
        el(
          "li",
          { attrs: { "data-testid": "result" } },
          el("div", { cls: "result-head" }, title, el("span", { cls: "score", text: score })),
          el("div", { cls: "muted small", text: r.source || "" }),
          el("p", { cls: "snippet", text: snippet(r.text || "") }),
        ),
      );
    });
  } catch (e) {
    setStatus("search-status", e.message, true);
  }
}

function snippet(text) {
  const flat = text.replace(/\s+/g, " ").trim();
  return flat.length > 280 ? `${flat.slice(0, 280)}…` : flat;
}

// ---------------------------------------------------------------------------------------------
// The source view: GET /v1/documents/{id}, the passage highlighted

/**
 * The document's text rebuilt from its chunks (exact slices of the text at byte_start..byte_end,
 * possibly overlapping) as pieces {start, bytes}, with {gap, start, end} where the chunks leave
 * bytes out (whitespace between chunks); null when the chunks do not fit together.
 */
function rebuild(doc) {
  const chunks = Array.isArray(doc.chunks) ? [...doc.chunks] : [];
  if (!chunks.length) return null;
  chunks.sort((a, b) => a.byte_start - b.byte_start);
  const enc = new TextEncoder();
  const pieces = [];
  let cursor = 0;
  for (const c of chunks) {
    const bytes = enc.encode(c.text || "");
    if (typeof c.byte_start !== "number" || bytes.length !== c.byte_end - c.byte_start) return null;
    if (c.byte_start > cursor && pieces.length) pieces.push({ gap: true, start: cursor, end: c.byte_start });
    const skip = Math.max(0, cursor - c.byte_start);
    if (skip < bytes.length) pieces.push({ start: c.byte_start + skip, bytes: bytes.subarray(skip) });
    cursor = Math.max(cursor, c.byte_end);
  }
  return pieces;
}

/** Appends the pieces to `box`, bytes [from, to) marked; returns the first <mark> (or null). */
function renderMarked(box, pieces, from, to) {
  const dec = new TextDecoder();
  const runs = []; // [text, marked]
  for (const p of pieces) {
    if (p.gap) {
      runs.push(["\n\n", from <= p.start && p.end <= to]);
      continue;
    }
    const n = p.bytes.length;
    const a = Math.min(Math.max(from - p.start, 0), n);
    const b = Math.min(Math.max(to - p.start, 0), n);
    if (a >= b) {
      runs.push([dec.decode(p.bytes), false]);
    } else {
      runs.push([dec.decode(p.bytes.subarray(0, a)), false]);
      runs.push([dec.decode(p.bytes.subarray(a, b)), true]);
      runs.push([dec.decode(p.bytes.subarray(b)), false]);
    }
  }
  let first = null;
  let mark = null;
  let plain = "";
  for (const [text, marked] of runs) {
    if (!marked) {
      plain += text;
      continue;
    }
    if (!mark || plain) {
      box.append(plain);
      plain = "";
      mark = el("mark", { attrs: { "data-testid": "passage" } });
      box.append(mark);
      first = first || mark;
    }
    mark.append(text);
  }
  box.append(plain);
  return first;
}

let opening = 0; // the latest source asked for: an older one that loads late is dropped

/** Opens a passage: `item` has document_id, title, source, byte_start, byte_end, text. */
async function openSource(item) {
  const ticket = ++opening;
  const view = $("source-view");
  view.hidden = false;
  $("source-title").textContent = item.title || item.source || item.document_id || "Source";
  $("source-source").textContent = item.source || "";
  const box = $("source-text");
  box.replaceChildren(el("span", { cls: "muted", text: "Loading…" }));
  view.scrollIntoView({ block: "nearest" });
  let doc = null;
  try {
    if (item.document_id) doc = await api("GET", `/v1/documents/${encodeURIComponent(item.document_id)}`);
  } catch (e) {
    if (e.status === 401) {
      if (ticket === opening) box.replaceChildren(el("span", { cls: "error", text: e.message }));
      return;
    }
  }
  if (ticket !== opening) return;
  box.replaceChildren();
  if (doc) {
    $("source-title").textContent = doc.title || item.title || doc.source || "Source";
    $("source-source").textContent = doc.source || item.source || "";
  }
  const pieces = doc && rebuild(doc);
  let mark = null;
  if (pieces && typeof item.byte_start === "number" && typeof item.byte_end === "number") {
    mark = renderMarked(box, pieces, item.byte_start, item.byte_end);
  }
  if (!mark) {
    // No document text to place the passage in: the passage alone.
    box.replaceChildren();
    mark = el("mark", { text: item.text || "", attrs: { "data-testid": "passage" } });
    box.append(mark);
  }
  mark.scrollIntoView({ block: "center" });
}

// ---------------------------------------------------------------------------------------------
// The side panel: GET /v1/stats and GET /v1/sync/status, every few seconds

function dlRow(dl, term, value) {
  dl.append(el("dt", { text: term }), el("dd", { text: value }));
}

async function refreshSide() {
  const collections = $("collections");
  try {
    const stats = await api("GET", "/v1/stats");
    collections.replaceChildren(
      ...(stats.collections || []).map((c) =>
        el(
          "li",
          { attrs: { "data-testid": "collection" } },
          el("strong", { text: c.name }),
          el("span", { cls: "muted small", text: ` ${c.documents ?? 0} docs · ${c.chunks ?? 0} chunks` }),
        ),
      ),
    );
    if (!collections.children.length) collections.append(el("li", { cls: "muted", text: "No documents yet." }));
    const queued = Number(stats.queued || 0);
    $("ingest").textContent = queued ? `${queued} file${queued === 1 ? "" : "s"} waiting to be ingested` : "Up to date";
    $("ingest").classList.toggle("busy", queued > 0);
  } catch (e) {
    collections.replaceChildren(el("li", { cls: "error", text: e.message }));
    $("ingest").textContent = "";
  }
  const sync = $("sync");
  try {
    const s = await api("GET", "/v1/sync/status");
    const central = s.central || s;
    sync.replaceChildren();
    if (!central.configured) {
      dlRow(sync, "Central", "not configured");
    } else {
      const state = central.online === true ? "online" : central.online === false ? "offline" : "unknown";
      dlRow(sync, "Central", state);
      dlRow(sync, "Last sync", when(central.last_success_ms));
      if (central.last_error) dlRow(sync, "Error", central.last_error);
    }
    if (typeof s.outbox_depth === "number") dlRow(sync, "To push", String(s.outbox_depth));
    if (s.pending_reembed) dlRow(sync, "To embed", String(s.pending_reembed));
    if (Array.isArray(s.parked) && s.parked.length) dlRow(sync, "Parked", String(s.parked.length));
  } catch (e) {
    sync.replaceChildren(el("dd", { cls: "error", text: e.message }));
  }
  $("side-updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

// ---------------------------------------------------------------------------------------------
// Wiring

function init() {
  $("token-input").value = token();
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token-input").value.trim();
    if (t) localStorage.setItem(TOKEN_KEY, t);
    else localStorage.removeItem(TOKEN_KEY);
    authorized();
    refreshSide();
  });
  $("ask-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("ask-input").value.trim();
    if (q) ask(q);
  });
  $("stop-button").addEventListener("click", () => running && running.abort());
  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = $("search-input").value.trim();
    if (q) search(q);
  });
  // Citations and sources of the answer, and search results, open the source view.
  const openFromAnswer = (ev) => {
    const link = ev.target.closest("a[data-n]");
    if (!link) return;
    ev.preventDefault();
    const s = sources.find((x) => x.n === Number(link.dataset.n));
    if (s) openSource(s);
  };
  $("answer").addEventListener("click", openFromAnswer);
  $("sources").addEventListener("click", openFromAnswer);
  $("search-results").addEventListener("click", (ev) => {
    const link = ev.target.closest("a[data-i]");
    if (!link) return;
    ev.preventDefault();
    const r = results[Number(link.dataset.i)];
    if (r) openSource(r);
  });
  $("source-close").addEventListener("click", () => {
    $("source-view").hidden = true;
  });
  refreshSide();
  setInterval(() => {
    if (!document.hidden) refreshSide();
  }, REFRESH_MS);
}

init();
