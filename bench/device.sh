#!/usr/bin/env bash
# One command for a machine with one NVIDIA GPU and this repository installed by the README's set-up:
#   bash bench/device.sh                   # writes device-results/device.json and device.md (< 8 minutes)
#   bash bench/device.sh --out DIR         # any option of bench/device.py (python bench/device.py --help)
# The same script on the CPU, in seconds (what the test suite runs): python bench/device.py --device cpu --small
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
[ -x "$py" ] || py="$(command -v python3)"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
exec "$py" "$root/bench/device.py" --device cuda "$@"
