#!/usr/bin/env bash
# Run the test suite (extra arguments go to pytest). Browser tests need /usr/bin/chromium
# (Debian: apt-get install chromium) and skip without it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh requirements-dev.txt
export HF_HUB_OFFLINE=1
exec python -m pytest -q -p no:cacheprovider "$@"
