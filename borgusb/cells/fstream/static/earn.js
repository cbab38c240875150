// The Watch page's Earnings card (earn_card.html, earnweb.py): reads of your public media and the
// content reward claimed for them. Everything from the network goes in as text (textContent).
"use strict";
(() => {
  const { api, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, background = false) =>
    api(path, { body: "{}", headers: { "Content-Type": "application/json" }, background });
  const say = (box, text, cls = "muted", reason = "") => {
    box.textContent = text; box.className = cls; box.dataset.reason = reason;
  };

  let soon = null;  // a look again in a few seconds while no fStream cell is known yet

  async function refresh(background = false) {
    if (!$("earn-card")) return;
    clearTimeout(soon);
    try {
      const e = await post("/api/watch/earnings", background);
      if (!e.endpoints) soon = setTimeout(() => refresh(true), 5000);
      $("earn-yesterday").textContent = String(e.reads);
      $("earn-today").textContent = String(e.today);
      const claim = $("earn-claim");
      if (e.claimed) {
        say($("earn-state"), `Day ${e.day}: ${e.claimed.shells} Shells for ${e.claimed.reads} reads, paid.`, "ok", "paid");
        claim.disabled = true; claim.textContent = "Paid";
      } else if (e.reads > 0) {
        say($("earn-state"), `Day ${e.day}: ${e.reads} reads are worth ${e.shells} Shells from the reserve.`, "ok");
        claim.disabled = false; claim.textContent = `Claim ${e.shells} Shells`;
      } else {
        say($("earn-state"), e.endpoints ? "Nobody else played your public media yesterday."
          : "No fStream cell answers right now.", "muted");
        claim.disabled = true; claim.textContent = "Claim";
      }
    } catch (err) { say($("earn-state"), err.message, "message", err.reason || ""); }
  }

  async function onClaim() {
    const claim = $("earn-claim");
    claim.disabled = true;
    say($("earn-status"), "Claiming: the reserve's holders check every receipt, then confirm…");
    try {
      const r = await post("/api/watch/earn");
      if (r.claimed) {
        say($("earn-status"), `Paid ${r.shells} Shells for ${r.reads} reads (transaction ${r.id.slice(0, 12)}…).`, "ok", "paid");
      } else if (r.why === "already_paid") {
        say($("earn-status"), "That day's reads were paid already.", "ok", "already_paid");
      } else {
        say($("earn-status"), `Not paid (${r.why}): ${r.detail || ""}`, "message", r.why);
      }
    } catch (err) { say($("earn-status"), err.message, "message", err.reason || ""); }
    refresh();
  }

  onPage(() => {
    const card = $("earn-card");
    if (!card || card.dataset.started) return;
    card.dataset.started = "1";
    $("earn-claim").addEventListener("click", onClaim);
    refresh();
    every(refresh, 60000);
  });
})();
