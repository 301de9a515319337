// botmemory admin UI: plain JavaScript, no build step. It uses the same /api/v1
// as any client, signed in by an HttpOnly session cookie; state-changing
// requests carry the session's CSRF token. Data is always inserted as text.
"use strict";

const S = { session: null, bots: [], bot: null, scope: "users", cursor: null, selected: null,
            conversation: null, timer: null };

// -- helpers -------------------------------------------------------------------------
const $ = (sel) => document.querySelector(sel);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function clear(el, ...children) { el.replaceChildren(...children.flat().filter((c) => c)); }
const enc = (s) => encodeURIComponent(s);
const json = (v) => JSON.stringify(v, null, 2);
const when = (t) => (t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "—");

function ttlText(expiresAt) {
  if (expiresAt === null || expiresAt === undefined) return "never";
  let s = Math.max(0, Math.ceil(expiresAt - Date.now() / 1000));
  if (s === 0) return "expired";
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  const parts = [[d, "d"], [hh, "h"], [m, "m"], [s, "s"]].filter(([n]) => n > 0).map(([n, u]) => n + u);
  return parts.slice(0, 2).join(" ") || "0s";
}

function ttlCell(expiresAt) {
  return h("span", { class: "ttl", "data-expires": expiresAt === null ? "" : String(expiresAt) }, ttlText(expiresAt));
}

function tickTtls() {  // TTLs count down every second, from the expiry the server sent
  for (const el of document.querySelectorAll("[data-expires]")) {
    const v = el.getAttribute("data-expires");
    el.textContent = ttlText(v === "" ? null : Number(v));
  }
}

function flash(message) {
  $("#flash").textContent = message || "";
}

class HttpError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = {};
  if (method !== "GET" && S.session) headers["X-CSRF-Token"] = S.session.csrf;
  const init = { method, headers, credentials: "same-origin" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!response.ok) {
    const err = (data && data.error) || { code: "error", message: text || response.statusText };
    if (response.status === 401 && !path.startsWith("/ui/")) showLogin();
    throw new HttpError(response.status, err.code, err.message);
  }
  return data;
}

const botPath = (rest) => `/api/v1/bots/${enc(S.bot)}${rest}`;

