# Source this file (bash): creates .venv when missing, installs the requirements when they changed, converts the
# ImageNet backbone weights when missing (pretrained/), and activates .venv. Idempotent; about a second once done.
#   source scripts/setup.sh [requirements.txt | requirements-dev.txt]
# Environment: CR3NET_PYTHON (interpreter for a new .venv, default python3), CR3NET_VENV (default <repo>/.venv),
# CR3NET_MIN_FREE_GB (free disk a new .venv needs, checked before creating it; default 6).
_cr3net_stamp() {  # "<hash of requirements.txt + FILE> FILE"
  echo "$(cat "$1/requirements.txt" "$1/$2" | sha256sum | cut -c1-64) $2"
}
_cr3net_setup() {
  local root req venv stamp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  req="${1:-requirements.txt}"
  venv="${CR3NET_VENV:-$root/.venv}"
  if [[ ! -x "$venv/bin/python" ]]; then
    # a first install writes about 6 GB (PyTorch's CUDA build and its libraries): say so before pip fails midway
    local need_gb free_kb parent
    need_gb="${CR3NET_MIN_FREE_GB:-6}"
    parent="$venv"
    while [[ ! -d "$parent" ]]; do parent="$(dirname "$parent")"; done
    free_kb="$(df -Pk "$parent" | awk 'NR == 2 {print $4}')"
    if [[ -n "$free_kb" ]] && (( free_kb < need_gb * 1024 * 1024 )); then
      echo "[setup] error: $((free_kb / 1024)) MB free on the disk of $venv; a new environment needs about" \
        "$need_gb GB (PyTorch with its CUDA libraries). Free some space, or set CR3NET_VENV to a folder on a" \
        "larger disk (CR3NET_MIN_FREE_GB changes this check)." >&2
      return 1
    fi
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
