"""Live captions at the edge: a WebSocket in front of the STT service's StreamingRecognize.

Browsers cannot speak native gRPC, and a Node backend relaying a browser's
MediaRecorder chunks should not have to write a bridge. This package is a
small aiohttp process (`soriflow serve live`) that serves one WebSocket
endpoint (`/v1/live`), the captioning page and health checks. Each WebSocket
is exactly one StreamingRecognize call on the STT service: the JSON config
becomes the `streaming_config`, binary frames become `audio_content`, and the
STT results come back as JSON. There is no second recognizer here: the
streaming policy, decoding and limits of the STT service apply unchanged.
The protocol is documented in docs/live.md.

It runs as its own process and Deployment because it scales on open
connections, while the gateway's job workers scale on queue depth.
"""
