#!/usr/bin/env python3
"""A scripted model behind an OpenAI-compatible chat-completions API, for
packaging/tests/real-clis.sh: it lets a real agent CLI run a whole task
with no model provider and no internet.

Every answer is decided by the request alone:

- a request that offers a `write` tool and holds no tool result yet gets a
  call of that tool writing FILE (a relative path) with CONTENT;
- a request that holds a tool result gets a final text message (DONE);
- any other request (a session title, a summary) gets a short text.

Answers are streamed as server-sent events when the request asks for a
stream (`"stream": true`), else sent as one JSON object. `GET /v1/models`
lists MODEL. Each request is logged as one JSON line to --log.

Usage: scripted-model.py --port-file F --log L [--model M] [--file FILE]
       [--content CONTENT]
It listens on 127.0.0.1 on a free port and writes that port to F once it
accepts connections. Python's standard library only.
"""

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DONE = "Done: the file is written."


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--model", default="scripted-writer")
    p.add_argument("--file", default="hello.txt")
    p.add_argument("--content", default="hello from the scripted model\n")
    return p.parse_args()


ARGS = parse_args()
LOG_LOCK = threading.Lock()
CALLS = iter(range(1, 1 << 30))


def log(entry):
    with LOG_LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def tool_names(body):
    names = []
    for t in body.get("tools") or []:
        fn = t.get("function") or {}
        if fn.get("name"):
            names.append(fn["name"])
    return names


def has_tool_result(body):
    return any(m.get("role") == "tool" for m in body.get("messages") or [])


def decide(body):
    """What to answer: ("tool", name, arguments) or ("text", text)."""
    names = tool_names(body)
    if has_tool_result(body):
        return ("text", DONE)
    if "write" in names:
        args = {"filePath": ARGS.file, "content": ARGS.content}
        return ("tool", "write", json.dumps(args))
    return ("text", "Scripted answer")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: requests go to --log
        pass

    def send_json(self, code, obj):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.rstrip("/").endswith("/models"):
            self.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": ARGS.model, "object": "model", "owned_by": "scripted"}],
                },
            )
        else:
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"message": "body is not JSON"}})
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            log({"path": self.path, "error": "no such route"})
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        answer = decide(body)
        n = next(CALLS)
        log(
            {
                "call": n,
                "path": self.path,
                "model": body.get("model"),
                "stream": bool(body.get("stream")),
                "roles": [m.get("role") for m in body.get("messages") or []],
                "tools": tool_names(body),
                "answer": list(answer),
                "authorization": self.headers.get("Authorization"),
            }
        )
        cid = f"chatcmpl-scripted-{n}"
        if body.get("stream"):
            self.stream(cid, body.get("model") or ARGS.model, answer)
        else:
            self.whole(cid, body.get("model") or ARGS.model, answer)

    def whole(self, cid, model, answer):
        if answer[0] == "tool":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{cid}",
                        "type": "function",
                        "function": {"name": answer[1], "arguments": answer[2]},
                    }
                ],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": answer[1]}
            finish = "stop"
        self.send_json(
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
            },
        )

    def stream(self, cid, model, answer):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

        def chunk(delta, finish=None, usage=None):
            obj = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage:
                obj["usage"] = usage
            self.wfile.write(b"data: " + json.dumps(obj).encode() + b"\n\n")
            self.wfile.flush()

        chunk({"role": "assistant", "content": ""})
        if answer[0] == "tool":
            args = answer[2]
            half = len(args) // 2
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": f"call_{cid}",
                            "type": "function",
                            "function": {"name": answer[1], "arguments": args[:half]},
                        }
                    ]
                }
            )
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]})
            finish = "tool_calls"
        else:
            for word in answer[1].split(" "):
                chunk({"content": word + " "})
            finish = "stop"
        chunk({}, finish, {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    tmp = ARGS.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{port}\n")
    os.replace(tmp, ARGS.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
