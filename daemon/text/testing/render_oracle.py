#!/usr/bin/env python3
"""Reference renderer for the chat-template tests: Python jinja2 configured the way HF
transformers' apply_chat_template renders (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, the loopcontrols extension, a {% generation %} block, tojson without HTML
escaping and with ensure_ascii off, raise_exception and strftime_now as globals; tools and
documents None when absent).

Usage: render_oracle.py CASE_DIR TEMPLATE_DIR
Prints one JSON object {case_file_name: {"ok": true, "output": str} | {"ok": false,
"error": str, "raised": bool}} for every *.json case in CASE_DIR. A case is
{"template": FILE_IN_TEMPLATE_DIR | "template_source": STR, "input": {messages, ...}}.
"""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class TemplateRaised(Exception):
    pass


class GenerationBlock(Extension):
    """HF's AssistantTracker, minus the mask bookkeeping: {% generation %} renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def raise_exception(message):
    raise TemplateRaised(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def strftime_now(fmt):
    return datetime.now().strftime(fmt)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(env, source, inp):
    kwargs = dict(inp)
    messages = kwargs.pop("messages")
    tools = kwargs.pop("tools", None)
    documents = kwargs.pop("documents", None)
    add_generation_prompt = kwargs.pop("add_generation_prompt", False)
    kwargs.setdefault("bos_token", "")
    kwargs.setdefault("eos_token", "")
    template = env.from_string(source)
    return template.render(messages=messages, tools=tools, documents=documents,
                           add_generation_prompt=add_generation_prompt, **kwargs)


def main():
    case_dir, template_dir = sys.argv[1], sys.argv[2]
    env = make_env()
    results = {}
    for name in sorted(os.listdir(case_dir)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(case_dir, name), encoding="utf-8") as f:
            case = json.load(f)
        if "template_source" in case:
            source = case["template_source"]
        else:
            with open(os.path.join(template_dir, case["template"]), encoding="utf-8", newline="") as f:
                source = f.read()
        try:
            results[name] = {"ok": True, "output": render(env, source, case["input"])}
        except TemplateRaised as e:
            results[name] = {"ok": False, "raised": True, "error": str(e)}
        except Exception as e:  # any jinja2 error: the C++ engine must fail too
            results[name] = {"ok": False, "raised": False, "error": f"{type(e).__name__}: {e}"}
    json.dump(results, sys.stdout, ensure_ascii=False, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