// -- session -----------------------------------------------------------------------------
async function start() {
  const match = location.hash.match(/^#login=([A-Za-z0-9_-]+)$/);
  if (match) {
    history.replaceState(null, "", location.pathname + "#/dashboard");  // the code is single-use: drop it
    try {
      S.session = await api("POST", "/ui/login", { code: match[1] });
    } catch (e) {
      showLogin("This login link was already used or has expired. Sign in with a token.");
      return;
    }
  } else {
    try { S.session = await api("GET", "/ui/session"); } catch (e) { showLogin(); return; }
  }
  await signedIn();
}

function showLogin(message) {
  S.session = null;
  $("#top").hidden = true;
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-login";
  $("#login-error").textContent = message || "";
  $("#login-token").focus();
}

async function signedIn() {
  $("#top").hidden = false;
  $("#who").textContent = S.session.scope === "admin" ? "admin" : `bot ${S.session.bot}`;
  const data = await api("GET", "/api/v1/bots");
  S.bots = data.bots;
  const select = $("#bot-select");
  clear(select, S.bots.map((b) => h("option", { value: b.id }, b.id + (b.mounted ? "" : " (not mounted)"))));
  const mounted = S.bots.find((b) => b.mounted);
  S.bot = S.bot && S.bots.some((b) => b.id === S.bot) ? S.bot : (mounted || S.bots[0] || { id: null }).id;
  if (S.bot) select.value = S.bot;
  if (!location.hash.startsWith("#/")) location.hash = "#/dashboard";
  route();
}

// -- routing -------------------------------------------------------------------------------
const VIEWS = { dashboard: showDashboard, memory: showMemory, chat: showChat, audit: showAudit, users: showUsers };

function route() {
  if (!S.session) return;
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  const view = VIEWS[name] ? name : "dashboard";
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== `view-${view}`;
  for (const a of document.querySelectorAll(".top nav a")) {
    if (a.dataset.view === view) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  for (const id of ["dash-bot", "mem-bot", "chat-bot", "audit-bot", "users-bot"]) $("#" + id).textContent = S.bot ? `· ${S.bot}` : "";
  flash("");
  if (!S.bot) { flash("No bot yet: put one in the bots folder, or write data for one."); return; }
  VIEWS[view]().catch((e) => flash(`${e.message}`));
}

// -- dashboard -------------------------------------------------------------------------------
function barChart(items, label) {  // items: [[label, value]]
  const w = 560, barH = 22, gap = 8, left = 120, max = Math.max(1, ...items.map(([, v]) => v));
  const height = items.length * (barH + gap) + gap;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label + ": " + items.map(([k, v]) => `${k} ${v}`).join(", "));
  items.forEach(([k, v], i) => {
    const y = gap + i * (barH + gap);
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", "0"); t.setAttribute("y", String(y + barH * 0.7)); t.textContent = k;
    const r = document.createElementNS(svg.namespaceURI, "rect");
    const bw = Math.max(v > 0 ? 2 : 0, ((w - left - 50) * v) / max);
    r.setAttribute("x", String(left)); r.setAttribute("y", String(y)); r.setAttribute("height", String(barH));
    r.setAttribute("width", String(bw)); r.setAttribute("class", "bar");
    const n = document.createElementNS(svg.namespaceURI, "text");
    n.setAttribute("x", String(left + bw + 6)); n.setAttribute("y", String(y + barH * 0.7)); n.setAttribute("class", "v");
    n.textContent = String(v);
    svg.append(t, r, n);
  });
  return svg;
}

function columnChart(points, label) {  // points: [[label, value]] over time
  const w = 560, hgt = 150, bottom = 20, max = Math.max(1, ...points.map(([, v]) => v));
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("role", "img");
  const total = points.reduce((a, [, v]) => a + v, 0);
  svg.setAttribute("aria-label", `${label}: ${total} in total`);
  const bw = w / points.length;
  points.forEach(([k, v], i) => {
    const bh = ((hgt - bottom - 14) * v) / max;
    const r = document.createElementNS(svg.namespaceURI, "rect");
    r.setAttribute("x", String(i * bw + 1)); r.setAttribute("width", String(bw - 2));
    r.setAttribute("y", String(hgt - bottom - bh)); r.setAttribute("height", String(bh)); r.setAttribute("class", "bar");
    const title = document.createElementNS(svg.namespaceURI, "title"); title.textContent = `${k}: ${v}`; r.append(title);
    svg.append(r);
    if (i % 6 === 0) {
      const t = document.createElementNS(svg.namespaceURI, "text");
      t.setAttribute("x", String(i * bw)); t.setAttribute("y", String(hgt - 4)); t.textContent = k;
      svg.append(t);
    }
  });
  return svg;
}

function table(columns, rows) {
  return h("div", { class: "table-wrap" },
    h("table", {}, h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c))))))));
}

async function showDashboard() {
  const st = await api("GET", botPath("/stats"));
  const cards = [["users", st.users], ["conversations", st.conversations], ["user variables", st.keys.user],
    ["conversation variables", st.keys.conversation], ["global variables", st.keys.global], ["KVS keys", st.keys.kvs],
    ["held users", st.held_users.length]];
  clear($("#dash-cards"), cards.map(([l, n]) => h("div", { class: "stat" }, h("div", { class: "n" }, n), h("div", { class: "l" }, l))));
  clear($("#dash-expiring"), barChart([["next hour", st.expiring.hour], ["next day", st.expiring.day], ["next week", st.expiring.week]], "Keys expiring"));
  clear($("#dash-janitor"), columnChart(st.janitor_deletions.map((b) => [new Date(b.time * 1000).toISOString().slice(11, 16), b.deleted]), "Janitor deletions per hour"),
    h("p", { class: "sub" }, `last janitor run of this server: ${when(st.janitor_last_run)}`));
  clear($("#dash-scopes"), barChart(Object.entries(st.keys), "Keys per scope"),
    st.truncated ? h("p", { class: "sub" }, `counted over the first ${st.scanned} keys`) : null);
  clear($("#dash-held"), st.held_users.length
    ? table(["user", "since", "reason", "keys"], st.held_users.map((u) => [u.user_id, when(u.since), u.reason || "—", u.keys]))
    : h("p", { class: "muted" }, "Nobody is under legal hold."));
  clear($("#dash-bots"), table(["bot", "name", "mounted", "load error"],
    S.bots.map((b) => [b.id, b.name || "—", b.mounted ? "yes" : "no", b.load_error || "—"])));
}

