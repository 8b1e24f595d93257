// A relay from a backend to Soriflow's live captions (protocol: docs/live.md).
//
// A captioning app's browser records with MediaRecorder (WebM/Opus chunks every ~250 ms) and sends
// the chunks to its own backend (Express + a WebSocket, Socket.IO, ...). The backend opens one
// Soriflow stream per recording with `openCaptionStream`, forwards each chunk with `send`, and
// passes the interim and final captions back to its browser from the `onMessage` callback. The
// bearer token stays on the server: browsers never see it.
"use strict";

const WebSocket = require("ws");

const SUBPROTOCOL = "soriflow.live.v1";

/**
 * Opens one caption stream.
 * @param {string} url e.g. "ws://127.0.0.1:8080/v1/live"
 * @param {object} options { token, config, onMessage(message) }
 * @returns {Promise<{send(chunk: Buffer): Promise<void>, end(): void, closed: Promise<{code, reason}>}>}
 */
function openCaptionStream(url, { token, config, onMessage = () => {} } = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const ws = new WebSocket(url, [SUBPROTOCOL], { headers });
  const closed = new Promise((resolve) => {
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
  });
  ws.on("message", (data, isBinary) => {
    if (!isBinary) onMessage(JSON.parse(data.toString()));
  });
  return new Promise((resolve, reject) => {
    ws.once("error", reject);
    ws.once("open", () => {
      ws.send(JSON.stringify({ type: "config", encoding: "webm-opus", interim_results: true, ...config }));
      resolve({
        // Resolves once the chunk is handed to the socket: awaiting it keeps a fast producer from
        // queueing unboundedly in this process (the server applies TCP backpressure).
        send: (chunk) =>
          new Promise((ok, fail) => {
            if (ws.readyState !== WebSocket.OPEN) return ok();
            ws.send(chunk, { binary: true }, (error) => (error ? fail(error) : ok()));
          }),
        end: () => {
          if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));
        },
        closed,
      });
    });
  });
}

module.exports = { openCaptionStream, SUBPROTOCOL };
