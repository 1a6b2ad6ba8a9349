#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds, then `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/install-deps.sh
swift build --build-tests
# A short seeded fuzz pass over every reader (Tools/fuzz.py; README "Reliability").
python3 Tools/fuzz.py --seconds 60 --seed 1
# The suites are XCTest; leaving Swift Testing off keeps its "0 tests" line out of the summary.
swift test --skip-build --disable-swift-testing "$@"
