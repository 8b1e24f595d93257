// Live captions: MediaRecorder (WebM/Opus, a chunk every 250 ms) -> WebSocket /v1/live -> captions.
// The protocol is described in docs/live.md.
"use strict";

const SUBPROTOCOL = "soriflow.live.v1";
const CHUNK_MS = 250;
const $ = (id) => document.getElementById(id);
let session = null;

function status(text, error = false) {
  $("status").textContent = text;
  $("status").className = error ? "error" : "";
}

function base64url(text) {
  const bytes = new TextEncoder().encode(text);
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function clock(ms) {
  const s = ms / 1000;
  return `${Math.floor(s / 60)}:${(s % 60).toFixed(1).padStart(4, "0")}`;
}

function token() {
  return $("token").value || localStorage.getItem("soriflow-token") || "";
}

async function loadLanguages() {
  const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
  try {
    const response = await fetch("v1/models", { headers });
    if (!response.ok) return;
    const info = await response.json();
    const select = $("language");
    select.innerHTML = "";
    const languages = info.languages.length > 1 ? ["", ...info.languages] : info.languages;
    for (const code of languages) {
      const option = document.createElement("option");
      option.value = code;
      option.textContent = code || "detect";
      select.append(option);
    }
    const preferred = (navigator.language || "en").split("-")[0];
    if (languages.includes(preferred)) select.value = preferred;
    document.title = `Soriflow live captions (${info.model})`;
  } catch (e) {
    /* the picker keeps "detect" */
  }
}

function showInterim(message) {
  const stable = message.stable_text;
  $("interim").querySelector(".stable").textContent = stable;
  $("interim").querySelector(".tentative").textContent = message.text.slice(stable.length).trim();
}

function addFinal(message) {
  const item = document.createElement("li");
  item.className = "final";
  item.dataset.startMs = message.start_ms;
  item.dataset.endMs = message.end_ms;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = `${clock(message.start_ms)}–${clock(message.end_ms)}`;
  const text = document.createElement("span");
  text.className = "text";
  text.textContent = message.text;
  item.append(time, text);
  $("finals").append(item);
  showInterim({ text: "", stable_text: "" });
}

async function start() {
  let media;
  try {
    media = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    status(`No microphone: ${e.message}`, true);
    return;
  }
  const url = `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}${location.pathname.replace(/[^/]*$/, "")}v1/live`;
  const protocols = [SUBPROTOCOL];
  if (token()) protocols.push(`soriflow.bearer.${base64url(token())}`);
  const ws = new WebSocket(url, protocols);
  const recorder = new MediaRecorder(media, { mimeType: "audio/webm;codecs=opus" });
  session = { ws, recorder, media };
  let failed = false;
  ws.onopen = () => {
    ws.send(JSON.stringify({
      type: "config",
      encoding: "webm-opus",
      language: $("language").value,
      interim_results: true,
      word_timestamps: true,
    }));
    recorder.ondataavailable = (event) => {
      if (event.data.size && ws.readyState === WebSocket.OPEN) ws.send(event.data);
    };
    recorder.onstop = () => {
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
    };
    recorder.start(CHUNK_MS);
    status("Listening…");
  };
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "interim") showInterim(message);
    else if (message.type === "final") addFinal(message);
    else if (message.type === "error") {
      failed = true;
      status(`Error ${message.close_code} (${message.code}): ${message.message}`, true);
    }
  };
  ws.onclose = (event) => {
    if (!failed && event.code !== 1000) status(`Connection closed (${event.code}) ${event.reason}`, event.code !== 1000);
    else if (!failed) status("Stopped.");
    stopMedia();
  };
  $("mic").classList.add("on");
  $("mic").setAttribute("aria-pressed", "true");
  $("mic").textContent = "■ Stop";
}

function stopMedia() {
  if (!session) return;
  if (session.recorder.state !== "inactive") session.recorder.stop();
  session.media.getTracks().forEach((track) => track.stop());
  $("mic").classList.remove("on");
  $("mic").setAttribute("aria-pressed", "false");
  $("mic").textContent = "● Start";
}

function stop() {
  if (!session) return;
  status("Finishing…");
  stopMedia();  // the recorder's last chunk, then {"type": "end"}; the server closes after the last final
}

$("mic").addEventListener("click", () => {
  if (session && session.ws.readyState <= WebSocket.OPEN && session.recorder.state !== "inactive") stop();
  else start();
});
$("token").addEventListener("change", () => {
  localStorage.setItem("soriflow-token", $("token").value);
  loadLanguages();
});
loadLanguages();
