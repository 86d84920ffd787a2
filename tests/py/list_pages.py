"""Page through `tools/list` of an MCP server with the official MCP Python SDK, one request
per page, following `nextCursor` until there is none.

Usage: list_pages.py URL MODE
MODE is the SDK's negotiation: `legacy` (2025-11-25 initialize handshake) or `auto` (the
newest protocol the server offers). Prints one JSON line:
{"ok": bool, "protocol_version": str, "pages": [[tool names of page 1], ...], "error": str?}.
Run with the Python of the peers' MCP venv (PEERS_CACHE/mcp/venv, made by peers/mcp/client.sh).
"""

from __future__ import annotations

import json
import sys

import anyio
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

# A listing that never ends must fail the test, not hang it.
MAX_PAGES = 10_000


async def run(url: str, mode: str) -> dict:
    out: dict = {"ok": False, "protocol_version": None, "pages": []}
    try:
        async with Client(streamable_http_client(url), mode=mode) as client:
            out["protocol_version"] = client.protocol_version
            cursor = None
            while len(out["pages"]) < MAX_PAGES:
                page = await client.list_tools(cursor=cursor)
                out["pages"].append([t.name for t in page.tools])
                cursor = page.next_cursor
                if not cursor:
                    out["ok"] = True
                    break
    except BaseException as e:  # noqa: BLE001 - report anything (incl. ExceptionGroup) as JSON
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        out["error"] = f"{type(inner).__name__}: {inner}"
    return out


def main() -> None:
    url, mode = sys.argv[1], sys.argv[2]
    print(json.dumps(anyio.run(run, url, mode)), flush=True)


if __name__ == "__main__":
    main()
