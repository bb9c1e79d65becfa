#!/usr/bin/env bash
# Install what `make test` and `make demo` need on a fresh Debian machine: a Python venv with the project and
# its dev tools. Go (>= 1.24) must be present; the control plane itself is built by `python -m controlplane build`.
set -euo pipefail
venv=${1:-.venv}
python=${PYTHON:-python3}

need_apt=()
"$python" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v git >/dev/null || need_apt+=(git)
if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "[bootstrap] installing Debian packages: ${need_apt[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "error: missing system packages: ${need_apt[*]} (install them with your package manager)" >&2
    exit 1
  fi
fi

if ! command -v go >/dev/null; then
  echo "error: Go is not installed. The local Kubernetes control plane is built from Go modules: install Go >= 1.24." >&2
  exit 1
fi
"$python" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"error: Python >= 3.11 is required, found {sys.version.split()[0]}")
PY

[[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
echo "[bootstrap] venv ready: $venv"
