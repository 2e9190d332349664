#!/bin/sh
# The web client's modules in node (TAP for prove): web/proto.js against
# lib/proto vectors, the AudioWorklet processors of web/worklet.js.
cd "$(dirname "$0")/../.." || exit 1
if ! command -v node >/dev/null 2>&1; then
    echo "1..0 # SKIP node is not installed (sudo scripts/install-deps --browser)"
    exit 0
fi
exec node --test --test-reporter=tap test/browser/proto.test.mjs test/browser/worklet.test.mjs
