// The website chat widget: one visitor's side of a conversation over /v1/webchat/{key}/ws.
"use strict";

const key = location.pathname.split("/").filter(Boolean).pop();
// The owner's own "Try it" chat comes with its visitor token (#preview=…), kept apart.
const preview = new URLSearchParams(location.hash.slice(1)).get("preview");
const storageKey = `moltbot.webchat.${key}${preview ? ".preview" : ""}`;
const saved = JSON.parse(localStorage.getItem(storageKey) || "{}");
if (preview) saved.visitor_token = preview;
let lastSeq = 0; // resume point: the socket replays from lastSeq + 1 after a drop
let socket = null;
let retry = 500;
const shown = new Set();
const $ = (id) => document.getElementById(id);

function setStatus(text) {
  $("chat-status").textContent = text;
}

function render(message) {
  if (shown.has(message.message_id)) return;
  shown.add(message.message_id);
  const item = document.createElement("li");
  item.className = message.from;
  item.id = `m-${message.message_id}`;
  item.append(document.createTextNode(message.text));
  const meta = document.createElement("small");
  meta.textContent = `${message.sender_name} · ${new Date(message.sent_at).toLocaleTimeString()}`;
  item.append(meta);
  $("chat-messages").append(item);
  item.scrollIntoView({ block: "end" });
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/v1/webchat/${key}/ws`);
  socket.onopen = () => {
    socket.send(JSON.stringify({ op: "hello", visitor_token: saved.visitor_token, since: lastSeq + 1 }));
  };
  socket.onmessage = (frame) => {
    const message = JSON.parse(frame.data);
    if (message.op === "welcome") {
      saved.visitor_token = message.visitor_token;
      localStorage.setItem(storageKey, JSON.stringify(saved));
      retry = 500;
      setStatus("Online");
    } else if (message.op === "message") {
      lastSeq = message.seq;
      if (message.message.from === "business") document.querySelectorAll(".typing").forEach((t) => t.remove());
      render(message.message);
    } else if (message.op === "typing") {
      let bubble = document.getElementById(`typing-${message.run_id}`);
      if (!bubble) {
        bubble = document.createElement("li");
        bubble.className = "business typing";
        bubble.id = `typing-${message.run_id}`;
        $("chat-messages").append(bubble);
      }
      bubble.textContent += message.delta;
      bubble.scrollIntoView({ block: "end" });
    } else if (message.op === "error") {
      setStatus(message.detail);
    }
  };
  socket.onclose = (close) => {
    if (close.code === 4404) {
      setStatus("This chat is not available.");
      return;
    }
    setStatus("Reconnecting…");
    setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  };
}

$("chat-form").addEventListener("submit", (submit) => {
  submit.preventDefault();
  const input = $("chat-text");
  const text = input.value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  socket.send(JSON.stringify({ op: "send", text, client_message_id: crypto.randomUUID() }));
  input.value = "";
});

connect();
