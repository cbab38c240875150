// The Watch page (fStreamCell): a person's audio and video files, others' public media and what was
// shared with this key, played through the conduit's range-serving address. Loaded once by conduit.js (the page's data-script). Every name and message
// from the network goes in as text (Borg.h and textContent, never innerHTML).
"use strict";
(() => {
  const { api, h, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc) => api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" } });
  const join = (dir, name) => (dir === "/" ? `/${name}` : `${dir}/${name}`);
  let cwd = "/";

  function crumbs() {
    const parts = cwd.split("/").filter(Boolean), links = [];
    const link = (label, to) => {
      const a = h("a", { href: "#", class: "crumb" }, label);
      a.addEventListener("click", (ev) => { ev.preventDefault(); open(to); });
      return a;
    };
    links.push(link("Your files", "/"));
    parts.forEach((p, i) => links.push(" / ", link(p, `/${parts.slice(0, i + 1).join("/")}`)));
    $("watch-crumbs").replaceChildren(...links);
  }

  async function play(body, name) {
    $("watch-state").textContent = `Opening ${name}…`;
    let doc;
    try { doc = await post("/api/watch/open", body); } catch (e) { $("watch-state").textContent = e.message; return; }
    const video = $("watch-player");
    $("watch-player-card").hidden = false;
    $("watch-title").textContent = doc.name;
    video.src = doc.src;
    video.play().catch(() => { $("watch-state").textContent = "Press play to start."; });
  }

  async function open(path) {
    cwd = path;
    crumbs();
    $("watch-note").textContent = "Asking the network…";
    let doc;
    try { doc = await post("/api/watch/ls", { path }); } catch (e) { $("watch-note").textContent = e.message; return; }
    const rows = doc.entries.map((e) => {
      const target = join(cwd, e.name);
      const button = h("button", { type: "button", class: e.kind === "folder" ? "folder" : "media", "data-path": target },
        e.kind === "folder" ? `${e.name}/` : `▶ ${e.name}`);
      button.addEventListener("click", () => (e.kind === "folder" ? open(target) : play({ path: target }, e.name)));
      return h("li", {}, button, e.kind === "folder" ? "" : h("span", { class: "muted" }, ` ${e.private ? "private" : "public"}, ${e.type}`));
    });
    $("watch-list").replaceChildren(...rows);
    $("watch-note").textContent = rows.length ? "" : "No audio or video files in this folder.";
  }

  const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;

  async function listPublic() {
    $("watch-public-note").textContent = "Asking the fStream cells…";
    let doc;
    try { doc = await post("/api/watch/public", {}); } catch (e) { $("watch-public-note").textContent = e.message; return; }
    const rows = doc.listings.map((x) => {
      const button = h("button", { type: "button", class: "public", "data-map": x.map }, `▶ ${x.name}`);
      button.addEventListener("click", () => play({ map: x.map }, x.name));
      return h("li", {}, button, h("span", { class: "muted" }, ` ${x.type}, ${mib(x.size)}, by ${x.owner.slice(0, 16)}…`));
    });
    $("watch-public").replaceChildren(...rows);
    $("watch-public-note").textContent = rows.length ? "" : "Nobody has listed public media yet.";
  }

  async function openShare() {
    const share = $("watch-share").value.trim();
    if (!share) return;
    $("watch-shared-note").textContent = "Opening the share…";
    let doc;
    try { doc = await post("/api/watch/shared", { share }); } catch (e) { $("watch-shared-note").textContent = e.message; return; }
    const rows = doc.entries.map((e) => {
      const button = h("button", { type: "button", class: "shared", "data-name": e.name }, `▶ ${e.name}`);
      button.addEventListener("click", () => play({ share, path: doc.folder ? `/${e.name}` : "" }, e.name));
      return h("li", {}, button, h("span", { class: "muted" }, ` ${e.private ? "private" : "public"}, ${e.type}, from ${doc.owner.slice(0, 16)}…`));
    });
    $("watch-shared").replaceChildren(...rows);
    $("watch-shared-note").textContent = rows.length ? "" : "No audio or video in what was shared.";
  }

  onPage(() => {
    if (!$("watch") || $("watch").dataset.started) return;
    $("watch").dataset.started = "1";
    const video = $("watch-player"), state = $("watch-state");
    video.addEventListener("playing", () => { state.textContent = "Playing."; });
    video.addEventListener("waiting", () => { state.textContent = "Waiting for the network…"; });
    video.addEventListener("error", () => { state.textContent = "The player stopped: the file could not be read."; });
    $("watch-public-refresh").addEventListener("click", listPublic);
    $("watch-share-open").addEventListener("click", openShare);
    open("/");
    listPublic();
  });
})();
