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

# torch first, a CPU build unless there is an NVIDIA GPU; the project's range then adds nothing. Always
# asked: it does nothing when a fitting torch is installed, and replaces one outside the range (which pip
# would otherwise replace below with a CUDA build).
python tools/install_torch.py
python -m pip install -q -e ".[test]"

export FLWR_TELEMETRY_ENABLED=0
ruff check . && ruff format --check .
# Two workers, a test file each at a time: the slow tests mostly wait (on heartbeats, on processes
# starting), so two share a 2-core machine well. `-n 0` runs in one process.
exec python -m pytest -n 2 --dist loadfile "$@"
