// The Mail page (mailTreeCell): inbox, read, reply, delete, compose. Loaded once by conduit.js (the
// page's data-script). Every subject, body and key shown comes from the network: all of it goes in
// as text (Borg.h and textContent, never innerHTML).
"use strict";
(() => {
  const { api, h, every, onPage } = Borg;
  const $ = (id) => document.getElementById(id);
  const post = (path, doc) => api(path, { body: JSON.stringify(doc), headers: { "Content-Type": "application/json" } });
  const say = (box, text, cls = "muted", reason = "") => { box.textContent = text; box.className = cls; box.dataset.reason = reason; };
  let messages = [], open = null;
  let resolved = null; // { to: what the field said, key, fingerprint, address, name } from /api/mail/resolve

  // A key or an address (D…) in the To field: the key it names, shown with its fingerprint (as text)
  // before anything is sent; an address is resolved through the directory by the conduit.
  async function resolveTo() {
    const to = $("compose-to").value.trim();
    if (resolved && resolved.to === to) return resolved;
    resolved = null;
    $("compose-resolved").textContent = "";
    if (!to) return null;
    const r = await post("/api/mail/resolve", { to });
    resolved = { to, ...r };
    $("compose-resolved").textContent = r.address
      ? `${r.address} is key ${r.key}, fingerprint ${r.fingerprint}` + (r.name ? ` (calls themselves "${r.name}")` : "")
      : `Key fingerprint ${r.fingerprint}`;
    return resolved;
  }

  function show(m) {
    open = m;
    $("reader").hidden = false;
    $("reader-subject").textContent = m.error ? `Does not open (${m.error})` : (m.subject || "(no subject)");
    $("reader-from").textContent = `from ${m.from}`;
    $("reader-date").textContent = new Date(Number(m.ts)).toLocaleString();
    $("reader-flags").textContent = (m.new_sender ? "· a sender you have never read mail from" : "") + (m.re ? ` · reply to ${m.re.slice(0, 12)}…` : "");
    $("reader-body").textContent = m.error ? "This message is tampered, or not sealed to your key." : m.body;
    $("reader-attachments").textContent = m.attachments && m.attachments.length
      ? `${m.attachments.length} attachment(s): save them with 'borgusb mail read ${m.id.slice(0, 12)} --save DIR'` : "";
    if (!m.read && !m.error) post("/api/mail/read", { id: m.id }).then(() => refresh()).catch(() => {});
  }

  async function refresh(background = false) {
    const body = document.querySelector("#inbox tbody");
    if (!body) return;
    try {
      const r = await api("/api/mail/inbox", { background });
      messages = r.messages;
      say($("inbox-note"), `${messages.length} message(s), from ${r.served_by}` + (r.dropped ? `; ${r.dropped} item(s) did not verify and were dropped` : ""));
      if (!messages.length) { body.replaceChildren(h("tr", {}, h("td", { colspan: "4", class: "muted" }, "No mail."))); return; }
      body.replaceChildren(...messages.slice().reverse().map((m) => {
        const link = h("a", { href: "#", class: "subject", "data-id": m.id }, m.error ? `(does not open: ${m.error})` : (m.subject || "(no subject)"));
        link.addEventListener("click", (ev) => { ev.preventDefault(); show(m); });
        return h("tr", { class: m.read ? "read" : "unread", "data-id": m.id },
          h("td", {}, new Date(Number(m.ts)).toLocaleString()),
          h("td", { class: "mono", title: m.from }, `${m.from.slice(0, 16)}…`),
          h("td", {}, link),
          h("td", {}, [m.read ? "" : "unread", m.new_sender ? "new sender" : "", m.re ? "reply" : ""].filter(Boolean).join(", ")));
      }));
    } catch (e) { say($("inbox-note"), `Not refreshed: ${e.message}`, "message", e.reason || ""); }
  }

  async function onSend(ev) {
    ev.preventDefault();
    $("compose-send").disabled = true;
    try {
      const checked = resolved && resolved.to === $("compose-to").value.trim();
      const who = await resolveTo();
      if (!who) throw new Error("Give the recipient's key or address.");
      if (who.address && !checked) {
        say($("compose-status"), "Check the key above is the person you mean, then press Seal and send again.", "message", "check");
        return;
      }
      say($("compose-status"), "Sealing and sending…");
      const r = await post("/api/mail/send", { to: who.key, subject: $("compose-subject").value, body: $("compose-body").value, re: $("compose-re").value });
      $("compose").reset();
      $("compose-re").value = "";
      $("compose-thread").textContent = "";
      $("compose-resolved").textContent = "";
      resolved = null;
      say($("compose-status"), `Sent ${r.id.slice(0, 16)}…: kept by ${r.stored} of ${r.holders} holders of the recipient's inbox.`, "ok");
    } catch (e) { say($("compose-status"), e.message, "message", e.reason || ""); } finally { $("compose-send").disabled = false; }
  }

  onPage(() => {
    if (!$("mail") || $("mail").dataset.started) return;
    $("mail").dataset.started = "1";
    $("compose").addEventListener("submit", onSend);
    $("compose-to").addEventListener("change", () => resolveTo().catch((e) => say($("compose-resolved"), e.message, "message", e.reason || "")));
    $("reader-reply").addEventListener("click", () => {
      if (!open) return;
      $("compose-to").value = open.from;
      resolveTo().catch(() => {});
      $("compose-subject").value = open.subject && !open.subject.startsWith("re: ") ? `re: ${open.subject}` : (open.subject || "");
      $("compose-re").value = open.id;
      $("compose-thread").textContent = `A reply to ${open.id.slice(0, 12)}…`;
      $("compose-body").focus();
    });
    $("reader-delete").addEventListener("click", async () => {
      if (!open) return;
      try { await post("/api/mail/rm", { id: open.id }); $("reader").hidden = true; open = null; refresh(); }
      catch (e) { say($("inbox-note"), e.message, "message", e.reason || ""); }
    });
    refresh();
    every(refresh, 20000);
  });
})();
