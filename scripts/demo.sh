#!/usr/bin/env bash
# Start the demo on the shipped checkpoint: http://127.0.0.1:7860 (extra arguments go to app.py).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements.txt
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec python app.py "$@"
