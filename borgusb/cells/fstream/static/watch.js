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

  // Adaptive bitrate. A public video may come in several renditions (its owner's stream map names
  // them, best first). Play the best; after two stalls within 20 s, or one longer than 3 s, step
  // down one rendition at the same play position; after a calm spell with plenty buffered, try one
  // step up, and wait twice as long before the next try if that step had to be taken back.
  // A start or a switch loads before it plays: its first GRACE_MS of waiting is not a stall.
  const CALM_MS = 30000, STALL_MS = 3000, STALL_WINDOW_MS = 20000, AHEAD_S = 20, GRACE_MS = 4000;
  let adaptive = null;

  function bufferedAhead(video) {
    const b = video.buffered, t = video.currentTime;
    for (let i = 0; i < b.length; i++) if (b.start(i) <= t + 0.1 && t <= b.end(i)) return b.end(i) - t;
    return 0;
  }

  function adapt(video, renditions) {
    let at = 0, stalls = [], since = performance.now(), waitingAt = null, calm = CALM_MS, upAt = -1e9;
    const show = () => {
      const r = renditions[at];
      video.dataset.rendition = String(r.h);
      $("watch-quality").hidden = false;
      $("watch-quality").textContent = `${r.h ? `${r.h}p` : "rendition"} (${(r.bps / 1e6).toFixed(2)} Mbit/s), ` +
        `${renditions.length} renditions: the player changes as your link allows`;
    };
    const use = (i) => {
      if (i === at || i < 0 || i >= renditions.length) return;
      const now = performance.now();
      if (i > at && now - upAt < 15000) calm *= 2;  // the last step up was too much for this link
      if (i < at) upAt = now;
      const t = video.currentTime, resume = !video.paused;
      at = i; stalls = []; since = now; waitingAt = null;
      video.dataset.switches = String(Number(video.dataset.switches || 0) + 1);
      video.src = renditions[at].src;
      video.addEventListener("loadedmetadata", () => {
        video.currentTime = t;
        if (resume) video.play().catch(() => {});
      }, { once: true });
      show();
    };
    const waiting = () => {
      const now = waitingAt = performance.now();
      if (now - since < GRACE_MS) return;
      stalls = stalls.filter((x) => now - x < STALL_WINDOW_MS).concat(now);
      if (stalls.length >= 2) use(at + 1);
    };
    const playing = () => { waitingAt = null; };
    const timer = setInterval(() => {
      const now = performance.now();
      if (waitingAt !== null && now - Math.max(waitingAt, since + GRACE_MS) > STALL_MS) { use(at + 1); return; }
      if (at > 0 && now - since > calm && !stalls.length && bufferedAhead(video) > AHEAD_S) use(at - 1);
      if (stalls.length && now - stalls[stalls.length - 1] > STALL_WINDOW_MS) stalls = [];
    }, 1000);
    video.addEventListener("waiting", waiting);
    video.addEventListener("playing", playing);
    show();
    return () => {
      clearInterval(timer);
      video.removeEventListener("waiting", waiting);
      video.removeEventListener("playing", playing);
    };
  }

  async function play(body, name) {
    $("watch-state").textContent = `Opening ${name}…`;
    let doc;
    try { doc = await post("/api/watch/open", body); } catch (e) { $("watch-state").textContent = e.message; return; }
    const video = $("watch-player");
    if (adaptive) { adaptive(); adaptive = null; }
    $("watch-quality").hidden = true;
    delete video.dataset.rendition;
    video.dataset.switches = "0";
    $("watch-player-card").hidden = false;
    $("watch-title").textContent = doc.name;
    video.src = doc.src;
    if (Array.isArray(doc.renditions) && doc.renditions.length > 1) adaptive = adapt(video, doc.renditions);
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

  // A <video> cannot see an HTTP status: ask the same address for one byte to tell a spent free share
  // (402: every fStream node wants a payment first) from a file that could not be read.
  async function whyStopped(video, state) {
    state.textContent = "The player stopped: the file could not be read.";
    if (!video.currentSrc) return;
    try {
      const resp = await fetch(video.currentSrc, { headers: { Range: "bytes=0-0" }, cache: "no-store" });
      if (resp.status === 402) {
        state.textContent = "Today's free streaming at these nodes is used up. Pay a node ahead " +
          "(0.01 Shell a GiB) with: borgusb pay credit 0.1 --for stream --node ADDRESS";
      }
    } catch (e) { /* the conduit itself is gone: the first words stand */ }
  }

  onPage(() => {
    if (!$("watch") || $("watch").dataset.started) return;
    $("watch").dataset.started = "1";
    const video = $("watch-player"), state = $("watch-state");
    video.addEventListener("playing", () => { state.textContent = "Playing."; });
    video.addEventListener("waiting", () => { state.textContent = "Waiting for the network…"; });
    video.addEventListener("error", () => whyStopped(video, state));
    $("watch-public-refresh").addEventListener("click", listPublic);
    $("watch-share-open").addEventListener("click", openShare);
    open("/");
    listPublic();
  });
})();
