#!/usr/bin/env python3
"""An OpenAI-compatible chat-completions stand-in for tests/e2e_fabstir.sh: POST
/v1/chat/completions with "stream": true answers the last user message back word by word as
server-sent-event deltas, then finish_reason "stop", usage and [DONE]. Prints
"openai_standin listen=HOST:PORT" once it listens (port 0 = the OS picks)."""
import json
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_POST(self):
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        if body.get("stream") is not True:
            self.send_error(400)
            return
        prompt = body["messages"][-1]["content"]
        print("request", flush=True)  # counted by the script (nothing of the prompt)
        words = re.findall(r"\S+\s*|^\s+", prompt)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()

        def event(obj):
            data = obj if isinstance(obj, str) else json.dumps(obj)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        for w in words:
            event({"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]})
        event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        event({"choices": [], "usage": {"prompt_tokens": len(words), "completion_tokens": len(words)}})
        event("[DONE]")
        self.close_connection = True


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 0), Handler)
print(f"openai_standin listen=127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
