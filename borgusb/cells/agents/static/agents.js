// The Chat and Agents pages (borgAgentCell). Loaded once by conduit.js (the pages' data-script).
// Everything shown here comes from the network (answers, agent names, prompts, memories, messages,
// reports): all of it goes in as text (Borg.h and textContent, never innerHTML).
// A think takes seconds to minutes: the page stays usable meanwhile and says who is thinking.
"use strict";
(() => {
  const { api, h, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc, background = false) =>
    api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" }, background });
  const say = (box, text, cls = "muted", reason = "") => {
    if (!box) return;
    box.textContent = text; box.className = cls; box.dataset.reason = reason;
  };
  const short = (key) => (key ? `${key.slice(0, 12)}…` : "");
  const when = (ts) => (ts ? new Date(Number(ts)).toLocaleTimeString() : "");

  // Who is thinking, asked every 2 s while a think runs: "bob is thinking… 12 s".
  function watchThinking(box, fallback) {
    const started = Date.now();
    let busy = [], stopped = false;
    const tick = async (n) => {
      if (n % 2 === 0) {
        try { busy = (await post("/api/agents/list", {}, true)).agents.filter((a) => a.busy).map((a) => a.name); }
        catch { busy = []; }
      }
      const who = busy.length ? `${busy.join(", ")} ${busy.length > 1 ? "are" : "is"} thinking` : fallback;
      if (!stopped && box && box.isConnected) say(box, `${who}… ${Math.round((Date.now() - started) / 1000)} s`, "muted thinking");
    };
    let n = 0;
    tick(n);
    const timer = setInterval(() => tick(++n), 1000);
    return () => { stopped = true; clearInterval(timer); }; // a tick still asking writes nothing after this
  }

  // ------------------------------------------------------------------ Chat
  const conversation = []; // kept while this tab lives: back on the page, the conversation is still there
  const seenReports = new Set();
  const MAX_SHOWN = 200; // questions, answers and notices kept in this tab (the oldest go first)
  const keep = (item) => { conversation.push(item); conversation.splice(0, conversation.length - MAX_SHOWN); };
  let asking = false;

  function bubble(item) {
    if (item.kind === "you") return h("li", { class: "you" }, h("div", { class: "who" }, "you"), h("div", {}, item.text));
    if (item.kind === "notice") {
      return h("li", { class: "notice", "data-kind": item.report }, `monitor: ${item.text} `,
        h("span", { class: "muted" }, when(item.ts)));
    }
    if (item.kind === "refused") return h("li", { class: "refused", "data-reason": item.reason || "" }, item.text);
    const a = item.answer;
    const li = h("li", { class: "agent", "data-agent": a.agent },
      h("div", { class: "who" }, a.agent, " ", h("span", { class: "mono", title: a.pubkey }, `· ${short(a.pubkey)}`)),
      h("div", { class: "answer" }, a.answer || `(${a.agent} gave no reply in ${a.steps} steps)`));
    if (a.memories.length) {
      li.append(h("div", { class: "muted" }, "memories used:"),
        h("ul", { class: "memories" }, ...a.memories.map((m) => h("li", {}, h("span", { class: "mono" }, `${m.id.slice(0, 10)}… `), m.text))));
    } else li.append(h("div", { class: "muted" }, "no memories used"));
    li.append(h("div", { class: "muted" }, `answered through ${a.served_by}`));
    return li;
  }

  function renderChat() {
    const list = $("conversation");
    if (!list) return;
    list.replaceChildren(...conversation.map(bubble));
    list.lastElementChild?.scrollIntoView({ block: "nearest" });
  }

  async function refreshReports(background = false) {
    if (!$("chat")) return;
    try {
      const r = await post("/api/chat/reports", {}, background);
      let added = false;
      for (const rep of r.reports) {
        const id = `${rep.ts}|${rep.kind}|${rep.text}`;
        if (seenReports.has(id)) continue;
        if (seenReports.size >= 1000) seenReports.delete(seenReports.values().next().value); // the oldest
        seenReports.add(id);
        keep({ kind: "notice", report: rep.kind, text: rep.text, ts: rep.ts });
        added = true;
      }
      if (added) renderChat();
      say($("chat-note"), `Agent cell ${r.served_by}: ${r.reports.length} monitor report(s), ${r.claims} claim(s) for useful work.`);
    } catch (e) { say($("chat-note"), `Reports not refreshed: ${e.message}`, "message", e.reason || ""); }
  }

  async function onAsk(ev) {
    ev.preventDefault();
    const question = $("question").value.trim();
    if (!question || asking) return;
    asking = true;
    $("ask-send").disabled = true;
    $("question").value = "";
    keep({ kind: "you", text: question });
    renderChat();
    const stop = watchThinking($("thinking"), "The agents are thinking");
    try {
      const a = await post("/api/chat/ask", { question });
      keep({ kind: "agent", answer: a });
    } catch (e) {
      keep({ kind: "refused", text: e.message, reason: e.reason });
    } finally {
      stop();
      asking = false;
      say($("thinking"), "");
      if ($("ask-send")) $("ask-send").disabled = false;
      renderChat();
      $("question")?.focus();
    }
  }

  // ------------------------------------------------------------------ Agents
  let openName = null, lastList = null;

  function agentRow(a) {
    const open = h("button", { type: "button", class: "open", "data-name": a.name }, "Open");
    open.addEventListener("click", () => showAgent(a.name));
    return h("tr", { class: a.mine ? "mine" : "", "data-name": a.name },
      h("td", {}, a.name), h("td", {}, a.specialty || "—"),
      h("td", { class: "mono", title: a.owner }, a.mine ? "you" : `someone else (${short(a.owner)})`),
      h("td", {}, `version ${a.prompt_n} of ${a.versions}`),
      h("td", { class: "state" }, a.busy ? "thinking…" : "idle"), h("td", {}, open));
  }

  async function refreshAgents(background = false) {
    const body = document.querySelector("#agent-list tbody");
    if (!body) return;
    try {
      const r = await post("/api/agents/list", {}, background);
      lastList = r;
      const others = r.colony.length ? `; elsewhere in the colony: ${r.colony.join(", ")}` : "";
      say($("agents-note"), `${r.agents.length} agent(s) on ${r.served_by}${others}.`);
      body.replaceChildren(...(r.agents.length ? r.agents.map(agentRow)
        : [h("tr", {}, h("td", { colspan: "6", class: "muted" }, "No agents here yet: create one below."))]));
      if (openName) fillDetail(r.agents.find((a) => a.name === openName));
    } catch (e) { say($("agents-note"), `Not refreshed: ${e.message}`, "message", e.reason || ""); }
  }

  function items(list, rows, empty) {
    if (!list) return;
    list.replaceChildren(...(rows.length ? rows : [h("li", { class: "muted" }, empty)]));
  }

  function fillDetail(a) {
    if (!a || !$("agent-detail")) return;
    $("agent-detail").hidden = false;
    $("agent-detail").dataset.name = a.name;
    $("detail-name").textContent = `${a.name}${a.specialty ? ` · ${a.specialty}` : ""}${a.busy ? " · thinking…" : ""}`;
    $("detail-keys").textContent = `agent key ${a.pubkey}\nowner ${a.mine ? "you" : a.owner}`;
    $("detail-own").hidden = !a.mine;
    $("detail-other").hidden = a.mine;
    items($("memory"), a.working_memory.slice().sort((x, y) => y.rank - x.rank)
      .map((m) => h("li", {}, h("span", { class: "muted" }, `rank ${m.rank}: `), m.text)), "Nothing in its working memory yet.");
    items($("inbox"), a.inbox.map((m) => h("li", {}, h("b", {}, m.from_name), " ",
      h("span", { class: "mono muted", title: m.from }, short(m.from)), ": ", m.text)), "No messages.");
    const dropped = a.claims_dropped ? [h("li", { class: "message" }, `${a.claims_dropped} claim(s) did not verify and are not shown`)] : [];
    $("earned").textContent = `Earned: ${a.earned} Shells`;
    items($("claims"), [...a.claims.map((c) => h("li", {}, h("b", {}, c.kind), ` (${when(c.ts)}): `, c.evidence,
      h("br"), h("span", { class: "muted" }, c.paid ? `paid ${c.paid} Shells` : c.state,
        c.witnesses ? ` · confirmed by ${c.witnesses} node(s)` : "", c.reason && !c.paid ? ` · ${c.reason}` : ""))), ...dropped],
      "No claims yet.");
  }

  function renderVersions(r) {
    const list = $("versions");
    if (!list) return;
    const current = r.versions.length ? r.versions[r.versions.length - 1].n : 0;
    items(list, r.versions.slice().reverse().map((v) => {
      const li = h("li", { "data-n": v.n },
        h("b", {}, `version ${v.n}`), v.n === current ? " (in use)" : "", ` · ${v.why} · `,
        h("span", { class: "mono muted", title: v.id }, `id ${v.id.slice(0, 12)}…`), h("pre", {}, v.text));
      if (v.n !== current) {
        const restore = h("button", { type: "button", class: "restore", "data-n": v.n }, `Restore version ${v.n}`);
        restore.addEventListener("click", () => changePrompt("/api/agents/rollback", { name: r.name, n: String(v.n) }, `Restored version ${v.n}`));
        li.append(restore);
      }
      return li;
    }), "No versions.");
    if (r.dropped) say($("versions-status"), `${r.dropped} version(s) did not verify against the agent's key and are not shown.`, "message", "bad_signature");
  }

  async function loadVersions(name) {
    try { renderVersions(await post("/api/agents/versions", { name })); }
    catch (e) { say($("versions-status"), e.message, "message", e.reason || ""); }
  }

  async function changePrompt(path, doc, done) {
    say($("versions-status"), "Signing the new version…");
    try {
      const r = await post(path, doc);
      renderVersions(r);
      say($("versions-status"), `${done}: now version ${r.versions[r.versions.length - 1].n}.`, "ok");
      refreshAgents();
    } catch (e) { say($("versions-status"), e.message, "message", e.reason || ""); }
  }

  function showAgent(name) {
    openName = name;
    say($("session-status"), "");
    say($("versions-status"), "");
    $("session-steps")?.replaceChildren();
    const a = lastList && lastList.agents.find((x) => x.name === name);
    fillDetail(a);
    if (a && a.mine) loadVersions(name);
    $("agent-detail")?.scrollIntoView({ block: "start" });
  }

  async function onCreate(ev) {
    ev.preventDefault();
    const name = $("create-name").value.trim();
    $("create-button").disabled = true;
    say($("create-status"), `Creating ${name}…`);
    try {
      const r = await post("/api/agents/create", { name, prompt: $("create-prompt").value });
      $("create").reset();
      say($("create-status"), `${r.agent.name} is yours: its key is ${short(r.agent.pubkey)}, registered by your key on ${r.served_by}.`, "ok");
      await refreshAgents();
      showAgent(r.agent.name);
    } catch (e) { say($("create-status"), e.message, "message", e.reason || ""); }
    finally { if ($("create-button")) $("create-button").disabled = false; }
  }

  async function onSession(ev) {
    ev.preventDefault();
    const name = openName;
    if (!name) return;
    $("session-run").disabled = true;
    $("session-steps").replaceChildren();
    const stop = watchThinking($("session-status"), `${name} is thinking`);
    try {
      const r = await post("/api/agents/session", { name, task: $("session-task").value });
      stop();
      const steps = r.steps.map((s) => h("li", { class: `outcome-${s.outcome}`, "data-outcome": s.outcome },
        h("b", {}, s.action), ` — ${s.outcome}${s.reason ? ` (${s.reason})` : ""}`, s.result ? h("pre", {}, s.result) : ""));
      if ($("session-steps") && openName === name) items($("session-steps"), steps, "No steps.");
      const replies = r.replies.length ? ` It said: ${r.replies.join(" ")}` : "";
      say($("session-status"), `${name}'s session ended (${r.ended}) after ${r.steps.length} step(s), on ${r.served_by}.${replies}`, "ok");
      refreshAgents();
    } catch (e) { stop(); say($("session-status"), e.message, "message", e.reason || ""); }
    finally { if ($("session-run")) $("session-run").disabled = false; }
  }

  onPage(() => {
    if ($("chat") && !$("chat").dataset.started) {
      $("chat").dataset.started = "1";
      $("ask").addEventListener("submit", onAsk);
      if (asking) { $("ask-send").disabled = true; say($("thinking"), "The agents are thinking…", "muted thinking"); }
      renderChat();
      refreshReports();
      every(refreshReports, 10000);
    }
    if ($("agents") && !$("agents").dataset.started) {
      $("agents").dataset.started = "1";
      openName = null;
      $("create").addEventListener("submit", onCreate);
      $("session").addEventListener("submit", onSession);
      $("propose").addEventListener("submit", (ev) => {
        ev.preventDefault();
        if (!openName) return;
        changePrompt("/api/agents/propose", { name: openName, prompt: $("propose-text").value }, "Saved");
        $("propose-text").value = "";
      });
      refreshAgents();
      every(refreshAgents, 5000);
    }
  });
})();
