// BorgUSB conduit pages: talk only to this conduit (same origin), with the per-run token.
"use strict";
const Borg = (() => {
  const token = document.querySelector('meta[name="borg-token"]').content;
  const api = async (path, opts = {}) => {
    const r = await fetch(path, { ...opts, headers: { "X-Borg-Token": token, ...(opts.headers || {}) } });
    const body = await r.json().catch(() => ({ error: "the conduit gave no answer" }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  };
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
    if (!members.length) { box.innerHTML = `<p class="muted">${data.error || "No node of this cell answered yet."}</p>`; return; }
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

  async function refreshTree() {
    const box = document.getElementById("tree");
    try {
      const data = await api(`/api/tree?cell=${encodeURIComponent(box.dataset.cell)}`);
      drawTree(box, data);
      document.getElementById("node-status").textContent = data.status || "not reachable";
      document.getElementById("node-size").textContent = `${(data.members || []).length} nodes`;
      document.getElementById("node-served").textContent = data.served_by || "—";
      document.getElementById("served").textContent = data.served_by ? `Last answer from ${data.served_by}.` : "";
    } catch (e) { box.innerHTML = `<p class="message">${e.message}</p>`; }
  }

  async function refreshCells() {
    try {
      const { cells } = await api("/api/cells");
      const body = document.querySelector("#cells tbody");
      body.replaceChildren(...cells.map((c) => {
        const tr = document.createElement("tr");
        tr.innerHTML = `<td>${c.name}</td><td>${c.summary}</td><td>${c.size || "—"}</td><td class="mono"></td>`;
        tr.lastChild.textContent = c.endpoints.length ? c.endpoints.join(", ") : "not running";
        return tr;
      }));
    } catch (e) { /* shown by the tree box */ }
  }

  return {
    api, token,
    home() { refreshTree(); refreshCells(); setInterval(refreshTree, 2000); setInterval(refreshCells, 10000); },
  };
})();

// Each page's behaviour starts from the elements it has (no inline scripts: the CSP forbids them).
document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("tree")) Borg.home();
});
