// The typing page: sends the whole text after every change over a WebSocket and shows
// the three suggestions the server answers; Tab or a click inserts one and a space.
"use strict";
const box = document.getElementById("text");
const buttons = Array.from(document.querySelectorAll("button.suggestion"));
const select = document.getElementById("model");
const latency = document.getElementById("latency");
let ws = null, nextId = 1, sent = new Map(), lastWords = [];

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  ws = new WebSocket(`${scheme}//${location.host}/v1/type`);
  ws.onopen = () => { latency.textContent = "connected"; send(); };
  ws.onmessage = (event) => show(JSON.parse(event.data));
  ws.onclose = () => { latency.textContent = "disconnected; retrying…"; setTimeout(connect, 1000); };
}

function send() {
  if (!ws || ws.readyState !== WebSocket.OPEN) return;
  const id = nextId++;
  sent.set(id, performance.now());
  ws.send(JSON.stringify({text: box.value, k: 3, model: select.value || undefined, id: id}));
}

function show(msg) {
  if (msg.error) { latency.textContent = msg.error; latency.className = "error"; return; }
  if (msg.id !== nextId - 1) return;             // an older text's answer: a newer one comes
  const t0 = sent.get(msg.id);
  sent.clear();
  lastWords = msg.suggestions.map((s) => s.word);
  buttons.forEach((b, i) => { b.textContent = lastWords[i] || ""; });
  const roundTrip = t0 === undefined ? "" : `, round trip ${(performance.now() - t0).toFixed(1)} ms`;
  latency.className = "";
  latency.textContent = `${msg.model}: server ${msg.ms.toFixed(1)} ms${roundTrip}`;
}

function accept(word) {
  // replace the word being typed when the suggestion completes it, else add the word
  const text = box.value;
  const partial = text.match(/[\p{L}\p{N}_']*$/u)[0];
  let head = text;
  if (partial && word !== partial && word.toLowerCase().startsWith(partial.toLowerCase())) {
    head = text.slice(0, text.length - partial.length);
  } else if (text && !/\s$/.test(text)) {
    head = text + " ";
  }
  box.value = head + word + " ";
  box.focus();
  box.setSelectionRange(box.value.length, box.value.length);
  send();
}

box.addEventListener("input", send);
box.addEventListener("keydown", (event) => {
  if (event.key === "Tab" && !event.shiftKey && lastWords.length) {
    event.preventDefault();
    accept(lastWords[0]);
  }
});
buttons.forEach((b) => b.addEventListener("click", () => { if (b.textContent) accept(b.textContent); }));
select.addEventListener("change", send);

fetch("/v1/models").then((r) => r.json()).then((info) => {
  for (const m of info.models) {
    const opt = document.createElement("option");
    opt.value = m.name;
    opt.textContent = `${m.name} (${m.architecture}, ${m.level})`;
    select.appendChild(opt);
  }
  select.value = info.default;
  connect();
});
