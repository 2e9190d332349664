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
# The speech sample the fake microphone plays: ../shared/audio beside the
# repository (the project's layout), else /work/shared/audio.
if [ -z "${ROOST_BROWSER_WAV:-}" ]; then
    for w in ../shared/audio/speech-48k-mono.wav /work/shared/audio/speech-48k-mono.wav; do
        [ -r "$w" ] && ROOST_BROWSER_WAV=$(cd "$(dirname "$w")" && pwd)/$(basename "$w") && break
    done
fi
if [ -z "${ROOST_BROWSER_WAV:-}" ] || [ ! -r "$ROOST_BROWSER_WAV" ]; then
    msg="no speech sample (../shared/audio/speech-48k-mono.wav; or set ROOST_BROWSER_WAV)"
    if [ "${ROOST_BROWSER_REQUIRED:-0}" = 1 ]; then
        echo "test-browser: $msg" >&2
        exit 2
    fi
    echo "1..0 # SKIP $msg"
    exit 0
fi
export CHROMIUM ROOST_BROWSER_WAV
exec node test/browser/run.mjs
