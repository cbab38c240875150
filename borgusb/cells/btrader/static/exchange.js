// The Exchange page (btraderOrganCell): the book, the person's fills and swaps, and an order in two
// steps, review then confirm; a cancel is confirmed on the page before it is signed. Loaded once by
// conduit.js (the page's data-script); everything it shows from the network is text (Borg.h and
// textContent, never innerHTML). Numbers arrive as exact decimal text: this script never computes.
"use strict";
(() => {
  const { api, h, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc) => api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" } });
  const say = (box, text, cls = "muted", reason = "") => {
    box.textContent = text;
    box.className = cls;
    box.dataset.reason = reason;
  };
  const SWAP = { matching: "matching (not final yet)", ready_to_settle: "final: ready to settle" };

  let confirming = "";  // the order whose cancel waits for its confirmation (kept across the book's refreshes)
  function cancelButton(o) {
    const ask = h("button", { class: "cancel-order" }, "Cancel");
    const yes = h("button", { class: "cancel-yes" }, "Yes, cancel it");  // the confirmation, shown in its place
    ask.onclick = () => {
      confirming = o.id;
      ask.replaceWith(yes);
      say($("book-note"), `Cancel your ${o.side} of ${o.shells} Shells? Click “Yes, cancel it”.`);
    };
    yes.onclick = async () => {
      yes.disabled = true;
      try {
        await post("/api/exchange/cancel", { id: o.id });
        confirming = "";
        say($("book-note"), `Cancelled your ${o.side} of ${o.shells} Shells.`, "ok");
        refreshBook();
      } catch (e) { say($("book-note"), e.message, "message", e.reason || ""); yes.disabled = false; }
    };
    return h("span", {}, confirming === o.id ? yes : ask);
  }

  async function refreshBook(background = false) {
    const body = document.querySelector("#book tbody");
    if (!body) return;
    try {
      const { bids, asks } = await api("/api/exchange/book", { background });
      const rows = [...asks.slice().reverse(), ...bids];
      if (!rows.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No orders yet."))); return; }
      body.replaceChildren(...rows.map((o) => {
        const tr = h("tr", { class: o.side === "buy" ? "bid" : "ask" },
          h("td", {}, o.side === "buy" ? "buy" : "sell"), h("td", { class: "amount" }, o.shells),
          h("td", { class: "amount" }, o.price), h("td", { class: "mono" }, o.mine ? "you" : o.owner),
          h("td", {}, o.mine ? cancelButton(o) : ""));
        tr.dataset.id = o.id;
        if (o.mine) tr.classList.add("mine");
        return tr;
      }));
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "message" }, e.message))); }
  }

  // a fill's swap: its progress while the conduit runs it, else a Settle button (confirmed in place)
  let settling = "";
  function swapCell(f) {
    if (f.swap) {
      const said = [...f.swap.last, ...f.swap.problem.map((p) => `waiting: ${p}`)].join(" · ");
      return h("span", {}, `${f.swap.state.replaceAll("_", " ")} (you are the ${f.swap.role})`, h("br"), h("small", { class: "muted" }, said));
    }
    const text = SWAP[f.state] || f.state;
    if (f.state !== "ready_to_settle") return text;
    const ask = h("button", { class: "settle" }, "Settle");
    const yes = h("button", { class: "settle-yes" }, "Yes, lock my side");
    ask.onclick = () => {
      settling = f.fill;
      ask.replaceWith(yes);
      say($("fills-note"), `Settle this fill? Your side is locked for the swap's timeouts; keep this wallet unlocked until it is done.`);
    };
    yes.onclick = async () => {
      yes.disabled = true;
      try {
        await post("/api/exchange/settle", { fill: f.fill });
        settling = "";
        say($("fills-note"), "The swap is running.", "ok");
        refreshFills();
      } catch (e) { say($("fills-note"), e.message, "message", e.reason || ""); yes.disabled = false; }
    };
    return h("span", {}, text, " ", settling === f.fill ? yes : ask);
  }

  async function refreshFills(background = false) {
    const body = document.querySelector("#fills tbody");
    if (!body) return;
    try {
      const { fills } = await api("/api/exchange/fills", { background });
      if (!fills.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "muted" }, "No fills yet."))); return; }
      body.replaceChildren(...fills.map((f) => {
        const tr = h("tr", { class: f.role },
          h("td", {}, f.role), h("td", { class: "amount" }, f.shells), h("td", { class: "amount" }, f.doge),
          h("td", { class: "mono" }, `${f.fill.slice(0, 16)}…`), h("td", { class: "swap" }, swapCell(f)));
        tr.dataset.state = f.swap ? f.swap.state : f.state;
        return tr;
      }));
    } catch (e) { body.replaceChildren(h("tr", {}, h("td", { colspan: "5", class: "message" }, e.message))); }
  }

  let review = null;
  const busy = (on) => { for (const id of ["order-review", "order-confirm-yes", "order-cancel"]) $(id).disabled = on; };
  const closeReview = () => { review = null; $("order-confirm").hidden = true; $("order-form").hidden = false; };

  async function onReview(ev) {
    ev.preventDefault();
    busy(true);
    try {
      review = await post("/api/exchange/review", { side: $("order-side").value, amount: $("order-amount").value, price: $("order-price").value });
      $("confirm-side").textContent = review.side === "buy" ? "Buy" : "Sell";
      $("confirm-shells").textContent = review.shells;
      $("confirm-price").textContent = review.price;
      $("confirm-total").textContent = review.total;
      $("order-form").hidden = true;
      $("order-confirm").hidden = false;
      say($("order-status"), "Check the order, then place it or cancel.");
    } catch (e) { review = null; say($("order-status"), e.message, "message", e.reason || ""); } finally { busy(false); }
  }

  async function onConfirm() {
    if (!review) return;
    const token = review.token;
    busy(true);
    try {
      const r = await post("/api/exchange/place", { token });
      closeReview();
      $("order-form").reset();
      say($("order-status"), `Placed: ${r.side} ${r.shells} Shells at ${r.price} DOGE (order ${r.id.slice(0, 16)}…, through ${r.served_by}).`, "ok");
      refreshBook();
      refreshFills();
    } catch (e) { closeReview(); say($("order-status"), e.message, "message", e.reason || ""); } finally { busy(false); }
  }

  onPage(() => {
    if (!$("exchange") || $("exchange").dataset.started) return;
    $("exchange").dataset.started = "1";
    $("order-form").addEventListener("submit", onReview);
    $("order-confirm-yes").addEventListener("click", onConfirm);
    $("order-cancel").addEventListener("click", () => { closeReview(); say($("order-status"), "Cancelled: nothing was placed."); });
    refreshBook();
    refreshFills();
    every(refreshBook, 3000);
    every(refreshFills, 5000);
  });
})();
