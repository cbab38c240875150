// The Storage page (shardTreeCell): upload, list, copies and holders, download, delete.
// Loaded once by conduit.js (the page's data-script). Everything from the network reaches the page as
// text (Borg.h and textContent, never innerHTML). While a transfer or a delete runs its button is
// disabled; when no shard node answers, the list stays, marked "not refreshed", with the next step.
"use strict";
(() => {
  const { api, request, openXhr, h, onPage } = Borg;

  const size = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
  const detail = (text) => { document.getElementById("file-detail").textContent = text; };

  // A download is a POST with the secret; the bytes arrive here and are saved from a blob.
  async function download(path, name) {
    detail(`Fetching ${name} from the network…`);
    try {
      const r = await request(`/api/storage/${path}/download`, { method: "POST" });
      if (!r.ok) {
        const body = await r.json().catch(() => ({}));
        throw new Error(body.error || r.statusText);
      }
      const url = URL.createObjectURL(await r.blob());
      const a = h("a", { href: url, download: name, hidden: "" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      detail(`Saved ${name} (from ${r.headers.get("X-Served-By") || "the network"}).`);
    } catch (e) { detail(e.message); }
  }

  const plural = (n, one, many) => `${n} ${n === 1 ? one : many}`;
  // Copies and holders are said the same way everywhere, from one stat: copies are per shard (the
  // least kept shard's count against R); holders are the nodes keeping at least one shard, which for
  // a file of several shards can be more than R without being more copies (a node that answered
  // with the manifest alone is not one).
  const shardNodes = (s) => {
    const all = s.holders || [], per = s.shard_holders;
    return per ? [...new Set(per.flat())].sort((a, b) => a - b).map((j) => all[j]) : all;
  };
  function showStat(tr, s) {
    const holders = shardNodes(s);
    tr.querySelector(".copies").textContent = `${s.copies_min} of ${s.r}`;
    const cell = tr.querySelector(".holders");
    cell.textContent = plural(holders.length, "node", "nodes");
    cell.title = holders.join(", ");
  }
  function statLines(id, s, me) {
    const holders = shardNodes(s), all = s.holders || [];
    const whose = s.owner === me ? "you" : `another key, ${String(s.owner).slice(0, 16)}…`;
    const lines = [`${id}: ${plural(s.shards, "shard", "shards")}, each kept in at least ${s.copies_min} of ${s.r} copies `
      + `on ${plural(holders.length, "node", "nodes")} in all; owner: ${whose} (asked ${s.served_by})`];
    (s.shard_holders || []).forEach((idx, i) => lines.push(
      `shard ${i + 1}: ${plural(idx.length, "copy", "copies")} on ${idx.map((j) => all[j]).join(", ")}`));
    return lines;
  }

  async function refreshFiles() {
    const table = document.getElementById("files"), body = table.querySelector("tbody");
    const note = document.getElementById("files-note"), again = document.getElementById("files-refresh");
    again.disabled = true;
    let doc, stale = null;
    try {
      doc = await api("/api/storage/list");
    } catch (e) {
      stale = e;
      doc = e.body && Array.isArray(e.body.files) ? e.body : { files: [] };
    } finally { again.disabled = false; }
    if (stale) {
      // the network is away: the list stays (the last one this page or the conduit had), marked as old
      const at = doc.at ? ` The list below is from ${new Date(Number(doc.at)).toLocaleString()}.` : "";
      note.textContent = `Not refreshed. ${stale.message}${at}`;
      note.className = "message";
      table.dataset.state = "stale";
      if (body.querySelector("tr[data-id]") || !doc.files.length) {
        if (!body.querySelector("tr[data-id]")) body.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No list yet.")));
        return;
      }
    } else {
      note.textContent = `Refreshed ${new Date().toLocaleTimeString()} from ${doc.nodes_answered} of ${doc.nodes_asked} shard nodes.`;
      note.className = "muted";
      table.dataset.state = "fresh";
    }
    const files = doc.files;
    if (!files.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "7", class: "muted" }, "No files yet."))); return; }
    const me = table.dataset.me;
    body.replaceChildren(...files.map((f, n) => {
      const id = String(f.id), path = encodeURIComponent(id), name = f.name ? String(f.name) : `${id.slice(0, 16)}.bin`;
      const stat = h("a", { href: "#", class: "stat" }, `${id.slice(0, 12)}…`);
      const get = h("button", { class: "download" }, "Download");
      const remove = h("button", { class: "delete" }, "Delete");
      const tr = h("tr", {},
        h("td", { class: "name" }, f.name || "(unnamed)"),
        h("td", {}, size(Number(f.size))),
        h("td", {}, new Date(Number(f.t)).toLocaleString()),
        h("td", { class: "copies", title: "copies of each shard (the least kept one) out of R" }, "…"),
        h("td", { class: "holders" }, "…"),
        h("td", { class: "mono" }, stat),
        h("td", {}, get, " ", remove));
      tr.dataset.id = id;
      const ask = async () => {
        const s = await api(`/api/storage/${path}/stat`);
        showStat(tr, s);
        return s;
      };
      if (!stale && n < 10) ask().catch(() => {});  // the newest files' copies and holders, at once
      stat.onclick = async (e) => {
        e.preventDefault();
        try {
          const s = await ask();
          document.getElementById("file-detail").replaceChildren(...statLines(id, s, me).map((l) => h("div", {}, l)));
        } catch (err) { detail(err.message); }
      };
      get.onclick = () => download(path, name);
      remove.onclick = async () => {
        remove.disabled = true;  // before the dialog: a double click asks once and deletes once
        if (!confirm(`Delete ${f.name || id}? Only your key can do this, and it cannot be undone.`)) { remove.disabled = false; return; }
        detail(`Deleting ${name}…`);
        try {
          await api(`/api/storage/${path}/delete`);
          tr.remove();
          detail(`Deleted ${name}.`);
        } catch (err) { detail(err.message); remove.disabled = false; }
      };
      return tr;
    }));
  }

  function upload(ev) {
    ev.preventDefault();
    const input = document.getElementById("file-input"), bar = document.getElementById("upload-progress");
    const status = document.getElementById("upload-status"), button = document.getElementById("upload");
    if (!input.files.length || button.disabled) return;
    const xhr = openXhr("POST", "/api/storage");
    if (!xhr) return;
    const form = new FormData();
    form.append("file", input.files[0]);
    button.disabled = true;  // one upload at a time: a double click sends it once
    bar.hidden = false; bar.value = 0;
    status.className = "muted";
    status.textContent = "Sending to the conduit…";
    const failed = (text) => {
      button.disabled = false;
      bar.hidden = true; bar.value = 0;  // no full bar beside an error
      status.textContent = text;
      status.className = "message";
    };
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
    xhr.upload.onload = () => { status.textContent = "Storing shards in the network…"; };
    xhr.onload = () => {
      if (xhr.status === 401) return;  // the page now says to open the link
      let body;
      try { body = JSON.parse(xhr.responseText || "{}"); } catch { body = { error: "the conduit gave no answer" }; }
      if (xhr.status >= 400) { failed(body.error || "Upload failed."); return; }
      button.disabled = false;
      bar.value = 100;
      status.className = "muted";
      status.textContent = `Stored ${body.name}: each shard in ${body.copies} of ${body.r} copies (through ${body.served_by}).`;
      document.getElementById("upload-form").reset();
      refreshFiles();
      document.dispatchEvent(new Event("borg-credit-refresh"));  // the card below: what a holder keeps now
    };
    xhr.onerror = () => failed("The conduit did not answer.");
    xhr.send(form);
  }

  onPage(() => {
    const table = document.getElementById("files");
    if (!table || table.dataset.started) return;
    table.dataset.started = "1";
    document.getElementById("upload-form").addEventListener("submit", upload);
    document.getElementById("files-refresh").addEventListener("click", () => refreshFiles());
    refreshFiles();
  });
})();
