#!/usr/bin/env python3
"""A scripted model for the tests against the real agent CLIs: it lets a real
CLI run a whole task with no model provider and no internet. It speaks the
three wire protocols the CLIs use, each streamed the way its CLI expects:

- OpenAI Chat Completions, `POST …/chat/completions` (opencode, Hermes);
- OpenAI Responses, `POST …/responses` (codex);
- Anthropic Messages, `POST …/messages` (Claude Code), with
  `POST …/messages/count_tokens` answered too.

Every answer is decided by the request alone, one turn at a time:

- a request that offers a file-writing tool (opencode's `write`, Claude
  Code's `Write`, Hermes' `write_file`, codex's `apply_patch`, else codex's
  shell tool) and holds no tool result yet gets a call of that tool creating
  FILE (a relative path, made absolute where the tool wants it) with
  CONTENT;
- a request that holds a tool result gets a final text message (DONE),
  except, with --follow-up-file F, one whose last user message came after
  the last tool result (a later turn of a resumed session: a follow-up),
  which gets a call writing F, then DONE once that call's result is back;
- any other request (a session title, a summary) gets a short text.

Every answer carries usage (input and output tokens). Answers are streamed
as server-sent events when the request asks for a stream, else sent as one
JSON object. `GET …/models` lists MODEL; a WebSocket upgrade gets 404 (so
codex falls back to HTTP); any other GET or HEAD gets `{}`.

--slow SECONDS spreads each answer's deltas over SECONDS (one small delta
about every 5 s), so that a CLI printing deltas shows activity.
--rate-limit N answers the first N model requests with HTTP 429, a
`retry-after: 30` header and the protocol's own error body.
--follow-up-file F: as above; without it a resumed session's turn gets
DONE at once, which changes no file.
--require-key KEY answers a model request that does not carry KEY (as a
bearer token or x-api-key) with HTTP 401 and the protocol's own error body.

Each request is logged as one JSON line to --log: its path, protocol,
model, how many messages (input items), their roles, the text of the last
user message and of the user messages before it (so that a test can tell
a follow-up's request by its text and see that a resumed session carried
its first conversation), the tools offered, the answer, and the
Authorization and x-api-key headers.

Usage: scripted-model.py --port-file F --log L [--model M] [--file FILE]
       [--content CONTENT] [--follow-up-file F] [--slow SECONDS]
       [--rate-limit N] [--require-key KEY]
It listens on 127.0.0.1 on a free port and writes that port to F once it
accepts connections. Python's standard library only.
"""

