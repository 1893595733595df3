// rebeam observe: puts the fragments the server renders in place, fills the stats cells,
// and sends the action bar's requests for the selected child. No framework, no build step.
"use strict";

const csrf = document.querySelector('meta[name="csrf"]').content;
const rows = document.getElementById("rows");
const timeline = document.getElementById("timeline");
const conn = document.getElementById("conn");
const notice = document.getElementById("notice");
const statusBox = document.getElementById("status");
const selectedLabel = document.getElementById("selected");
const buttons = document.querySelectorAll("#actions button");
const TIMELINE_MAX = 500;
const MAILBOX = 7, RATE = 8, LATENCY = 9; // the stats cells of a row
let stats = {};
let selected = null;

function rowOf(path) {
  return rows.querySelector(`[data-path="${CSS.escape(path)}"]`);
}

function fillStats() {
  for (const row of rows.querySelectorAll(".r.a")) {
    const s = stats[row.dataset.path];
    if (!s) continue;
    const cells = row.children;
    cells[MAILBOX].textContent = s.mailbox;
    cells[RATE].textContent = s.rate ?? "";
    cells[LATENCY].textContent = s.latency_ms == null ? "" : s.latency_ms + " ms";
  }
}

// The action bar offers what the selected row allows (see page.py's row flags).
function showSelection() {
  const row = selected && rowOf(selected);
  for (const old of rows.querySelectorAll(".r.sel")) old.classList.remove("sel");
  if (row) row.classList.add("sel");
  selectedLabel.textContent = selected || "select a child";
  for (const button of buttons) {
    const op = button.dataset.op;
    button.disabled = !row || (op === "restart" && "dyn" in row.dataset) ||
      (op === "status" && !("pid" in row.dataset));
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
  source.addEventListener("rows", (e) => {
    rows.innerHTML = JSON.parse(e.data);
    fillStats();
    showSelection();
  });
  source.addEventListener("stats", (e) => { stats = JSON.parse(e.data); fillStats(); });
  source.addEventListener("timeline", (e) => { timeline.innerHTML = JSON.parse(e.data); });
  source.addEventListener("directory", (e) => {
    document.getElementById("directory").innerHTML = JSON.parse(e.data);
  });
  source.addEventListener("notice", (e) => {
    const text = JSON.parse(e.data);
    if (text || notice.className) say(text, !!text);
  });
  source.addEventListener("event", (e) => {
    timeline.insertAdjacentHTML("afterbegin", JSON.parse(e.data));
    while (timeline.children.length > TIMELINE_MAX) timeline.lastElementChild.remove();
  });
}

async function act(op, path) {
  if (op === "status") {
    const reply = await fetch("api/status?path=" + encodeURIComponent(path));
    const body = await reply.json();
    const shown = body.status ?? body.error;
    statusBox.hidden = false;
    statusBox.textContent =
      path + "\n" + (typeof shown === "string" ? shown : JSON.stringify(shown, null, 2));
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
  const row = e.target.closest(".r.a");
  if (!row) return;
  selected = row.dataset.path;
  showSelection();
});

for (const button of buttons) {
  button.addEventListener("click", () => {
    if (selected) act(button.dataset.op, selected).catch((err) => say(String(err), true));
  });
}

showSelection();
connect();
