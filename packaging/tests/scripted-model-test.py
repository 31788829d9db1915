#!/usr/bin/env python3
"""Unit tests of scripted-model.py's decisions (no server started): what
each turn of a conversation is answered with, in each protocol. Run by
agent-sessions.sh before it relies on them: python3 scripted-model-test.py"""

import importlib.util
import json
import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


def load(*args):
    """scripted-model.py as a module, parsing `args` as its command line."""
    argv = sys.argv
    sys.argv = ["scripted-model.py", "--port-file", "/dev/null", "--log", "/dev/null", *args]
    try:
        spec = importlib.util.spec_from_file_location("scripted_model", os.path.join(HERE, "scripted-model.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.argv = argv


CHAT_TOOLS = [{"type": "function", "function": {"name": "write"}}]


def chat(*roles):
    return {"tools": CHAT_TOOLS, "messages": [{"role": r, "content": f"{r} text"} for r in roles]}


class Decisions(unittest.TestCase):
    def test_first_turn_writes_then_the_result_gets_done(self):
        m = load()
        self.assertEqual(m.decide("chat", chat("system", "user"))[:2], ("tool", "write"))
        self.assertEqual(m.decide("chat", chat("system", "user", "assistant", "tool")), ("text", m.DONE))

    def test_a_resumed_turn_gets_done_without_a_follow_up_file(self):
        m = load()
        turn = chat("system", "user", "assistant", "tool", "assistant", "user")
        self.assertEqual(m.decide("chat", turn), ("text", m.DONE))

    def test_a_resumed_turn_writes_the_follow_up_file_then_gets_done(self):
        m = load("--follow-up-file", "followup.txt")
        turn = chat("system", "user", "assistant", "tool", "assistant", "user")
        answer = m.decide("chat", turn)
        self.assertEqual(answer[:2], ("tool", "write"))
        self.assertEqual(json.loads(answer[2])["filePath"], "followup.txt")
        done = chat("system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool")
        self.assertEqual(m.decide("chat", done), ("text", m.DONE))
        # The first turn still writes FILE.
        self.assertEqual(json.loads(m.decide("chat", chat("system", "user"))[2])["filePath"], "hello.txt")

    def test_anthropic_tool_results_are_user_messages_that_are_no_new_turn(self):
        m = load("--follow-up-file", "followup.txt")
        result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "ok"}]}
        body = {"tools": [{"name": "Write"}], "system": "Primary working directory: /w",
                "messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "x"}, result]}
        self.assertEqual(m.decide("anthropic", body), ("text", m.DONE))
        body["messages"] += [{"role": "assistant", "content": "done"}, {"role": "user", "content": "more"}]
        answer = m.decide("anthropic", body)
        self.assertEqual(answer[:2], ("tool", "Write"))
        self.assertEqual(json.loads(answer[2])["file_path"], "/w/followup.txt")

    def test_responses_function_output_items_are_tool_results(self):
        m = load("--follow-up-file", "followup.txt")
        items = [{"type": "message", "role": "user", "content": "go"},
                 {"type": "function_call", "name": "shell"}, {"type": "function_call_output", "output": "ok"}]
        body = {"tools": [{"type": "function", "name": "shell_command"}], "input": items}
        self.assertEqual(m.decide("responses", body), ("text", m.DONE))
        items += [{"type": "message", "role": "user", "content": "more"}]
        answer = m.decide("responses", body)
        self.assertEqual(answer[:2], ("tool", "shell_command"))
        self.assertIn("followup.txt", json.loads(answer[2])["command"])


if __name__ == "__main__":
    unittest.main()
