#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds, then `swift test`.
set -euo pipefail
cd "$(dirname "$0")/.."
Tools/install-deps.sh
swift build --build-tests
# The suites are XCTest; leaving Swift Testing off keeps its "0 tests" line out of the summary.
swift test --skip-build --disable-swift-testing "$@"
