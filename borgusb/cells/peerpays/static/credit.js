// The card of a price paid ahead (credit_card.html, creditweb.py): the Agents page's thinking time and
// the Watch page's streaming. Its routes' prefix and its words come from the card's data attributes.
// Everything from the network goes in as text (textContent, never innerHTML).
"use strict";
(() => {
  const { api, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc, background = false) =>
    api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" }, background });
  const say = (box, text, cls = "muted", reason = "") => {
    if (!box) return;
    box.textContent = text; box.className = cls; box.dataset.reason = reason;
  };
  const short = (key) => (key ? `${key.slice(0, 12)}…` : "");
  let usageAt = "", creditToken = "", creditNode = "";

  async function refreshUsage(background = false) {
    const card = $("credit-card");
    if (!card) return;
    try {
      const u = await post(`${card.dataset.api}/usage`, {}, background);
      usageAt = u.served_by;
      $("free-meter").max = Math.max(1, u.free);
      $("free-meter").value = u.exempt ? Math.max(1, u.free) : u.free_left;
      say($("usage"), u.exempt ? `${u.served_by} serves your key free (it is the node's own key).`
        : `${u.left} on ${u.served_by} · credit ${u.balance} Shells (paid ${u.paid}, used ${u.charged})`, "ok");
      if (u.notes.length) say($("credit-status"), u.notes.join(" "), "message");
    } catch (e) { say($("usage"), e.message, "message", e.reason || ""); }
  }

  async function onCreditReview(ev) {
    ev.preventDefault();
    const card = $("credit-card");
    say($("credit-status"), "Checking…");
    try {
      const r = await post(`${card.dataset.api}/credit/review`, { amount: $("credit-amount").value, node: usageAt });
      creditToken = r.token; creditNode = r.node;
      $("credit-what").textContent = `Pay ${r.shells} Shells to node ${short(r.to)} (${r.to_address}, the ` +
        `${card.dataset.cell} on ${r.node}) for ${card.dataset.what}?`;
      $("credit-confirm").hidden = false;
      say($("credit-status"), "");
    } catch (e) { say($("credit-status"), e.message, "message", e.reason || ""); }
  }

  async function onCreditConfirm() {
    const card = $("credit-card");
    $("credit-yes").disabled = true;
    say($("credit-status"), `Paying: the ledger's holders confirm, then the ${card.dataset.cell} checks it…`);
    try {
      const r = await post(`${card.dataset.api}/credit/confirm`, { token: creditToken, node: creditNode });
      $("credit-confirm").hidden = true;
      $("credit").reset();
      const done = `Paid ${r.shells} Shells (transaction ${r.id.slice(0, 12)}…, confirmed by ${r.signers} of ${r.holders} holders).`;
      say($("credit-status"), r.note ? `${done} ${r.note}` : `${done} Credited.`, r.note ? "message" : "ok", r.note ? "kept" : "");
      refreshUsage();
    } catch (e) {
      $("credit-confirm").hidden = true;
      say($("credit-status"), e.message, "message", e.reason || "");
    } finally { $("credit-yes").disabled = false; creditToken = ""; }
  }

  // a page whose own action changes what is held or used (the Storage page's upload) asks for a look
  document.addEventListener("borg-credit-refresh", () => refreshUsage(true));

  onPage(() => {
    const card = $("credit-card");
    if (!card || card.dataset.started) return;
    card.dataset.started = "1";
    usageAt = ""; creditToken = "";
    $("credit").addEventListener("submit", onCreditReview);
    $("credit-yes").addEventListener("click", onCreditConfirm);
    $("credit-no").addEventListener("click", () => { $("credit-confirm").hidden = true; creditToken = ""; say($("credit-status"), "Not paid."); });
    refreshUsage();
    every(refreshUsage, 15000);
  });
})();
