#!/bin/sh
# The page in a real headless Chromium with a native participant
# (test/browser/run.mjs, docs/WEB.md). TAP for prove.
#
# Without Chromium (or node) the test is skipped with a message; with
# ROOST_BROWSER_REQUIRED=1 (make test-browser) that is an error instead.
cd "$(dirname "$0")/../.." || exit 1
CHROMIUM=${CHROMIUM:-chromium}
missing=
command -v node >/dev/null 2>&1 || missing="node"
command -v "$CHROMIUM" >/dev/null 2>&1 || missing="${missing:+$missing and }chromium"
if [ -n "$missing" ]; then
    msg="$missing not installed: sudo scripts/install-deps --browser (Debian chromium)"
    if [ "${ROOST_BROWSER_REQUIRED:-0}" = 1 ]; then
        echo "test-browser: $msg" >&2
        exit 2
    fi
    echo "1..0 # SKIP $msg"
    exit 0
fi
B=${ROOST_BUILD:-build}
if ! "$B/roost-relay" --help 2>&1 | grep -q -- '--ws-listen'; then
    msg="$B/roost-relay has no WebSocket listener (--ws-listen)"
    if [ "${ROOST_BROWSER_REQUIRED:-0}" = 1 ]; then
        echo "test-browser: $msg" >&2
        exit 2
    fi
    echo "1..0 # SKIP $msg"
    exit 0
fi
export CHROMIUM
exec node test/browser/run.mjs
