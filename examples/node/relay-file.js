#!/usr/bin/env node
// Relays a WebM/Opus recording to Soriflow in MediaRecorder-sized chunks at real-time pace, the way
// a backend forwards what a browser records, and prints every message as one JSON line.
//
//   node relay-file.js recording.webm --url ws://127.0.0.1:8080/v1/live [--language en]
//                      [--chunk-ms 250] [--bytes-per-chunk N] [--fast]
// The token is read from SORIFLOW_AUTH_TOKEN. Exit code 0 when the stream closed normally (1000).
"use strict";

const fs = require("fs");
const { openCaptionStream } = require("./relay");

function parse(argv) {
  const args = { url: "ws://127.0.0.1:8080/v1/live", language: "", chunkMs: 250, bytesPerChunk: 0, fast: false };
  const rest = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--url") args.url = argv[++i];
    else if (arg === "--language") args.language = argv[++i];
    else if (arg === "--chunk-ms") args.chunkMs = Number(argv[++i]);
    else if (arg === "--bytes-per-chunk") args.bytesPerChunk = Number(argv[++i]);
    else if (arg === "--fast") args.fast = true;
    else rest.push(arg);
  }
  if (rest.length !== 1) {
    console.error("usage: relay-file.js FILE.webm [--url URL] [--language xx] [--chunk-ms 250] [--fast]");
    process.exit(2);
  }
  args.file = rest[0];
  return args;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const args = parse(process.argv.slice(2));
  const data = fs.readFileSync(args.file);
  // Without a size, a chunk is what 32 kb/s Opus (MediaRecorder's usual rate) makes in chunk-ms.
  const size = args.bytesPerChunk || Math.max(256, Math.round((32000 / 8) * (args.chunkMs / 1000)));
  const stream = await openCaptionStream(args.url, {
    token: process.env.SORIFLOW_AUTH_TOKEN,
    config: { language: args.language, word_timestamps: true },
    onMessage: (message) => process.stdout.write(JSON.stringify(message) + "\n"),
  });
  for (let offset = 0; offset < data.length; offset += size) {
    await stream.send(data.subarray(offset, offset + size));
    if (!args.fast) await sleep(args.chunkMs);
  }
  stream.end();
  const { code, reason } = await stream.closed;
  process.stderr.write(`closed ${code} ${reason}\n`);
  process.exit(code === 1000 ? 0 : 1);
}

main().catch((error) => {
  console.error(error.message || error);
  process.exit(1);
});