import argparse
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DONE = "Done: the file is written."
USAGE_IN = 10
USAGE_OUT = 5


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--log", required=True)
    p.add_argument("--model", default="scripted-writer")
    p.add_argument("--file", default="hello.txt")
    p.add_argument("--content", default="hello from the scripted model\n")
    p.add_argument("--follow-up-file", metavar="FILE")
    p.add_argument("--slow", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--rate-limit", type=int, default=0, metavar="N")
    p.add_argument("--require-key", metavar="KEY")
    return p.parse_args()


ARGS = parse_args()
LOCK = threading.Lock()
COUNT = {"calls": 0}


def log(entry):
    with LOCK, open(ARGS.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")


def next_call():
    with LOCK:
        COUNT["calls"] += 1
        return COUNT["calls"]


def pieces(text, default):
    """`text` cut into the pieces streamed one delta each: `default` pieces,
    or with --slow one about every 5 s."""
    n = max(1, round(ARGS.slow / 5)) if ARGS.slow > 0 else default
    n = max(1, min(n, len(text)))
    size = -(-len(text) // n)
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def pause(count):
    """The wait after each of `count` slow deltas."""
    if ARGS.slow > 0:
        time.sleep(ARGS.slow / max(count, 1))


# --- What each protocol's request holds --------------------------------------


def text_of(content):
    """The text of a message's content: a string or a list of parts."""
    if isinstance(content, str):
        return content
    out = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") in ("text", "input_text", "output_text"):
            out.append(part.get("text") or "")
    return "\n".join(out)


def messages_of(protocol, body):
    """(role, text, is_tool_result) for each message or input item."""
    out = []
    if protocol == "responses":
        items = body.get("input")
        if isinstance(items, str):
            items = [{"role": "user", "content": items}]
        for it in items or []:
            kind = it.get("type") or "message"
            if kind == "message":
                out.append((it.get("role"), text_of(it.get("content")), False))
            else:
                out.append((kind, "", kind.endswith("_output")))
        return out
    for m in body.get("messages") or []:
        role = m.get("role")
        content = m.get("content")
        if protocol == "anthropic" and isinstance(content, list):
            if any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content):
                out.append(("tool_result", "", True))
                continue
        out.append((role, text_of(content), role == "tool"))
    return out


def tool_names(body):
    names = []
    for t in body.get("tools") or []:
        name = (t.get("function") or {}).get("name") or t.get("name")
        if name:
            names.append(name)
    return names


def system_text(protocol, body):
    if protocol == "anthropic":
        return text_of(body.get("system"))
    if protocol == "responses":
        return body.get("instructions") or ""
    return "\n".join(text_of(m.get("content")) for m in body.get("messages") or [] if m.get("role") == "system")


def workdir(protocol, body):
    """The working directory the CLI told the model, if any."""
    texts = [system_text(protocol, body)] + [t for _, t, _ in messages_of(protocol, body)]
    for t in texts:
        m = re.search(r"(?:Working directory|Primary working directory|<cwd>)\s*:?\s*(/[^\s<]+)", t or "")
        if m:
            return m.group(1)
    return None


def file_to_write(msgs):
    """The file this turn of the conversation `msgs` writes, None when it
    is answered with text: FILE on the first turn (no tool result yet);
    with --follow-up-file, that file on a later turn (a user message after
    the last tool result)."""
    results = [i for i, (_, _, r) in enumerate(msgs) if r]
    if not results:
        return ARGS.file
    users = [i for i, (role, _, _) in enumerate(msgs) if role == "user"]
    if ARGS.follow_up_file and users and users[-1] > results[-1]:
        return ARGS.follow_up_file
    return None


def decide(protocol, body):
    """What to answer: ("tool", name, arguments as a JSON text or, for a
    freeform tool, the raw input) or ("text", text)."""
    names = tool_names(body)
    rel = file_to_write(messages_of(protocol, body))
    if rel is None:
        return ("text", DONE)
    where = workdir(protocol, body)
    absolute = os.path.join(where, rel) if where else os.path.abspath(rel)
    if "write" in names:  # opencode
        return ("tool", "write", json.dumps({"filePath": rel, "content": ARGS.content}))
    if "Write" in names:  # Claude Code: an absolute path
        return ("tool", "Write", json.dumps({"file_path": absolute, "content": ARGS.content}))
    if "write_file" in names:  # Hermes
        return ("tool", "write_file", json.dumps({"path": rel, "content": ARGS.content}))
    if "apply_patch" in names:  # codex
        lines = "".join("+" + ln + "\n" for ln in ARGS.content.splitlines())
        patch = f"*** Begin Patch\n*** Add File: {rel}\n{lines}*** End Patch\n"
        tool = next(t for t in body.get("tools") if (t.get("name") or (t.get("function") or {}).get("name")) == "apply_patch")
        if tool.get("type") == "custom":
            return ("custom", "apply_patch", patch)
        return ("tool", "apply_patch", json.dumps({"input": patch}))
    for shell in ("shell", "shell_command", "exec_command"):  # codex without apply_patch
        if shell in names:
            script = f"printf '%s' {shell_quote(ARGS.content)} > {shell_quote(rel)}"
            key = {"shell": "command", "shell_command": "command", "exec_command": "cmd"}[shell]
            value = ["bash", "-lc", script] if shell == "shell" else script
            return ("tool", shell, json.dumps({key: value}))
    return ("text", "Scripted answer")


def shell_quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


# --- The server ---------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet: requests go to --log
        pass

    def send_json(self, code, obj, headers=()):
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_HEAD(self):
        self.send_json(200, {})

    def do_GET(self):
        path = self.path.split("?")[0].rstrip("/")
        if self.headers.get("Upgrade"):  # codex tries WebSockets first: HTTP only here
            self.send_json(404, {"error": {"message": "no WebSocket here"}})
        elif path.endswith("/models"):
            self.send_json(
                200,
                {
                    "object": "list",
                    "data": [{"id": ARGS.model, "object": "model", "owned_by": "scripted", "type": "model",
                              "display_name": ARGS.model}],
                },
            )
        else:
            self.send_json(200, {})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self.send_json(400, {"error": {"message": "body is not JSON"}})
            return
        path = self.path.split("?")[0].rstrip("/")
        auth = {
            "authorization": self.headers.get("Authorization"),
            "x_api_key": self.headers.get("x-api-key"),
        }
        if path.endswith("/messages/count_tokens"):
            log({"path": self.path, "protocol": "anthropic", "count_tokens": True, **auth})
            self.send_json(200, {"input_tokens": USAGE_IN})
            return
        if path.endswith("/chat/completions"):
            protocol = "chat"
        elif path.endswith("/responses"):
            protocol = "responses"
        elif path.endswith("/messages"):
            protocol = "anthropic"
        else:
            log({"path": self.path, "error": "no such route", **auth})
            self.send_json(404, {"error": {"message": f"no route {self.path}"}})
            return
        n = next_call()
        msgs = messages_of(protocol, body)
        entry = {
            "call": n,
            "path": self.path,
            "protocol": protocol,
            "model": body.get("model"),
            "stream": bool(body.get("stream")),
            "messages": len(msgs),
            "roles": [r for r, _, _ in msgs],
            "last_user_text": ([t for r, t, _ in msgs if r == "user"] or [""])[-1],
            "earlier_user_texts": [t for r, t, _ in msgs if r == "user"][:-1],
            "tools": tool_names(body),
            **auth,
        }
        keys = (auth["authorization"], auth["x_api_key"])
        if ARGS.require_key and f"Bearer {ARGS.require_key}" not in keys and ARGS.require_key not in keys:
            entry["answer"] = ["401"]
            log(entry)
            self.unauthorized(protocol)
            return
        if n <= ARGS.rate_limit:
            entry["answer"] = ["429"]
            log(entry)
            self.rate_limited(protocol)
            return
        answer = decide(protocol, body)
        entry["answer"] = list(answer)
        log(entry)
        model = body.get("model") or ARGS.model
        stream = bool(body.get("stream"))
        if protocol == "chat":
            (self.chat_stream if stream else self.chat_whole)(f"chatcmpl-scripted-{n}", model, answer)
        elif protocol == "responses":
            self.responses_api(f"resp_scripted_{n}", model, answer, stream)
        else:
            self.anthropic(f"msg_scripted_{n}", model, answer, stream)

    def unauthorized(self, protocol):
        if protocol == "anthropic":
            body = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
        else:
            body = {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error",
                              "code": "invalid_api_key", "param": None}}
        self.send_json(401, body)

    def rate_limited(self, protocol):
        text = "Rate limit reached for requests (scripted). Please try again in 30s."
        if protocol == "anthropic":
            body = {"type": "error", "error": {"type": "rate_limit_error", "message": text}}
        else:
            body = {"error": {"message": text, "type": "rate_limit_exceeded", "code": "rate_limit_exceeded",
                              "param": None}}
        self.send_json(429, body, [("retry-after", "30")])

    def start_sse(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, obj, event=None):
        head = f"event: {event}\n".encode() if event else b""
        self.wfile.write(head + b"data: " + json.dumps(obj).encode() + b"\n\n")
        self.wfile.flush()

    # Chat Completions ------------------------------------------------------------

    def chat_whole(self, cid, model, answer):
        if answer[0] == "tool":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": f"call_{cid}", "type": "function", "function": {"name": answer[1], "arguments": answer[2]}}
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
                "usage": {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT,
                          "total_tokens": USAGE_IN + USAGE_OUT},
            },
        )

    def chat_stream(self, cid, model, answer):
        self.start_sse()

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
            self.sse(obj)

        chunk({"role": "assistant", "content": ""})
        if answer[0] == "tool":
            parts = pieces(answer[2], 2)
            for i, part in enumerate(parts):
                call = {"index": 0, "function": {"arguments": part}}
                if i == 0:
                    call.update({"id": f"call_{cid}", "type": "function"})
                    call["function"]["name"] = answer[1]
                chunk({"tool_calls": [call]})
                pause(len(parts))
            finish = "tool_calls"
        else:
            parts = pieces(answer[1], len(answer[1].split(" ")))
            for part in parts:
                chunk({"content": part})
                pause(len(parts))
            finish = "stop"
        chunk({}, finish, {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT,
                           "total_tokens": USAGE_IN + USAGE_OUT})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()

    # Responses (codex) -----------------------------------------------------------

    def responses_api(self, rid, model, answer, stream):
        usage = {
            "input_tokens": USAGE_IN,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": USAGE_OUT,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": USAGE_IN + USAGE_OUT,
        }
        if answer[0] == "tool":
            item = {"type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}", "name": answer[1],
                    "arguments": answer[2], "status": "completed"}
            field, text = "arguments", answer[2]
        elif answer[0] == "custom":
            item = {"type": "custom_tool_call", "id": f"ctc_{rid}", "call_id": f"call_{rid}", "name": answer[1],
                    "input": answer[2], "status": "completed"}
            field, text = "input", answer[2]
        else:
            item = {"type": "message", "id": f"msg_{rid}", "role": "assistant", "status": "completed",
                    "content": [{"type": "output_text", "text": answer[1], "annotations": []}]}
            field, text = None, answer[1]
        base = {"id": rid, "object": "response", "created_at": int(time.time()), "model": model}
        done = dict(base, status="completed", output=[item], usage=usage)
        if not stream:
            self.send_json(200, done)
            return
        self.start_sse()
        seq = iter(range(1 << 30))

        def ev(kind, **fields):
            self.sse(dict(type=kind, sequence_number=next(seq), **fields), kind)

        ev("response.created", response=dict(base, status="in_progress", output=[]))
        empty = dict(item)
        if field:
            empty[field] = ""
        else:
            empty["content"] = []
            empty["status"] = "in_progress"
        ev("response.output_item.added", output_index=0, item=empty)
        parts = pieces(text, 3)
        if field is None:
            ev("response.content_part.added", item_id=item["id"], output_index=0, content_index=0,
               part={"type": "output_text", "text": "", "annotations": []})
        for part in parts:
            if field is None:
                ev("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0, delta=part)
            elif field == "arguments":
                ev("response.function_call_arguments.delta", item_id=item["id"], output_index=0, delta=part)
            else:
                ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=0, delta=part)
            pause(len(parts))
        if field is None:
            ev("response.output_text.done", item_id=item["id"], output_index=0, content_index=0, text=text)
            ev("response.content_part.done", item_id=item["id"], output_index=0, content_index=0,
               part=item["content"][0])
        ev("response.output_item.done", output_index=0, item=item)
        ev("response.completed", response=done)

    # Anthropic Messages (Claude Code) --------------------------------------------

    def anthropic(self, mid, model, answer, stream):
        if answer[0] == "text":
            block = {"type": "text", "text": answer[1]}
            stop = "end_turn"
        else:
            block = {"type": "tool_use", "id": f"toolu_{mid}", "name": answer[1], "input": json.loads(answer[2])}
            stop = "tool_use"
        usage = {"input_tokens": USAGE_IN, "output_tokens": USAGE_OUT, "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": 0}
        message = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [block],
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
        if not stream:
            self.send_json(200, message)
            return
        self.start_sse()
        self.sse({"type": "message_start", "message": dict(message, content=[], stop_reason=None,
                                                           usage=dict(usage, output_tokens=1))}, "message_start")
        if answer[0] == "text":
            start = {"type": "text", "text": ""}
            parts = [("text_delta", "text", p) for p in pieces(answer[1], len(answer[1].split(" ")))]
        else:
            start = dict(block, input={})
            parts = [("input_json_delta", "partial_json", p) for p in pieces(answer[2], 2)]
        self.sse({"type": "content_block_start", "index": 0, "content_block": start}, "content_block_start")
        self.sse({"type": "ping"}, "ping")
        for kind, key, part in parts:
            self.sse({"type": "content_block_delta", "index": 0, "delta": {"type": kind, key: part}},
                     "content_block_delta")
            pause(len(parts))
        self.sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        self.sse({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                  "usage": {"output_tokens": USAGE_OUT}}, "message_delta")
        self.sse({"type": "message_stop"}, "message_stop")


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
