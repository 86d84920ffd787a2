"""A 2025-11-25 session of the official MCP Python SDK that needs the user's consent.

Usage: consent_client.py URL TOKEN TOOL JSON_ARGS
Connects (legacy sessions, elicitation capabilities {form, url} declared), calls TOOL and
expects JSON-RPC error -32042 (URL elicitation required). Prints one line
`{"url": ..., "elicitationId": ...}`, then waits up to 120 s on the same session for
`notifications/elicitation/complete` naming that id, calls TOOL again and prints one JSON line:
{"ok": bool, "completed": bool, "text": str, "error": str?}.
Run with the Python of the peers' MCP venv (PEERS_CACHE/mcp/venv, made by peers/mcp/client.sh).
"""

from __future__ import annotations

import json
import sys

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


async def run(url: str, token: str, tool: str, args: dict) -> dict:
    out: dict = {"ok": False, "completed": False, "text": ""}
    completed: dict = {}
    done = anyio.Event()

    async def on_message(message) -> None:
        if isinstance(message, Exception):
            return
        d = message.model_dump(by_alias=True, exclude_none=True, mode="json") if hasattr(message, "model_dump") else {}
        if d.get("method") == "notifications/elicitation/complete":
            completed[(d.get("params") or {}).get("elicitationId")] = True
            done.set()

    async def on_elicit(ctx, params) -> types.ElicitResult:
        return types.ElicitResult(action="decline")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(30.0, read=60.0))
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", message_handler=on_message, elicitation_callback=on_elicit) as client:
            try:
                await client.call_tool(tool, args)
                out["error"] = "the first call succeeded: no consent was asked"
                return out
            except MCPError as e:
                if e.code != -32042:
                    out["error"] = f"expected -32042, got {e.code}: {e}"
                    return out
                first = (e.data or {}).get("elicitations", [{}])[0]
            print(json.dumps({"url": first.get("url"), "elicitationId": first.get("elicitationId")}), flush=True)
            with anyio.fail_after(120):
                while first.get("elicitationId") not in completed:
                    await done.wait()
                    done = anyio.Event()
            out["completed"] = True
            result = await client.call_tool(tool, args)
            d = result.model_dump(by_alias=True, exclude_none=True, mode="json")
            out["text"] = " ".join(c.get("text", "") for c in d.get("content", []))
            out["ok"] = not d.get("isError", False)
    return out


def main() -> None:
    url, token, tool, args = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    try:
        out = anyio.run(run, url, token, tool, args)
    except BaseException as e:  # noqa: BLE001 - reported as JSON
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        out = {"ok": False, "error": f"{type(inner).__name__}: {inner}"}
    print(json.dumps(out), flush=True)
    sys.exit(0 if out.get("ok") else 1)


if __name__ == "__main__":
    main()
