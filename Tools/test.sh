#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds, then `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/install-deps.sh
swift build --build-tests
swift test --skip-build "$@"
