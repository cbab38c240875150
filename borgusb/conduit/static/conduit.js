// BorgUSB conduit pages: talk only to this conduit (same origin), with the per-run token.
// Text that comes from the network (error bodies, file names, ids, counts) reaches the page
// only as text: elements are built with createElement and filled with append/textContent,
// never innerHTML (issue 15 item 3).
"use strict";
const Borg = (() => {
  const token = document.querySelector('meta[name="borg-token"]').content;
  const api = async (path, opts = {}) => {
    const r = await fetch(path, { ...opts, headers: { "X-Borg-Token": token, ...(opts.headers || {}) } });
    const body = await r.json().catch(() => ({ error: "the conduit gave no answer" }));
    if (!r.ok) throw new Error(body.error || r.statusText);
    return body;
  };
  // An HTML element with attributes and children; strings (and numbers) become text nodes.
  const h = (name, attrs = {}, ...children) => {
    const e = document.createElement(name);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
    e.append(...children.map((c) => (c instanceof Node ? c : String(c ?? ""))));
    return e;
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

  async function refreshTree() {
    const box = document.getElementById("tree");
    try {
      const data = await api(`/api/tree?cell=${encodeURIComponent(box.dataset.cell)}`);
      drawTree(box, data);
      document.getElementById("node-status").textContent = data.status || "not reachable";
      document.getElementById("node-size").textContent = `${(data.members || []).length} nodes`;
      document.getElementById("node-served").textContent = data.served_by || "—";
      document.getElementById("served").textContent = data.served_by ? `Last answer from ${data.served_by}.` : "";
    } catch (e) { box.replaceChildren(h("p", { class: "message" }, e.message)); }
  }

  async function refreshCells() {
    try {
      const { cells } = await api("/api/cells");
      const body = document.querySelector("#cells tbody");
      body.replaceChildren(...cells.map((c) => h("tr", {},
        h("td", {}, c.name), h("td", {}, c.summary), h("td", {}, c.size || "—"),
        h("td", { class: "mono" }, c.endpoints && c.endpoints.length ? c.endpoints.join(", ") : "not running"))));
    } catch (e) { /* shown by the tree box */ }
  }

  const size = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);

  async function refreshFiles() {
    const body = document.querySelector("#files tbody");
    const detail = (text) => { document.getElementById("file-detail").textContent = text; };
    try {
      const { files } = await api("/api/files");
      if (!files.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No files yet."))); return; }
      body.replaceChildren(...files.map((f) => {
        const id = String(f.id), path = encodeURIComponent(id);
        const stat = h("a", { href: "#", class: "stat" }, `${id.slice(0, 12)}…`);
        const remove = h("button", { class: "delete" }, "Delete");
        const tr = h("tr", {},
          h("td", { class: "name" }, f.name || "(unnamed)"),
          h("td", {}, size(Number(f.size))),
          h("td", {}, new Date(Number(f.t)).toLocaleString()),
          h("td", { class: "copies" }, f.copies),
          h("td", { class: "mono" }, stat),
          h("td", {}, h("a", { class: "button download", href: `/files/${path}/download` }, "Download"), " ", remove));
        tr.dataset.id = id;
        stat.onclick = async (e) => {
          e.preventDefault();
          try {
            const s = await api(`/api/files/${path}`);
            detail(`${id}: ${s.copies_min} of ${s.r} copies; holders ${(s.holders || []).join(", ")} (asked ${s.served_by})`);
          } catch (err) { detail(err.message); }
        };
        remove.onclick = async () => {
          if (!confirm(`Delete ${f.name || id}? Only your key can do this, and it cannot be undone.`)) return;
          try {
            await api(`/api/files/${path}/delete`, { method: "POST" });
            tr.remove();
          } catch (err) { detail(err.message); }
        };
        return tr;
      }));
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: "6", class: "message" }, e.message))); }
  }

  function upload(ev) {
    ev.preventDefault();
    const input = document.getElementById("file-input"), bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status");
    if (!input.files.length) return;
    const form = new FormData();
    form.append("file", input.files[0]);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/files");
    xhr.setRequestHeader("X-Borg-Token", token);
    bar.hidden = false; bar.value = 0;
    status.textContent = "Sending to the conduit…";
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.upload.onload = () => { status.textContent = "Storing shards in the network…"; };
    xhr.onload = () => {
      let body;
      try { body = JSON.parse(xhr.responseText || "{}"); } catch { body = { error: "the conduit gave no answer" }; }
      if (xhr.status >= 400) { status.textContent = body.error || "Upload failed."; status.className = "message"; return; }
      bar.value = 100;
      status.className = "muted";
      status.textContent = `Stored ${body.name} with ${body.copies} copies (through ${body.served_by}).`;
      document.getElementById("upload-form").reset();
      refreshFiles();
    };
    xhr.onerror = () => { status.textContent = "The conduit did not answer."; status.className = "message"; };
    xhr.send(form);
  }

  return {
    api, token,
    files() { document.getElementById("upload-form").addEventListener("submit", upload); refreshFiles(); },
    home() { refreshTree(); refreshCells(); setInterval(refreshTree, 2000); setInterval(refreshCells, 10000); },
  };
})();

// Each page's behaviour starts from the elements it has (no inline scripts: the CSP forbids them).
document.addEventListener("DOMContentLoaded", () => {
  if (document.getElementById("tree")) Borg.home();
  if (document.getElementById("files")) Borg.files();
});