// -- memory browser ------------------------------------------------------------------------------
function scopePath(item) {
  if (S.scope === "users") return botPath(`/users/${enc(item)}/variables`);
  if (S.scope === "conversations") return botPath(`/conversations/${enc(item)}/variables`);
  return botPath("/variables");
}

async function showMemory() {
  for (const b of document.querySelectorAll(".tabs button")) b.setAttribute("aria-selected", String(b.dataset.scope === S.scope));
  await loadList(false);
}

async function loadList(more) {
  const list = $("#mem-list");
  const prefix = $("#mem-prefix").value;
  if (!more) { clear(list); S.cursor = null; }
  let items = [], cursor = null;
  if (S.scope === "users") {
    const q = `?limit=100${more && S.cursor ? "&cursor=" + enc(S.cursor) : ""}`;
    const data = await api("GET", botPath("/users" + q));
    items = data.users.filter((u) => u.startsWith(prefix)); cursor = data.cursor;
  } else if (S.scope === "conversations") {
    const data = await api("GET", botPath("/conversations?limit=200"));
    items = data.conversations.filter((c) => c.id.startsWith(prefix)).map((c) => c.id);
  } else if (S.scope === "kvs") {
    const q = `?prefix=${enc(prefix)}&limit=100${more && S.cursor ? "&cursor=" + enc(S.cursor) : ""}`;
    const data = await api("GET", botPath("/kvs" + q));
    items = data.keys; cursor = data.cursor;
  } else {
    clear(list, h("li", {}, h("button", { type: "button", onclick: () => openItem("global") }, "global variables")));
    $("#mem-more").hidden = true;
    return openItem("global");
  }
  S.cursor = cursor;
  $("#mem-more").hidden = !cursor;
  list.append(...items.map((it) => h("li", {}, h("button", { type: "button", "data-item": it, onclick: () => openItem(it) }, it))));
  if (!items.length && !more) list.append(h("li", { class: "muted" }, "Nothing here."));
}

function markSelected(item) {
  for (const b of document.querySelectorAll("#mem-list button")) {
    if (b.dataset.item === item) b.setAttribute("aria-current", "true"); else b.removeAttribute("aria-current");
  }
}

async function openItem(item) {
  S.selected = item;
  markSelected(item);
  const detail = $("#mem-detail");
  if (S.scope === "kvs") {
    $("#mem-title").textContent = `Key ${item}`;
    let e;
    try { e = await api("GET", botPath(`/kvs/${enc(item)}`)); } catch (err) { clear(detail, h("p", { class: "error" }, err.message)); return; }
    clear(detail, table(["value", "version", "TTL", "modified"], [[h("td", { class: "value" }, h("pre", {}, json(e.value))), e.version, ttlCell(e.expires_at), when(e.modified_at)]]),
      h("div", { class: "actions" },
        h("button", { type: "button", onclick: () => editor(detail, item, e.value, (v, exp) => api("PUT", botPath(`/kvs/${enc(item)}${exp}`), v)) }, "Edit"),
        h("button", { type: "button", class: "danger", onclick: () => remove(`key ${item}`, botPath(`/kvs/${enc(item)}`)) }, "Delete")));
    return;
  }
  const title = S.scope === "users" ? `User ${item}` : S.scope === "conversations" ? `Conversation ${item}` : "Global variables";
  $("#mem-title").textContent = title;
  const data = await api("GET", scopePath(item));
  const base = scopePath(item);
  const rows = data.variables.map((v) => [h("td", { class: "mono" }, v.name), h("td", { class: "value" }, h("pre", {}, json(v.value))),
    v.version, ttlCell(v.expires_at),
    h("td", { class: "actions" },
      h("button", { type: "button", "aria-label": `Edit ${v.name}`, onclick: () => editor(detail, v.name, v.value, (val, exp) => api("PUT", `${base}/${enc(v.name)}${exp}`, val)) }, "Edit"),
      h("button", { type: "button", class: "danger", "aria-label": `Delete ${v.name}`, onclick: () => remove(`variable ${v.name}`, `${base}/${enc(v.name)}`) }, "Delete"))]);
  clear(detail, data.variables.length ? table(["name", "value", "version", "TTL", ""], rows) : h("p", { class: "muted" }, "No variables."),
    h("button", { type: "button", class: "secondary", onclick: () => editor(detail, "", null, null, base) }, "Add variable"));
}

