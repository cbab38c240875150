// BorgUSB conduit pages. This script is the only thing that talks to the conduit, and every request
// it makes carries the conduit's secret in the X-Borg-Conduit header (issue 15 item 9).
// The secret arrives once, in the fragment of the link the conduit printed (…/#k=SECRET): it is kept
// for this tab only (sessionStorage) and removed from the address bar and the history at once. No
// served page holds it, and a page of another site cannot send the header. A browser that goes to
// any address of the conduit gets the same static shell; this script then fetches the page with the
// secret and shows it in #app. Pages are the conduit's own autoescaped templates, parsed by
// DOMParser (an inert document: nothing in it runs or loads) and moved into #app.
// Text that comes from the network (error bodies, file names, ids, counts) reaches the page only as
// text: elements are built with createElement and filled with append/textContent, never innerHTML
// (issue 15 item 3).
"use strict";
const Borg = (() => {
  const HEADER = "X-Borg-Conduit", BACKGROUND = "X-Borg-Background", STORE = "borg-conduit";

  // The secret from the launcher's link (#k=…), or the one this tab already holds.
  function takeSecret() {
    const given = new URLSearchParams(location.hash.slice(1)).get("k");
    if (given) history.replaceState(null, "", location.pathname + location.search);
    try {
      if (given) sessionStorage.setItem(STORE, given);
      return sessionStorage.getItem(STORE) || given;
    } catch { return given; } // storage turned off: the secret lasts for this page load only
  }
  const secret = takeSecret();

  // An HTML element with attributes and children; strings (and numbers) become text nodes.
  const h = (name, attrs = {}, ...children) => {
    const e = document.createElement(name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    e.append(...children.map((c) => (c instanceof Node ? c : String(c ?? ""))));
    return e;
  };
  const main = () => document.querySelector("#app main");

  let timers = [];
  // timed refreshes call fn(true): their requests say they are background ones, which the conduit does
  // not count as the person's activity (they never hold off the idle lock)
  const every = (fn, ms) => timers.push(setInterval(() => fn(true), ms));
  const stopTimers = () => { timers.forEach(clearInterval); timers = []; };

  const NEED_LINK = "Open the link the conduit printed when it started (http://127.0.0.1:PORT/#k=…); "
    + "this tab does not hold its secret. If the conduit was restarted, it printed a new link.";
  function showNeedLink() {
    stopTimers();
    document.title = "BorgUSB";
    main()?.replaceChildren(h("section", { class: "card narrow", id: "need-link" },
      h("h1", {}, "Open the link the conduit printed"), h("p", {}, NEED_LINK)));
  }
  const showProblem = (text) => main()?.replaceChildren(h("p", { class: "message", role: "alert" }, text));

  // Every request to the conduit: with the secret; a 401 means this tab does not hold the right one.
  async function request(path, { background = false, ...opts } = {}) {
    if (!secret) { showNeedLink(); throw new Error(NEED_LINK); }
    const headers = { ...(opts.headers || {}), [HEADER]: secret, ...(background ? { [BACKGROUND]: "1" } : {}) };
    const r = await fetch(path, { ...opts, cache: "no-store", headers });
    if (r.status === 401) { showNeedLink(); throw new Error(NEED_LINK); }
    return r;
  }
  // The JSON API: every call is a POST (a GET never makes the conduit reach the network).
  const api = async (path, opts = {}) => {
    const r = await request(path, { method: "POST", ...opts });
    const body = await r.json().catch(() => ({ error: "the conduit gave no answer" }));
    if (!r.ok) throw Object.assign(new Error(body.error || r.statusText), { reason: body.reason, status: r.status, body });
    return body;
  };

  // Show the page at `path`, or the conduit's answer to a form, in #app. `how` says what the
  // address bar does: "push" (a link), "replace" (the first load), "stay" (back/forward),
  // "form" (push only where the conduit redirected: a form's own address may take only POST).
  async function show(path, opts = {}, how = "push") {
    let r, text;
    try {
      r = await request(path, opts);
      text = await r.text();
    } catch (e) {
      if (e.message !== NEED_LINK) showProblem("The conduit did not answer: is it still running?");
      return;
    }
    const page = new DOMParser().parseFromString(text, "text/html");
    const app = page.getElementById("app");
    if (!app) { showProblem(`The conduit answered ${r.status} ${r.statusText}.`); return; }
    stopTimers();
    document.title = page.title || "BorgUSB";
    document.getElementById("app").replaceChildren(...app.childNodes);
    const at = new URL(r.url), here = at.pathname + at.search;
    if (how === "form") how = r.redirected ? "push" : "stay";
    if (how === "replace" || (how === "push" && here === location.pathname + location.search)) {
      history.replaceState(null, "", here);
    } else if (how === "push") {
      history.pushState(null, "", here);
    }
    if (how !== "stay") window.scrollTo(0, 0);  // a new page opens at its top, as a browser's own navigation does
    document.querySelector("#app [autofocus]")?.focus();
    start();
  }

  const svgNS = "http://www.w3.org/2000/svg";
  const el = (name, attrs, parent) => {
    const e = document.createElementNS(svgNS, name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    if (parent) parent.appendChild(e);
    return e;
  };
  const parentOf = (p, k) => (p <= 1 ? null : Math.floor((p - 2) / k) + 1);

  // Draw the PeerTree: positions level by level, root on top, this node highlighted.
  function drawTree(box, data) {
    const members = (data.members || []).slice().sort((a, b) => a.pos - b.pos);
    if (!members.length) { box.replaceChildren(h("p", { class: "muted" }, data.error || "No node of this cell answered yet.")); return; }
    const k = data.k || 1, levels = [];
    const depth = new Map();
    for (const m of members) {
      const d = m.pos === 1 ? 0 : depth.get(parentOf(m.pos, k)) + 1;
      depth.set(m.pos, d);
      (levels[d] = levels[d] || []).push(m);
    }
    const W = 1000, rowH = 110, H = levels.length * rowH + 20, where = new Map();
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `PeerTree of ${members.length} nodes` });
    levels.forEach((row, d) => row.forEach((m, i) => where.set(m.pos, { x: (W * (i + 0.5)) / row.length, y: 30 + d * rowH })));
    const r = members.length > 120 ? 5 : members.length > 40 ? 9 : 14;
    for (const m of members) {
      const p = parentOf(m.pos, k);
      if (p && where.has(p)) { const a = where.get(p), b = where.get(m.pos); el("line", { x1: a.x, y1: a.y, x2: b.x, y2: b.y }, svg); }
    }
    for (const m of members) {
      const at = where.get(m.pos);
      const cls = [m.pos === 1 ? "root" : "", m.pubkey === data.me ? "me" : ""].join(" ").trim();
      const g = el("g", { class: "node", "data-pos": m.pos }, svg);
      const c = el("circle", { cx: at.x, cy: at.y, r, class: cls }, g);
      el("title", {}, c).textContent = `position ${m.pos} · ${m.ip} · ${m.pubkey.slice(0, 16)}…`;
      if (r >= 9) el("text", { x: at.x, y: at.y + 3.5 }, g).textContent = m.pos;
    }
    box.replaceChildren(svg);
    box.dataset.count = members.length;
  }

  async function refreshTree(background = false) {
    const box = document.getElementById("tree");
    if (!box) return;
    try {
      const data = await api(`/api/tree?cell=${encodeURIComponent(box.dataset.cell)}`, { background });
      drawTree(box, data);
      document.getElementById("node-status").textContent = data.status || "not reachable";
      document.getElementById("node-size").textContent = `${(data.members || []).length} nodes`;
      document.getElementById("node-served").textContent = data.served_by || "—";
      document.getElementById("served").textContent = data.served_by ? `Last answer from ${data.served_by}.` : "";
    } catch (e) { box.replaceChildren(h("p", { class: "message" }, e.message)); }
  }

  async function refreshCells(background = false) {
    const body = document.querySelector("#cells tbody");
    if (!body) return;
    try {
      const { cells } = await api("/api/cells", { background });
      body.replaceChildren(...cells.map((c) => h("tr", {},
        h("td", {}, c.name), h("td", {}, c.summary), h("td", {}, c.size || "—"),
        h("td", { class: "mono" }, c.endpoints && c.endpoints.length
          ? c.endpoints.join(", ") + (c.more ? `, … (${c.more} more)` : "") : "not running"))));
    } catch (e) { /* shown by the tree box */ }
  }

  // An upload's request with the secret (XMLHttpRequest: fetch reports no upload progress); null, and
  // the page says to open the link, when this tab does not hold the secret.
  const openXhr = (method, path) => {
    if (!secret) { showNeedLink(); return null; }
    const xhr = new XMLHttpRequest();
    xhr.open(method, path);
    xhr.setRequestHeader(HEADER, secret);
    xhr.addEventListener("load", () => { if (xhr.status === 401) showNeedLink(); });
    return xhr;
  };

  // A cell's page may bring its own script (data-script="/static/cells/NAME", `add_script`): loaded
  // once, it registers its page's start with Borg.onPage(fn), which runs after every page shown.
  const starters = [], loaded = new Set();
  const onPage = (fn) => { starters.push(fn); fn(); };
  function loadScripts() {
    for (const e of document.querySelectorAll("#app [data-script]")) {
      const src = e.dataset.script;
      if (!src.startsWith("/static/cells/") || loaded.has(src)) continue;
      loaded.add(src);
      document.head.append(h("script", { src }));
    }
  }

  // A form marked data-inplace (the words check, restore) is answered with JSON: where to go next, or
  // what is wrong. The page stays as it is: what was typed right is kept, the wrong fields are emptied
  // or their bad part selected (with the suggested words as buttons), and nothing secret is ever
  // rendered back. The history gets only the next page's GET, never a POST.
  async function submitInPlace(form) {
    const note = form.querySelector("[data-form-message]"), fixes = form.querySelector("[data-fixes]");
    const buttons = [...form.querySelectorAll("button")];
    buttons.forEach((b) => { b.disabled = true; });
    let body;
    try {
      const to = new URL(form.action, location.href);
      const r = await request(to.pathname, { method: "POST", body: new URLSearchParams(new FormData(form)) });
      body = await r.json().catch(() => ({ error: `The conduit answered ${r.status} ${r.statusText}.` }));
    } catch (e) {
      if (e.message === NEED_LINK) return;
      body = { error: "The conduit did not answer: is it still running?" };
    } finally { buttons.forEach((b) => { b.disabled = false; }); }
    if (body.go) { show(body.go); return; }
    form.querySelectorAll("[aria-invalid]").forEach((f) => f.removeAttribute("aria-invalid"));
    fixes?.replaceChildren();
    for (const name of body.clear || []) {
      const f = form.elements.namedItem(name);
      if (f) { f.value = ""; f.setAttribute("aria-invalid", "true"); }
    }
    if (note) { note.textContent = body.error || "That did not work."; note.hidden = false; }
    const mark = body.mark, field = mark && form.elements.namedItem(mark.field);
    if (field) {
      field.setAttribute("aria-invalid", "true");
      field.focus();
      field.setSelectionRange(mark.start, mark.end);
      for (const word of mark.suggestions || []) {
        const use = h("button", { type: "button", class: "fix" }, `Use “${word}”`);
        use.onclick = () => { field.setRangeText(word, mark.start, mark.end, "select"); field.focus(); fixes.replaceChildren(); };
        fixes?.append(use);
      }
    } else form.querySelector("[aria-invalid]")?.focus();
  }

  // Each page's behaviour starts from the elements it has (no inline scripts: the CSP forbids them).
  function start() {
    loadScripts();
    starters.forEach((fn) => fn());
    if (document.getElementById("tree")) { refreshTree(); refreshCells(); every(refreshTree, 2000); every(refreshCells, 10000); }
    if (document.getElementById("stick-saved")) every(refreshStick, 1500);
  }

  // On a booted stick: "saving" turns into "saved" (or why not) without a reload.
  async function refreshStick() {
    const line = document.getElementById("stick-saved");
    if (!line || !/^stick-(saving|unknown)$/.test(line.className)) return;  // only a write under way changes
    const r = await request("/api/session", { background: true }).catch(() => null);
    const body = r && r.ok ? await r.json().catch(() => null) : null;
    if (!body || !body.stick) return;
    line.className = `stick-${body.stick.state}`;
    line.textContent = body.stick.words;
  }

  // Links and forms of the conduit's pages go through `show`, so they carry the secret too.
  document.addEventListener("click", (e) => {
    const a = e.target instanceof Element ? e.target.closest("a[href]") : null;
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    if (a.hasAttribute("data-back")) { e.preventDefault(); history.back(); return; }
    if (a.hasAttribute("download") || a.target || a.origin !== location.origin || a.getAttribute("href").startsWith("#")) return;
    e.preventDefault();
    show(a.pathname + a.search);
  });
  document.addEventListener("submit", (e) => {
    if (e.defaultPrevented || !(e.target instanceof HTMLFormElement)) return;
    e.preventDefault();
    if (e.target.hasAttribute("data-inplace")) { submitInPlace(e.target); return; }
    const to = new URL(e.target.action, location.href);
    show(to.pathname + to.search, { method: "POST", body: new URLSearchParams(new FormData(e.target)) }, "form");
  });
  window.addEventListener("popstate", () => show(location.pathname + location.search, {}, "stay"));

  if (secret) show(location.pathname + location.search, {}, "replace");
  else showNeedLink();
  return { api, request, openXhr, show, h, every, onPage };
})();
