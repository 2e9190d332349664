#!/usr/bin/env bash
# roost-cli call end to end, and the listening test by numbers (docs/
# BENCHMARKS.md, "Listening test"). TAP output for prove.
#
# A relay on a free port; in each of three rooms a listener B (records the
# mix, --exit-when-alone) and, once B is joined, a sender A that sends the
# speech file once and leaves: clean, 5 % of A's packets dropped (seeded)
# with FEC, and the same without FEC. The three rooms run at once. B's
# recording is aligned with the source and compared (prog_wavcorr: the
# normalised cross-correlation, one lag for the whole file and per 0.5 s
# segment allowing whole-frame playout moves). Bounds: clean >= 0.9, 5 %
# loss with FEC >= 0.85 (segmented); the no-FEC figure is reported only.
# Nothing waits a fixed time: each step waits for a line or an exit,
# bounded by the file's length plus a margin.
#
# The relay and the participants run at real-time priority (chrt -r 10,
# SCHED_RR) when the test may set it, as an audio application would: on a
# machine loaded far beyond its CPUs, ordinary scheduling stalls a process
# for hundreds of milliseconds, and those stalls, not the relay or the
# codec, then decide the figures (docs/BENCHMARKS.md has both). The
# processes block in poll and use little CPU; the kernel's RT throttling
# bounds them anyway.
set -u
B=${ROOST_BUILD:-build}
CLI=$B/roost-cli
R=$B/roost-relay
CORR=$B/test/integration/prog_wavcorr
# ../shared/audio beside the repository (the project's layout), else
# /work/shared/audio; skipped when neither is there.
SRC=${ROOST_SPEECH:-../shared/audio/speech-48k-mono.wav}
[ -r "$SRC" ] || SRC=${ROOST_SPEECH:-/work/shared/audio/speech-48k-mono.wav}
CLEAN_MIN=0.9
FEC_MIN=0.85
PLAN=14
T=$(mktemp -d /tmp/roost-call-test.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }

echo "1..$PLAN"
if [ ! -x "$CLI" ] || [ ! -x "$R" ] || [ ! -x "$CORR" ] || [ ! -r "$SRC" ]; then
    for i in $(seq 1 $PLAN); do echo "ok $i # SKIP needs $CLI, $R, $CORR and $SRC"; done
    exit 0
fi

# The source's length in seconds bounds every wait.
len=$(python3 -c 'import sys, wave; w = wave.open(sys.argv[1]); print(int(w.getnframes() / w.getframerate()) + 1)' "$SRC")
bound=$((len + 60))

# wait_for FILE PATTERN SECONDS [PID]: until the pattern is in the file (or
# PID exits); 0 if found.
wait_for() {
    local f=$1 pat=$2 secs=$3 pid=${4:-}
    local i
    for i in $(seq 1 $((secs * 10))); do
        grep -q "$pat" "$f" 2>/dev/null && return 0
        if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
            grep -q "$pat" "$f" 2>/dev/null
            return
        fi
        sleep 0.1
    done
    return 1
}
# wait_exit PID SECONDS: the exit code, or 124 (and a kill) past the bound.
wait_exit() {
    local pid=$1 secs=$2 i
    for i in $(seq 1 $((secs * 10))); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            return
        fi
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    return 124
}

RT=()
if chrt -r 10 true 2>/dev/null; then
    RT=(chrt -r 10)
    echo "# running at SCHED_RR priority 10"
else
    echo "# chrt not permitted: normal priority (figures depend on the machine's load)"
fi

scripts/dev-cert "$T/state" >/dev/null
$CLI keygen --out "$T/state/token.keys" >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
${RT[@]+"${RT[@]}"} $R --listen 127.0.0.1 --port "$port" --workers 2 --cert "$T/state/server.pem" \
    --key "$T/state/server.key" --token-keys "$T/state/token.keys" \
    --state-dir "$T/state" --admin-port 0 2>"$T/relay.log" &
relay=$!
pids+=("$relay")
wait_for "$T/relay.log" "event=start" 30 "$relay"
check "relay starts" 'grep -q "event=start" "$T/relay.log"'

tok() { $CLI token --key-file "$T/state/token.keys" --room "$1" --identity "$2" --ttl 1h; }
COMMON=(--relay "127.0.0.1:$port" --ca "$T/state/ca.pem")

# start_pair NAME ARGS...: B joins room NAME and records; A sends once B is
# ready. Sets the pids in a_NAME / b_NAME.
start_pair() {
    local name=$1
    shift
    ${RT[@]+"${RT[@]}"} $CLI call "${COMMON[@]}" --token "$(tok "$name" "b-$name")" --name "b-$name" \
        --record "$T/$name.wav" --exit-when-alone --duration "$bound" \
        >"$T/$name.b.out" 2>"$T/$name.b.err" &
    eval "b_$name=$!"
    pids+=("$!")
}
start_sender() {
    local name=$1
    shift
    ${RT[@]+"${RT[@]}"} $CLI call "${COMMON[@]}" --token "$(tok "$name" "a-$name")" --name "a-$name" \
        --send "$SRC" --duration "$bound" "$@" >"$T/$name.a.out" 2>"$T/$name.a.err" &
    eval "a_$name=$!"
    pids+=("$!")
}

start_pair clean
start_pair fec
start_pair nofec
ready=1
for r in clean fec nofec; do
    pid_var="b_$r"
    wait_for "$T/$r.b.out" "^ready " 30 "${!pid_var}" || ready=0