function editor(container, name, value, save, base) {
  container.querySelector(".editor")?.remove();
  const nameInput = h("input", { id: "edit-name", value: name, spellcheck: "false", required: true, readonly: name ? true : null });
  const valueInput = h("textarea", { id: "edit-value", spellcheck: "false" });
  valueInput.value = value === null && !name ? '""' : json(value);
  const expiryInput = h("input", { id: "edit-expiry", placeholder: "never, or 30m, 7d, PT1H", spellcheck: "false" });
  const error = h("p", { class: "error", role: "alert" });
  const form = h("form", { class: "editor" },
    h("h3", {}, name ? `Edit ${name}` : "New variable"),
    h("label", { for: "edit-name" }, "Name"), h("div", {}, nameInput),
    h("label", { for: "edit-value" }, "Value (JSON)"), valueInput,
    h("label", { for: "edit-expiry" }, "Expiry"), h("div", { class: "row" }, expiryInput,
      h("button", { type: "submit" }, "Save"),
      h("button", { type: "button", class: "secondary", onclick: () => form.remove() }, "Cancel")),
    error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { JSON.parse(valueInput.value); } catch (e) { error.textContent = "The value is not valid JSON."; return; }
    const exp = expiryInput.value.trim() ? `?expiry=${enc(expiryInput.value.trim())}` : "";
    try {
      if (save) await save(valueInput.value, exp);
      else await api("PUT", `${base}/${enc(nameInput.value)}${exp}`, valueInput.value);
      flash(`Saved ${name || nameInput.value}.`);
      await openItem(S.selected);
    } catch (e) { error.textContent = e.message; }
  });
  container.append(form);
  (name ? valueInput : nameInput).focus();
}

async function remove(what, path) {
  if (!confirm(`Delete ${what}?`)) return;
  try { await api("DELETE", path); flash(`Deleted ${what}.`); } catch (e) { flash(e.message); }
  if (S.scope === "kvs") { await loadList(false); clear($("#mem-detail")); } else await openItem(S.selected);
}

// -- chat ----------------------------------------------------------------------------------------
async function snapshot(user, conversation) {
  const get = async (path) => {
    try { return Object.fromEntries((await api("GET", path)).variables.map((v) => [v.name, v.value])); } catch (e) { return {}; }
  };
  return {
    user: await get(botPath(`/users/${enc(user)}/variables`)),
    conversation: conversation ? await get(botPath(`/conversations/${enc(conversation)}/variables`)) : {},
    global: await get(botPath("/variables")),
  };
}

function diff(before, after) {
  const out = [];
  for (const scope of ["user", "conversation", "global"]) {
    const a = before[scope] || {}, b = after[scope] || {};
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const x = JSON.stringify(a[k]), y = JSON.stringify(b[k]);
      if (x !== y) out.push([scope, k, k in a ? x : "—", k in b ? y : "(deleted)"]);
    }
  }
  return out;
}

