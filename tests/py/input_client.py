"""The official MCP Python SDK calling a tool whose upstream asks its caller for input.

Usage: input_client.py URL --token T --mode auto|legacy TOOL JSON_ARGS [--sampled TEXT]
Declares sampling and elicitation {form, url}. Sampling is answered with TEXT, a form
elicitation is accepted with {"name": "Ada", "check": true, "email": "ada@example.com"}, a URL
elicitation is accepted (nothing is opened). In `auto` mode the SDK negotiates 2026-07-28 and
answers `input_required` rounds through the same callbacks; in `legacy` mode it answers
server→client requests. Prints one JSON line:
{"ok": bool, "protocol_version": str, "asked": ["sampling"|"form"|"url", ...],
 "result": {CallToolResult}?, "error": {...}?}
Run with the Python of the peers' MCP venv (PEERS_CACHE/mcp/venv, made by peers/mcp/client.sh).
"""

from __future__ import annotations

import argparse
import json

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError


def dump(model):
    if hasattr(model, "model_dump"):
        return model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return model


async def run(a: argparse.Namespace) -> dict:
    out: dict = {"ok": False, "asked": []}

    async def on_sample(ctx, params) -> types.CreateMessageResult:
        out["asked"].append("sampling")
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=a.sampled), model="test-model"
        )

    async def on_elicit(ctx, params) -> types.ElicitResult:
        mode = getattr(params, "mode", None) or "form"
        out["asked"].append(mode)
        if mode == "form":
            return types.ElicitResult(action="accept", content={"name": "Ada", "check": True, "email": "ada@example.com"})
        return types.ElicitResult(action="accept")

    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {a.token}"}, timeout=httpx2.Timeout(30.0, read=60.0))
    try:
        async with http:
            transport = streamable_http_client(a.url, http_client=http)
            async with Client(transport, mode=a.mode, sampling_callback=on_sample, elicitation_callback=on_elicit) as client:
                out["protocol_version"] = client.protocol_version
                try:
                    result = await client.call_tool(a.tool, json.loads(a.arguments))
                    out["result"] = dump(result)
                    out["ok"] = not getattr(result, "is_error", False)
                except MCPError as e:
                    out["error"] = dump(e.error)
    except BaseException as e:  # noqa: BLE001 - report anything (incl. ExceptionGroup) as JSON
        inner = e
        while isinstance(inner, BaseExceptionGroup) and inner.exceptions:
            inner = inner.exceptions[0]
        out["error"] = {"message": f"{type(inner).__name__}: {inner}"}
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("--token", required=True)
    p.add_argument("--mode", choices=["auto", "legacy"], default="auto")
    p.add_argument("--sampled", default="sampled text")
    p.add_argument("tool")
    p.add_argument("arguments")
    a = p.parse_args()
    print(json.dumps(anyio.run(run, a)), flush=True)


if __name__ == "__main__":
    main()
