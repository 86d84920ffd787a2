#!/usr/bin/env bash
# Start IBM ContextForge (mcp-contextforge-gateway, pinned) in front of an MCP upstream, for the
# benchmark harness to compare with.
#
#   bench/contextforge/start.sh PORT UPSTREAM_URL   prints `MCP_URL TOKEN TOOL PID` on its last line
#   bench/contextforge/start.sh --install-only      installs it and exits
#
# It needs Python 3.12 (ContextForge 1.1 requires 3.12 or 3.13): `python3.12` on PATH or a
# pyenv 3.12 version. The virtualenv is cached in $BENCH_CACHE (default
# /tmp/portcullis-bench-cache); each start uses a fresh SQLite database. The settings are the
# ones that make it run offline on loopback, with rate limiting off (its default tier allows
# 100 requests a minute) and the admin UI off. Stop it by killing the process group of PID.
set -euo pipefail

VERSION=1.1.0
CACHE="${BENCH_CACHE:-/tmp/portcullis-bench-cache}/contextforge-$VERSION"

die() { echo "contextforge/start.sh: $*" >&2; exit 1; }

find_python() {
  local root p
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for p in "$root"/versions/3.12*/bin/python3.12; do
    [[ -x "$p" ]] && { echo "$p"; return; }
  done
  # A pyenv shim answers `command -v` even when no 3.12 is selected: ask it to run.
  if python3.12 --version >/dev/null 2>&1; then command -v python3.12; return; fi
  return 1
}

install() {
  [[ -x "$CACHE/venv/bin/mcpgateway" ]] && return
  local py
  py="$(find_python)" || die "Python 3.12 not found (ContextForge $VERSION needs it): install it with pyenv, or run the harness with --no-contextforge"
  echo "installing mcp-contextforge-gateway==$VERSION into $CACHE (a few minutes, once)" >&2
  rm -rf "$CACHE"
  mkdir -p "$CACHE"
  "$py" -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install --quiet --disable-pip-version-check "mcp-contextforge-gateway==$VERSION" >&2 \
    || die "pip could not install mcp-contextforge-gateway==$VERSION"
}

install
[[ "${1:-}" == "--install-only" ]] && exit 0
[[ $# -eq 2 ]] || die "usage: start.sh PORT UPSTREAM_URL"
PORT="$1"
UPSTREAM="$2"

DATA="$(mktemp -d /tmp/portcullis-bench-contextforge.XXXXXX)"
export HOST=127.0.0.1 PORT
export DATABASE_URL="sqlite:///$DATA/mcp.db"
export JWT_SECRET_KEY=portcullis-bench-secret-key-at-least-32-bytes-long
export AUTH_ENCRYPTION_SECRET=portcullis-bench-encryption-secret-32-bytes-long
export PLATFORM_ADMIN_EMAIL=admin@example.com PLATFORM_ADMIN_PASSWORD='Bench-Passw0rd!x' PLATFORM_ADMIN_FULL_NAME=Admin
export DEFAULT_USER_PASSWORD='Bench-Default-Pw9!q'
export MCPGATEWAY_UI_ENABLED=false MCPGATEWAY_ADMIN_API_ENABLED=false
export LLMCHAT_ENABLED=false MCPGATEWAY_A2A_ENABLED=false MCPGATEWAY_CATALOG_ENABLED=false PLUGINS_ENABLED=false
export SSRF_ALLOW_LOCALHOST=true REQUIRE_USER_IN_DB=false CACHE_TYPE=memory
export RATE_LIMITING_ENABLED=false LOG_LEVEL=WARNING DISABLE_ACCESS_LOG=true

cd "$DATA"
# Its own session and process group, so that the harness stops it and its workers together.
setsid "$CACHE/venv/bin/mcpgateway" --host 127.0.0.1 --port "$PORT" >"$DATA/contextforge.log" 2>&1 &
PID=$!
trap 'kill -- "-$PID" 2>/dev/null || true' ERR

for _ in $(seq 1 240); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  kill -0 "$PID" 2>/dev/null || die "ContextForge exited at start; its log: $DATA/contextforge.log"
  sleep 0.5
done
curl -sf "http://127.0.0.1:$PORT/health" >/dev/null || die "ContextForge did not become healthy within 120 s; its log: $DATA/contextforge.log"

TOKEN="$("$CACHE/venv/bin/python" -m mcpgateway.utils.create_jwt_token --username admin@example.com \
  --exp 600 --admin --secret "$JWT_SECRET_KEY" 2>/dev/null | tail -1)"
api() { curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' "$@"; }

api -X POST "http://127.0.0.1:$PORT/gateways" \
  -d "{\"name\":\"bench\",\"url\":\"$UPSTREAM\",\"transport\":\"STREAMABLEHTTP\"}" >/dev/null \
  || die "registering the upstream failed; its log: $DATA/contextforge.log"
read -r TOOL_ID TOOL_NAME < <(api "http://127.0.0.1:$PORT/tools" | "$CACHE/venv/bin/python" -c '
import json, sys
tools = json.load(sys.stdin)
tools = tools.get("items", tools) if isinstance(tools, dict) else tools
echo = next(t for t in tools if t["name"].endswith("echo"))
print(echo["id"], echo["name"])')
SERVER_ID="$(api -X POST "http://127.0.0.1:$PORT/servers" \
  -d "{\"server\":{\"name\":\"bench\",\"associated_tools\":[\"$TOOL_ID\"]}}" \
  | "$CACHE/venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["id"])')"

echo "http://127.0.0.1:$PORT/servers/$SERVER_ID/mcp $TOKEN $TOOL_NAME $PID"