done
check "three listeners joined (ready line)" '[ $ready -eq 1 ]'
start_sender clean
start_sender fec --drop 0.05 --seed 7
start_sender nofec --drop 0.05 --seed 7 --no-fec

for r in clean fec nofec; do
    a_var="a_$r"
    b_var="b_$r"
    wait_exit "${!a_var}" "$bound"
    eval "arc_$r=$?"
    wait_exit "${!b_var}" "$bound"
    eval "brc_$r=$?"
done
check "senders exit 0 after sending the file" '[ $arc_clean -eq 0 ] && [ $arc_fec -eq 0 ] && [ $arc_nofec -eq 0 ]'
check "listeners see the sender leave and exit 0" \
    '[ $brc_clean -eq 0 ] && [ $brc_fec -eq 0 ] && [ $brc_nofec -eq 0 ] && grep -q "^left id=" "$T/clean.b.out"'
for f in "$T"/*.err; do sed "s|^|# $(basename "$f"): |" "$f" | grep -v ' status ' | head -5; done

# Sequence numbers: every packet --drop skipped is a loss at the listener
# (the relay may lose more on a loaded machine, never fewer).
field() { sed -n "s/.*[ ]$2=\([0-9.]*\).*/\1/p" "$1" | head -1; }
dropped=$(field "$T/fec.a.out" dropped)
lost=$(field "$T/fec.b.out" lost)
echo "# fec run: sender dropped=${dropped:-?}, listener lost=${lost:-?}; $(grep '^summary peer' "$T/fec.b.out")"
check "dropped packets are seen as lost (${lost:-?} >= ${dropped:-?} > 0)" \
    '[ -n "$dropped" ] && [ -n "$lost" ] && [ "$dropped" -gt 0 ] && [ "$lost" -ge "$dropped" ]'
fec_used=$(field "$T/fec.b.out" fec)
fec_none=$(field "$T/nofec.b.out" fec)
check "losses concealed with FEC when the sender sends it (fec=${fec_used:-?})" \
    '[ -n "$fec_used" ] && [ "$fec_used" -gt 0 ]'
clean_lost=$(field "$T/clean.b.out" lost)
echo "# clean run: $(grep '^summary peer' "$T/clean.b.out")"

corr() { # run -> "global=.. lag=.. segmented=.. moves=.."
    "$CORR" "$SRC" "$T/$1.wav" 2>&1
}
for r in clean fec nofec; do
    out=$(corr $r)
    eval "corr_$r='$out'"
    echo "# listening $r: $out"
done
seg() { printf '%s\n' "$1" | sed -n 's/.*segmented=\([0-9.]*\).*/\1/p'; }
glob() { printf '%s\n' "$1" | sed -n 's/.*global=\([0-9.]*\).*/\1/p'; }
ge() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1] or 0) >= float(sys.argv[2]) else 1)' "$1" "$2"; }
check "clean: recording correlates with the source ($(seg "$corr_clean") >= $CLEAN_MIN)" \
    'ge "$(seg "$corr_clean")" $CLEAN_MIN'
check "5 % loss, FEC: still correlates ($(seg "$corr_fec") >= $FEC_MIN)" \
    'ge "$(seg "$corr_fec")" $FEC_MIN'
check "5 % loss, no FEC: measured ($(seg "$corr_nofec"), reported only)" '[ -n "$(seg "$corr_nofec")" ]'
check "recordings last the file (clean lost=${clean_lost:-?})" \
    '[ "$(stat -c %s "$T/clean.wav")" -ge $((len * 96000 - 400000)) ]'

# Ctrl-C: a tone sender leaves cleanly (LEAVE, then close): the listener
# sees it leave at once (an unclean exit would wait for the relay's idle
# timeout) and exits; both exit 0.
$CLI call "${COMMON[@]}" --token "$(tok sig b-sig)" --exit-when-alone --duration "$bound" \
    --record-dir "$T" >"$T/sig.b.out" 2>"$T/sig.b.err" &
bsig=$!
pids+=("$bsig")
wait_for "$T/sig.b.out" "^ready " 30 "$bsig"
$CLI call "${COMMON[@]}" --token "$(tok sig a-sig)" --name tone --tone 440 >"$T/sig.a.out" 2>"$T/sig.a.err" &
asig=$!
pids+=("$asig")
wait_for "$T/sig.a.out" "^ready " 30 "$asig"
# Wait until the listener has played some of the tone, then Ctrl-C.
wait_for "$T/sig.b.err" "tone: loss" 30 "$bsig"
kill -INT "$asig"
wait_exit "$asig" 10
arc=$?
wait_exit "$bsig" 10
brc=$?
check "SIGINT: the sender exits 0" '[ $arc -eq 0 ]'
check "SIGINT: the listener sees LEAVE and exits 0 within 10 s" '[ $brc -eq 0 ] && grep -q "^left id=.* name=tone" "$T/sig.b.out"'
check "--record-dir: one WAV per sender, named by id and name" 'ls "$T"/*-tone.wav >/dev/null 2>&1'
check "bad --drop is a usage error (exit 1)" '$CLI call "${COMMON[@]}" --token x --drop 2 >/dev/null 2>&1; [ $? -eq 1 ]'

kill -TERM "$relay"
wait "$relay" 2>/dev/null
exit $fail
