// The Wallet page (peerPaysCell): balance, history, and a send in two steps, review then confirm.
// Loaded once by conduit.js (the page's data-script); everything it shows from the network is text
// (Borg.h and textContent, never innerHTML). Amounts arrive from the conduit as exact Shells text:
// this script never computes with them.
"use strict";
(() => {
  const { api, h, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc) => api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" } });
  // a refusal as the page shows it: what happened, its reason word kept in data-reason for tests and styles
  const refusal = (box, err) => {
    box.textContent = err.message;
    box.className = "message";
    box.dataset.reason = err.reason || "";
  };

  async function refreshBalance(background = false) {
    const box = $("balance"), note = $("balance-note");
    if (!box) return;
    try {
      const b = await api("/api/wallet/balance", { background });
      box.textContent = `${b.shells} Shells`;
      box.dataset.state = "agreed";
      note.className = "muted";
      note.dataset.reason = "";
      note.textContent = `agreed by ${b.agreed_by} holders (quorum ${b.quorum}); asked ${b.served_by}`;
    } catch (e) {
      box.textContent = "unknown";  // never the last number seen, never a guess
      box.dataset.state = "refused";
      refusal(note, e);
    }
  }

  async function refreshHistory(background = false) {
    const body = document.querySelector("#history tbody");
    if (!body) return;
    try {
      const { history, agreed, served_by } = await api("/api/wallet/history", { background });
      $("history-note").textContent = `From ${served_by}${agreed ? "" : "; the holders do not agree on this account right now"}.`;
      if (!history.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No payments yet."))); return; }
      body.replaceChildren(...history.map((t) => {
        const out = t.dir === "out";
        const tr = h("tr", { class: out ? "out" : "in" },
          h("td", {}, t.ts ? new Date(Number(t.ts)).toLocaleString() : "—"),
          h("td", { class: "amount" }, `${out ? "−" : "+"}${t.shells}`),
          h("td", { class: "mono" }, `${out ? "to" : "from"} ${t.peer_address || t.peer.slice(0, 16)}`),
          h("td", { class: "mono" }, `${String(t.id).slice(0, 16)}…`),
          h("td", {}, t.kind === "skip" ? "skipped (split votes, nothing paid)"
            : t.confirmed ? (t.kind === "reward" ? "reward, confirmed" : "confirmed") : "unconfirmed"));
        tr.title = t.peer;
        return tr;
      }));
    } catch (e) {
      $("history-note").textContent = `Not refreshed: ${e.message}`;
      $("history-note").className = "message";
    }
  }

  let review = null;
  const busy = (on) => { for (const id of ["send-review", "send-confirm-yes", "send-cancel"]) $(id).disabled = on; };
  const status = (text, cls = "muted") => {
    const s = $("send-status");
    s.textContent = text;
    s.className = cls;
    s.dataset.reason = "";
  };

  async function onReview(ev) {
    ev.preventDefault();
    busy(true);
    status("Checking…");
    try {
      review = await post("/api/wallet/review", { to: $("send-to").value, amount: $("send-amount").value });
      $("confirm-shells").textContent = review.shells;
      $("confirm-address").textContent = review.to_address;
      $("confirm-key").textContent = review.to;
      $("send-step").hidden = true;  // the form's own display:flex would beat [hidden]
      $("send-confirm").hidden = false;
      status("Check the payment, then send it or cancel.");
    } catch (e) {
      review = null;
      refusal($("send-status"), e);
    } finally { busy(false); }
  }

  function closeReview() {
    review = null;
    $("send-confirm").hidden = true;
    $("send-step").hidden = false;
  }

  async function onConfirm() {
    if (!review) return;
    const token = review.token;
    busy(true);
    status(`Sending ${review.shells} Shells… (the holders confirm it)`);
    try {
      const r = await post("/api/wallet/send", { token });
      closeReview();
      $("send-form").reset();
      status(`Sent ${r.shells} Shells to ${r.to_address}: transaction ${r.id.slice(0, 16)}… confirmed by ${r.signers} of ${r.holders} holders.`
        + (r.resent ? ` (Before it, ${r.resent}.)` : ""), "ok");
      refreshBalance();
      refreshHistory();
    } catch (e) {
      closeReview();
      refusal($("send-status"), e);
      refreshBalance();
    } finally { busy(false); }
  }

  onPage(() => {
    if (!$("wallet") || $("wallet").dataset.started) return;
    $("wallet").dataset.started = "1";
    $("send-form").addEventListener("submit", onReview);
    $("send-confirm-yes").addEventListener("click", onConfirm);
    $("send-cancel").addEventListener("click", () => { closeReview(); status("Cancelled: nothing was sent."); });
    refreshBalance();
    refreshHistory();
    every(refreshBalance, 15000);
  });
})();
