#!/bin/sh
# web/proto.js checked against lib/proto (node --test, TAP for prove).
cd "$(dirname "$0")/../.." || exit 1
if ! command -v node >/dev/null 2>&1; then
    echo "1..0 # SKIP node is not installed (scripts/install-deps browser)"
    exit 0
fi
exec node --test --test-reporter=tap test/browser/proto.test.mjs
