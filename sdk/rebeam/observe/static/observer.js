// rebeam observe: puts the fragments the server renders in place, fills the stats cells,
// and sends the page's two actions. No framework, no build step.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const rows = document.getElementById("rows");
const timeline = document.getElementById("timeline");
const conn = document.getElementById("conn");
const notice = document.getElementById("notice");
const statusBox = document.getElementById("status");
const TIMELINE_MAX = 500;
let stats = {};

function fillStats() {
  for (const row of rows.querySelectorAll("tr.actor")) {
    const s = stats[row.dataset.path];
    if (!s) continue;
    row.querySelector('[data-s="mailbox"]').textContent = s.mailbox;
    row.querySelector('[data-s="rate"]').textContent = s.rate ?? "";
    row.querySelector('[data-s="latency"]').textContent =
      s.latency_ms == null ? "" : s.latency_ms + " ms";
  }
}

function say(text, bad) {
  notice.textContent = text;
  notice.className = bad ? "bad" : "";
}

function connect() {
  const source = new EventSource("events");
  source.onopen = () => { conn.textContent = "live"; conn.className = "up"; };
  source.onerror = () => { conn.textContent = "reconnecting"; conn.className = "down"; };
  source.addEventListener("rows", (e) => { rows.innerHTML = JSON.parse(e.data); fillStats(); });
  source.addEventListener("stats", (e) => { stats = JSON.parse(e.data); fillStats(); });
  source.addEventListener("timeline", (e) => { timeline.innerHTML = JSON.parse(e.data); });
  source.addEventListener("directory", (e) => {
    document.getElementById("directory").innerHTML = JSON.parse(e.data);
  });
  source.addEventListener("notice", (e) => { const t = JSON.parse(e.data); if (t || notice.className) say(t, !!t); });
  source.addEventListener("event", (e) => {
    timeline.insertAdjacentHTML("afterbegin", JSON.parse(e.data));
    while (timeline.children.length > TIMELINE_MAX) timeline.lastElementChild.remove();
  });
}

async function act(op, path) {
  if (op === "status") {
    const reply = await fetch("api/status?path=" + encodeURIComponent(path));
    const body = await reply.json();
    statusBox.hidden = false;
    const shown = body.status ?? body.error;
    statusBox.textContent = path + "\n" + (typeof shown === "string" ? shown : JSON.stringify(shown, null, 2));
    return;
  }
  if (!window.confirm(op + " " + path + "?")) return;
  say(op + " " + path + "...", false);
  const reply = await fetch("api/" + op, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: JSON.stringify({ path: path }),
  });
  const body = await reply.json();
  say(body.ok ?? body.error, !reply.ok);
}

rows.addEventListener("click", (e) => {
  const button = e.target.closest("button[data-op]");
  if (!button) return;
  act(button.dataset.op, button.closest("tr").dataset.path).catch((err) => say(String(err), true));
});

connect();
