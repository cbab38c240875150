// The Files page (ftreeFileMgrCell): a person's folders. Breadcrumbs, new folder, upload and download
// with progress, rename/move, delete, versions with restore, share and revoke, what others shared.
// Loaded once by conduit.js (the page's data-script). Every name, key and message from the network goes
// in as text (Borg.h and textContent, never innerHTML). Buttons stay disabled while their work runs;
// when no node answers, the listing stays on the page, marked "not refreshed", with the next step.
"use strict";
(() => {
  const { api, request, openXhr, h, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc) => api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" } });
  const say = (box, text, cls = "muted", reason = "") => { box.textContent = text; box.className = cls; box.dataset.reason = reason; };
  const size = (n) => (n < 1024 ? `${n} B` : n < 1 << 20 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / (1 << 20)).toFixed(1)} MiB`);
  const join = (dir, name) => (dir === "/" ? `/${name}` : `${dir}/${name}`);
  let cwd = "/", shown = null, shared = null, sharedPath = "/";

  // Work that must not run twice at once: its button is disabled until it ends, whatever happens.
  async function busy(button, work) {
    if (button.disabled) return;
    button.disabled = true;
    try { await work(); } finally { button.disabled = false; }
  }

  function crumbs() {
    const parts = cwd.split("/").filter(Boolean), links = [];
    const link = (label, to) => {
      const a = h("a", { href: "#", class: "crumb", "data-path": to }, label);
      a.addEventListener("click", (ev) => { ev.preventDefault(); open(to); });
      return a;
    };
    links.push(link("Your files", "/"));
    parts.forEach((p, i) => links.push(" / ", link(p, `/${parts.slice(0, i + 1).join("/")}`)));
    $("crumbs").replaceChildren(...links);
  }

  function open(path) {
    cwd = path;
    $("versions-card").hidden = true;
    $("share-path").value = cwd;
    crumbs();
    refresh();
  }

  function row(e) {
    const path = join(cwd, e.name), actions = [];
    const name = e.kind === "folder" ? h("a", { href: "#", class: "folder" }, `${e.name}/`) : h("span", {}, e.name);
    if (e.kind === "folder") name.addEventListener("click", (ev) => { ev.preventDefault(); open(path); });
    if (e.kind === "file") {
      const get = h("button", { type: "button", class: "download" }, "Download");
      get.addEventListener("click", () => busy(get, () => download({ path }, e.name, e.size)));
      actions.push(get);
    }
    const mv = h("button", { type: "button", class: "move" }, "Rename/move");
    mv.addEventListener("click", () => busy(mv, async () => {
      const dst = prompt(`New name, or a path to move ${e.name} to:`, path);
      if (!dst || dst === path) return;
      await act(`Moving ${e.name}…`, "/api/files/mv", { src: path, dst: dst.includes("/") ? dst : join(cwd, dst) }, `Moved to ${dst}.`);
    }));
    const rm = h("button", { type: "button", class: "delete" }, "Delete");
    rm.addEventListener("click", () => busy(rm, async () => {
      if (!confirm(`Delete ${path}? Earlier versions of this folder keep it (Versions, Restore).`)) return;
      await act(`Deleting ${e.name}…`, "/api/files/rm", { path }, `Deleted ${e.name}.`);
    }));
    const share = h("button", { type: "button", class: "share" }, "Share");
    share.addEventListener("click", () => { $("share-path").value = path; $("share-to").focus(); });
    actions.push(mv, rm, share);
    const tr = h("tr", { "data-name": e.name, "data-kind": e.kind },
      h("td", { class: "name" }, name),
      h("td", {}, e.kind === "folder" ? "—" : size(Number(e.size))),
      h("td", {}, new Date(Number(e.mtime)).toLocaleString()),
      h("td", { class: "vis", title: e.private ? "encrypted here" : `object ${e.obj}` }, e.private ? "private" : "public"),
      h("td", { class: "actions" }, ...actions.flatMap((b) => [b, " "])));
    return tr;
  }

  function show(doc) {
    shown = doc;
    const body = $("listing").querySelector("tbody");
    body.replaceChildren(...(doc.entries.length ? doc.entries.map(row)
      : [h("tr", {}, h("td", { colspan: "5", class: "muted" }, "This folder is empty."))]));
    // a public folder holds only public entries: the private choice is not offered there
    for (const box of ["put-vis", "mkdir-vis"]) {
      const [priv, pub] = $(box).querySelectorAll("input");
      priv.disabled = Boolean(doc.public);
      if (doc.public) pub.checked = true;
    }
    const readers = $("readers");
    if (!doc.readers || !doc.readers.length) { readers.replaceChildren("nobody"); return; }
    readers.replaceChildren(...doc.readers.map((k) => {
      const revoke = h("button", { type: "button", class: "revoke", "data-key": k }, "Revoke");
      revoke.addEventListener("click", () => busy(revoke, () => act(`Revoking ${k.slice(0, 12)}…`, "/api/files/share",
        { path: cwd, to: k, revoke: "1" }, `Revoked: ${k.slice(0, 12)}… is not among the readers of the next versions.`)));
      return h("span", { class: "reader mono" }, `${k.slice(0, 16)}… `, revoke, " ");
    }));
  }

  async function refresh(background = false) {
    const table = $("listing"), note = $("folder-note"), asked = cwd;
    if (!table) return;
    $("folder-refresh").disabled = true;
    try {
      const doc = await api("/api/files/ls", { background, body: JSON.stringify({ path: asked }), headers: { "Content-Type": "application/json" } });
      if (asked !== cwd) return;
      show(doc);
      table.dataset.state = "fresh";
      say(note, `Refreshed ${new Date().toLocaleTimeString()} (version ${doc.version}, through ${doc.node}).`);
    } catch (e) {
      if (asked !== cwd) return;
      if (e.status !== 503) { say(note, e.message, "message", e.reason || ""); table.dataset.state = "refused"; return; }
      // the network is away: the list stays (this page's, or the one the conduit kept), marked as old
      const last = e.body && e.body.last;
      if (!(shown && shown.path === asked) && last) show(last);
      const when = shown && shown.at ? ` The list below is from ${new Date(Number(shown.at)).toLocaleString()}.` : "";
      say(note, `Not refreshed. ${e.message}${when}`, "message", e.reason || "");
      table.dataset.state = "stale";
    } finally { $("folder-refresh").disabled = false; }
  }

  // One change to the tree: said while it runs, then the folder listed again.
  async function act(doing, path, doc, done) {
    const status = $("action-status");
    say(status, doing);
    try {
      const r = await post(path, doc);
      say(status, done, "ok");
      await refresh();
      return r;
    } catch (e) { say(status, e.message, "message", e.reason || ""); return null; }
  }

  // A download is a POST with the secret: the conduit gets the file from the network (and decrypts it),
  // then its bytes arrive here, counted against their length, and are saved from a blob.
  async function download(what, name, total) {
    const bar = $("download-progress"), status = $("action-status");
    bar.hidden = false; bar.removeAttribute("value");
    say(status, `Getting ${name} from the network…`);
    try {
      const r = await request("/api/files/download", { method: "POST", body: JSON.stringify(what), headers: { "Content-Type": "application/json" } });
      if (!r.ok) { const body = await r.json().catch(() => ({})); throw Object.assign(new Error(body.error || r.statusText), { reason: body.reason }); }
      const length = Number(r.headers.get("Content-Length")) || total || 0, reader = r.body.getReader(), parts = [];
      let got = 0;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parts.push(value);
        got += value.length;
        if (length) bar.value = (100 * got) / length;
        say(status, `Receiving ${name}: ${size(got)} of ${size(length)}`);
      }
      const url = URL.createObjectURL(new Blob(parts));
      const a = h("a", { href: url, download: name, hidden: "" });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      bar.value = 100;
      say(status, `Saved ${name} (${size(got)}).`, "ok");
    } catch (e) {
      bar.hidden = true; bar.value = 0;
      say(status, e.message, "message", e.reason || "");
    }
  }

  // One upload, its own line and bar: the bytes to the conduit (the browser's progress), then the
  // network storing them (the conduit's answer, one JSON line at a time). A failure says why and
  // takes the bar away.
  function uploadOne(file, folder, isPublic) {
    return new Promise((resolve) => {
      const bar = h("progress", { max: "100", value: "0" }), status = h("span", { class: "muted" }, "Sending to the conduit…");
      const li = h("li", { class: "transfer", "data-name": file.name }, h("span", {}, `${file.name} `), bar, status);
      $("transfers").prepend(li);
      const query = new URLSearchParams({ path: folder, name: file.name, public: isPublic ? "1" : "0" });
      const xhr = openXhr("POST", `/api/files/upload?${query}`);
      if (!xhr) { resolve(false); return; }
      const failed = (text, reason = "") => {
        bar.remove();
        say(status, text, "message", reason);
        li.dataset.state = "failed";
        resolve(false);
      };
      let seen = 0, last = null;
      const lines = () => {
        const text = xhr.responseText, end = text.lastIndexOf("\n");
        if (end < seen) return;
        for (const line of text.slice(seen, end).split("\n").filter(Boolean)) {
          try { last = JSON.parse(line); } catch { continue; }
          if (last.total) { bar.value = (100 * last.done) / last.total; status.textContent = `Storing in the network: ${size(last.done)} of ${size(last.total)}`; }
        }
        seen = end + 1;
      };
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) bar.value = (100 * e.loaded) / e.total; };
      xhr.upload.onload = () => { bar.value = 0; status.textContent = isPublic ? "Storing in the network…" : "Encrypting and storing in the network…"; };
      xhr.onprogress = lines;
      xhr.onload = () => {
        if (xhr.status === 401) { resolve(false); return; }
        if (xhr.status >= 400) {
          let body;
          try { body = JSON.parse(xhr.responseText || "{}"); } catch { body = { error: "the conduit gave no answer" }; }
          failed(body.error || "Upload failed.", body.reason || "");
          return;
        }
        lines();
        if (!last || last.error || !last.path) { failed((last && last.error) || "the conduit gave no answer", (last && last.reason) || ""); return; }
        bar.value = 100;
        li.dataset.state = "done";
        say(status, `Stored ${last.path} (${last.public ? "public" : "private, encrypted here"}).`, "ok");
        resolve(true);
      };
      xhr.onerror = () => failed("The conduit did not answer.");
      const form = new FormData();
      form.append("file", file);
      xhr.send(form);
    });
  }

  async function upload(ev) {
    ev.preventDefault();
    const input = $("put-input"), files = [...input.files], folder = cwd;
    const isPublic = $("put-vis").querySelector("input[value=public]").checked;
    if (!files.length) return;
    await busy($("put-button"), async () => {
      for (const file of files) await uploadOne(file, folder, isPublic);
      $("put-form").reset();
      if (shown && shown.public) $("put-vis").querySelector("input[value=public]").checked = true;
      if (folder === cwd) await refresh();
    });
  }

  async function mkdir(ev) {
    ev.preventDefault();
    const name = $("mkdir-name").value.trim(), isPublic = $("mkdir-vis").querySelector("input[value=public]").checked;
    if (!name) return;
    await busy($("mkdir-button"), async () => {
      if (await act(`Making ${name}…`, "/api/files/mkdir", { path: join(cwd, name), public: isPublic ? "1" : "0" }, `Made ${name}/ (${isPublic ? "public" : "private"}).`)) $("mkdir-name").value = "";
    });
  }

  async function versions() {
    const card = $("versions-card"), body = $("versions").querySelector("tbody"), path = cwd;
    card.hidden = false;
    $("versions-of").textContent = path;
    body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "Asking the network…")));
    try {
      const r = await post("/api/files/versions", { path });
      body.replaceChildren(...r.versions.map((v, i) => {
        const restore = h("button", { type: "button", class: "restore" }, "Restore");
        restore.addEventListener("click", () => busy(restore, async () => {
          if (await act(`Restoring version ${v.version}…`, "/api/files/restore", { path, version: v.obj }, `Restored version ${v.version} as the newest.`)) await versions();
        }));
        return h("tr", { "data-version": v.version },
          h("td", {}, v.version), h("td", {}, new Date(Number(v.ts)).toLocaleString()), h("td", {}, v.machine),
          h("td", {}, v.entries), h("td", {}, i === 0 ? "current" : restore));
      }));
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "message" }, e.message))); }
  }

  async function share(ev) {
    ev.preventDefault();
    const record = $("share-record");
    await busy($("share-button"), async () => {
      const r = await act("Sharing…", "/api/files/share", { path: $("share-path").value, to: $("share-to").value }, "");
      if (!r) return;
      record.value = r.share;
      record.hidden = false;
      say($("share-status"), `Shared ${r.path} read-only with ${r.to.slice(0, 16)}…: give them this record.`, "ok");
      say($("action-status"), "");
    });
  }

  async function openShared(ev) {
    if (ev) { ev.preventDefault(); sharedPath = "/"; shared = $("shared-record").value; }
    const table = $("shared-list"), note = $("shared-note");
    await busy($("shared-open"), async () => {
      try {
        const r = await post("/api/files/shared", { share: shared, path: sharedPath });
        say(note, `${r.kind === "folder" ? "Folder" : "File"} ${r.name}${sharedPath === "/" ? "" : sharedPath}, shared by ${r.owner.slice(0, 16)}…`, "ok");
        table.hidden = false;
        table.querySelector("tbody").replaceChildren(...r.entries.map((e) => {
          const inside = r.kind === "folder" ? join(sharedPath, e.name) : "";
          let act;
          if (e.kind === "folder") {
            act = h("button", { type: "button", class: "open" }, "Open");
            act.addEventListener("click", () => { sharedPath = inside; openShared(); });
          } else {
            act = h("button", { type: "button", class: "download" }, "Download");
            act.addEventListener("click", () => busy(act, () => download({ share: shared, path: inside }, e.name, e.size)));
          }
          return h("tr", { "data-name": e.name }, h("td", {}, e.name), h("td", {}, e.kind === "folder" ? "—" : size(Number(e.size))), h("td", {}, act));
        }));
      } catch (e) { table.hidden = true; say(note, e.message, "message", e.reason || ""); }
    });
  }

  onPage(() => {
    if (!$("ftree") || $("ftree").dataset.started) return;
    $("ftree").dataset.started = "1";
    shown = null;
    $("folder-refresh").addEventListener("click", () => refresh());
    $("folder-versions").addEventListener("click", () => busy($("folder-versions"), versions));
    $("put-form").addEventListener("submit", upload);
    $("mkdir-form").addEventListener("submit", mkdir);
    $("share-form").addEventListener("submit", share);
    $("shared-form").addEventListener("submit", openShared);
    open(cwd);
  });
})();
