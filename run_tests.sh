#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the suite.
# Extra arguments go to pytest (e.g. `bash run_tests.sh -k simulation`).
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v espeak-ng >/dev/null 2>&1; then
    echo "Installing espeak-ng (speech for the generated test datasets)..."
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq espeak-ng >/dev/null
fi

# The CPU wheel first: the project's torch range then installs nothing bigger.
if ! python -c "import torch" >/dev/null 2>&1; then
    python -m pip install -q "torch==2.13.0" || python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
python -m pip install -q -e ".[test]"

export FLWR_TELEMETRY_ENABLED=0
exec python -m pytest "$@"
