"""A 2025-11-25 session of the official MCP Python SDK that stays open across a gateway reload.

Usage: reload_listener.py URL TOOL
Connects (legacy sessions), prints `ready`, waits up to 60 s on the same session for
`notifications/tools/list_changed` naming a tool list that contains TOOL, calls TOOL with
{"text": "from the python session"}, and prints one JSON line:
{"ok": bool, "notifications": int, "tools": [...], "text": str, "error": str?}.
Run with the Python of the peers' MCP venv (PEERS_CACHE/mcp/venv, made by peers/mcp/client.sh).
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def run(url: str, tool: str) -> dict:
    out: dict = {"ok": False, "notifications": 0, "tools": [], "text": ""}
    changed = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            return
        d = message.model_dump(by_alias=True, exclude_none=True, mode="json") if hasattr(message, "model_dump") else {}
        if d.get("method") == "notifications/tools/list_changed":
            out["notifications"] += 1
            changed.set()

    async with Client(streamable_http_client(url), mode="legacy", message_handler=on_message) as client:
        print("ready", flush=True)
        with anyio.fail_after(60):
            while True:
                await changed.wait()
                changed = anyio.Event()
                names = [t.name for t in (await client.list_tools()).tools]
                out["tools"] = names
                if tool in names:
                    break
        result = await client.call_tool(tool, {"text": "from the python session"})
        d = result.model_dump(by_alias=True, exclude_none=True, mode="json")
        out["text"] = " ".join(c.get("text", "") for c in d.get("content", []))
        out["ok"] = not d.get("isError", False)
    return out


def main() -> None:
    url, tool = sys.argv[1], sys.argv[2]
    try:
        out = anyio.run(run, url, tool)
    except BaseException as e:  # noqa: BLE001 - reported as JSON
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        out = {"ok": False, "error": f"{type(inner).__name__}: {inner}"}
    print(json.dumps(out), flush=True)
    sys.exit(0 if out.get("ok") else 1)


if __name__ == "__main__":
    main()