function newConversationId() {  // a fresh id starts a new conversation of this user
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

async function showChat() {
  $("#chat-conversation").textContent = S.conversation ? `conversation ${S.conversation}` : "";
  $("#chat-text").focus();
}

async function sendChat(text) {
  const user = $("#chat-user").value.trim();
  const log = $("#chat-log");
  log.append(h("li", { class: "user" }, text));
  const before = await snapshot(user, S.conversation);
  const body = { text };
  if (S.conversation) body.conversation_id = S.conversation;
  let data;
  try { data = await api("POST", botPath(`/converse/${enc(user)}`), body); } catch (e) {
    log.append(h("li", { class: "bot error" }, e.message)); return;
  }
  for (const r of data.responses) log.append(h("li", { class: "bot" }, r.text));
  log.scrollTop = log.scrollHeight;
  const changedConversation = S.conversation !== data.conversation_id;
  S.conversation = data.conversation_id;
  if (changedConversation) before.conversation = {};
  const after = await snapshot(user, S.conversation);
  $("#chat-conversation").textContent = `conversation ${S.conversation}`;
  const changes = diff(before, after);
  clear($("#chat-changes"), changes.length
    ? table(["scope", "variable", "before", "after"], changes.map(([s, k, x, y]) => [s, k, h("td", { class: "change-removed mono" }, x), h("td", { class: "change-added mono" }, y)]))
    : h("p", { class: "muted" }, "This turn changed no variable."));
}

// -- audit and users -------------------------------------------------------------------------------
async function showAudit() {
  const q = new URLSearchParams();
  for (const [id, key] of [["audit-user", "user"], ["audit-reason", "reason"], ["audit-scope", "scope"], ["audit-since", "since"]]) {
    const v = $("#" + id).value.trim();
    if (v) q.set(key, v);
  }
  q.set("limit", "500");
  const data = await api("GET", botPath(`/audit?${q}`));
  const rows = data.records.slice().reverse().map((r) => [when(r.time), r.reason, r.scope, r.owner_id || "—", r.key, r.policy || "—", r.count]);
  clear($("#audit-table"), rows.length ? table(["time", "reason", "scope", "owner", "key or variable", "policy", "count"], rows)
    : h("p", { class: "muted" }, "No records match."));
}

async function showUsers() { $("#users-id").focus(); }

async function userAction(action) {
  const user = $("#users-id").value.trim();
  const out = $("#users-result");
  if (!user) { $("#users-id").focus(); return; }
  const base = botPath(`/users/${enc(user)}`);
  try {
    if (action === "export") {
      const data = await api("GET", `${base}/export`);
      const blob = new Blob([json(data)], { type: "application/json" });
      const link = h("a", { href: URL.createObjectURL(blob), download: `${S.bot}-${user}-export.json` }, "Download again");
      clear(out, h("p", {}, `Exported ${Object.keys(data.user).length} variables, ${Object.keys(data.kvs).length} keys, ${data.conversations.length} conversations.`), link,
        h("pre", {}, json(data)));
      link.click();
    } else if (action === "dry") {
      const r = await api("POST", `${base}:forget?dry_run=true`);
      const confirmButton = h("button", { type: "button", class: "danger", onclick: () => userAction("forget") }, `Forget ${user} now`);
      clear(out, h("h2", {}, "Dry run: this would be erased"), receipt(r), confirmButton);
      confirmButton.focus();
    } else if (action === "forget") {
      const r = await api("POST", `${base}:forget`);
      clear(out, h("h2", {}, "Forgotten: receipt"), receipt(r), h("pre", {}, json(r)));
      if (S.selected === user) S.selected = null;
    } else if (action === "hold") {
      await api("POST", `${base}:hold`);
      clear(out, h("p", {}, `${user} is under legal hold: nothing of theirs is deleted until released.`));
    } else if (action === "release") {
      await api("POST", `${base}:release`);
      clear(out, h("p", {}, `${user} is released from legal hold.`));
    }
  } catch (e) { clear(out, h("p", { class: "error", role: "alert" }, e.message)); }
}

function receipt(r) {
  return table(["scope", "count"], Object.entries(r.counts).map(([k, v]) => [k, v]));
}

// -- wiring ------------------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      S.session = await api("POST", "/ui/login", { token: $("#login-token").value.trim() });
      $("#login-token").value = "";
      await signedIn();
    } catch (e) { $("#login-error").textContent = e.message; }
  });
  $("#logout").addEventListener("click", async () => {
    try { await api("POST", "/ui/logout"); } catch (e) { /* signed out anyway */ }
    showLogin("Signed out.");
  });
  $("#bot-select").addEventListener("change", (ev) => { S.bot = ev.target.value; S.conversation = null; S.selected = null; route(); });
  for (const b of document.querySelectorAll(".tabs button")) {
    b.addEventListener("click", () => { S.scope = b.dataset.scope; S.selected = null; $("#mem-title").textContent = "Pick an item"; clear($("#mem-detail")); showMemory().catch((e) => flash(e.message)); });
  }
  $("#mem-search").addEventListener("submit", (ev) => { ev.preventDefault(); loadList(false).catch((e) => flash(e.message)); });
  $("#mem-more").addEventListener("click", () => loadList(true).catch((e) => flash(e.message)));
  $("#chat-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = $("#chat-text");
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    sendChat(text).catch((e) => flash(e.message));
  });
  $("#chat-new").addEventListener("click", () => { S.conversation = newConversationId(); clear($("#chat-log")); clear($("#chat-changes")); $("#chat-conversation").textContent = ""; $("#chat-text").focus(); });
  $("#audit-form").addEventListener("submit", (ev) => { ev.preventDefault(); showAudit().catch((e) => flash(e.message)); });
  $("#users-form").addEventListener("submit", (ev) => { ev.preventDefault(); userAction("export"); });
  for (const b of document.querySelectorAll("#users-form button[type=button]")) b.addEventListener("click", () => userAction(b.dataset.action));
  window.addEventListener("hashchange", route);
  S.timer = setInterval(tickTtls, 1000);
  start().catch((e) => flash(e.message));
});
