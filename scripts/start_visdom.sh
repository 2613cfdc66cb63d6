#!/usr/bin/env bash
# Start the training dashboard: a visdom server on this machine only (127.0.0.1), page served without internet.
#
#   bash scripts/start_visdom.sh [PORT] [extra visdom.server flags, e.g. -env_path DIR]
#
# PORT defaults to 8097 (train with the same --display_port). Uses <repo>/.venv/bin/python when present.
# The first run fetches the page's JavaScript/CSS from the npm registry (needs npm), see scripts/visdom_offline.py.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${1:-8097}"
if [[ $# -gt 0 ]]; then
    shift
fi
if ! [[ "$PORT" =~ ^[0-9]+$ ]] || ((PORT < 1 || PORT > 65535)); then
    echo "error: PORT must be a number from 1 to 65535, got '$PORT' (usage: bash scripts/start_visdom.sh [PORT])" >&2
    exit 2
fi

if [[ -x "$ROOT/.venv/bin/python" ]]; then
    PYTHON="$ROOT/.venv/bin/python"
else
    PYTHON="$(command -v python3 || command -v python || true)"
    if [[ -z "$PYTHON" ]]; then
        echo "error: no python found: create $ROOT/.venv or put python3 on PATH" >&2
        exit 2
    fi
fi

(cd "$ROOT" && "$PYTHON" -m scripts.visdom_offline)
echo "dashboard: http://localhost:$PORT  (stop with Ctrl-C)"
exec "$PYTHON" -m visdom.server -port "$PORT" -bind_local "$@"
