# Source this file (bash): creates .venv when missing, installs the requirements when they changed, converts the
# ImageNet backbone weights when missing (pretrained/), and activates .venv. Idempotent; about a second once done.
#   source scripts/setup.sh [requirements.txt | requirements-dev.txt]
# Environment: CR3NET_PYTHON (interpreter for a new .venv, default python3), CR3NET_VENV (default <repo>/.venv).
_cr3net_stamp() {  # "<hash of requirements.txt + FILE> FILE"
  echo "$(cat "$1/requirements.txt" "$1/$2" | sha256sum | cut -c1-64) $2"
}
_cr3net_setup() {
  local root req venv stamp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  req="${1:-requirements.txt}"
  venv="${CR3NET_VENV:-$root/.venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "[setup] creating $venv"
    "${CR3NET_PYTHON:-python3}" -m venv "$venv" \
      || { echo "[setup] error: cannot create $venv (install python3-venv, or set CR3NET_PYTHON)" >&2; return 1; }
  fi
  # shellcheck disable=SC1091
  source "$venv/bin/activate"
  stamp="$venv/.cr3net-requirements"
  # requirements-dev.txt includes requirements.txt, so a dev install also satisfies a runtime one
  if ! grep -qxF "$(_cr3net_stamp "$root" "$req")" "$stamp" 2>/dev/null \
     && ! grep -qxF "$(_cr3net_stamp "$root" requirements-dev.txt)" "$stamp" 2>/dev/null; then
    echo "[setup] installing $req into $venv (the first time takes several minutes)"
    python -m pip install -q 'setuptools<81' wheel \
      && python -m pip install -q --no-build-isolation -r "$root/$req" \
      || { echo "[setup] error: pip install -r $req failed (see above)" >&2; return 1; }
    _cr3net_stamp "$root" "$req" >> "$stamp"
  fi
  (cd "$root" && python -m util.backbones --quiet) \
    || { echo "[setup] error: the ImageNet backbone weights could not be set up (see above)" >&2; return 1; }
}
_cr3net_setup "$@"
