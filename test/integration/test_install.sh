#!/usr/bin/env bash
# make install end to end (TAP): installs into a temporary DESTDIR, checks
# what was installed (programs, libroost-client with its soname symlinks and
# only roost_* exported, the header, the .pc, unit, config, docs), compiles
# the header alone, builds examples/tone.c from the installed tree only
# (pkg-config, shared and static libroost-client), runs both builds against
# a relay (ROOST_BUILD's roost-relay, dev certificate, fresh token key,
# readiness by polling /healthz) in one room, and checks that each printed
# the other as speaking. Then make uninstall must leave nothing behind.
set -u
cd "$(dirname "$0")/../.."
B=${ROOST_BUILD:-build}
T=$(mktemp -d)
D=$T/dest
PREFIX=/opt/roost
relay=
pids=()
cleanup() {
    for p in "${pids[@]}" $relay; do kill "$p" 2>/dev/null; done
    for p in "${pids[@]}" $relay; do wait "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { # description, command...
    local d=$1
    shift
    if "$@" >"$T/why" 2>&1; then ok "$d"; else nok "$d"; sed 's/^/# /' "$T/why" | head -30; fi
}
free_port() { # udp|tcp
    python3 -c "import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=='udp' else socket.SOCK_STREAM); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])" "$1"
}

echo "1..17"

# The same BUILD and SAN as the tree under test, so nothing is rebuilt with
# other flags; a clean MAKEFLAGS so an outer make's options do not leak in.
san=0
grep -q -- -fsanitize "$B/.flags" 2>/dev/null && san=1
check "make install PREFIX=$PREFIX DESTDIR=..." \
    env MAKEFLAGS= make --no-print-directory BUILD="$B" SAN=$san PREFIX=$PREFIX DESTDIR="$D" install

P=$D$PREFIX
files_ok() {
    local f
    for f in bin/roost-relay bin/roost-cli bin/roost-bench; do test -x "$P/$f" || { echo "missing $f"; return 1; }; done
    test -f "$P/lib/libroost-client.so.1.1.0" && ! test -L "$P/lib/libroost-client.so.1.1.0" || { echo "no real .so.1.1.0"; return 1; }
    test "$(readlink "$P/lib/libroost-client.so.1")" = libroost-client.so.1.1.0 || { echo "bad .so.1 link"; return 1; }
    test "$(readlink "$P/lib/libroost-client.so")" = libroost-client.so.1 || { echo "bad .so link"; return 1; }
    for f in lib/libroost-client.a include/roost/client.h lib/pkgconfig/roost-client.pc \
        lib/systemd/system/roost-relay.service etc/roost/roost.conf.example \
        share/doc/roost/roost-relay.txt share/doc/roost/roost-cli.txt share/doc/roost/CLIENT.md; do
        test -s "$P/$f" || { echo "missing $f"; return 1; }
    done
    grep -q "^ExecStart=$PREFIX/bin/roost-relay -c $PREFIX/etc/roost/roost.conf" \
        "$P/lib/systemd/system/roost-relay.service" || { echo "unit paths not adjusted"; return 1; }
}
check "installed files: programs, library + soname links, header, .pc, unit, config, docs" files_ok

exports_ok() {
    readelf -d "$P/lib/libroost-client.so.1.1.0" | grep -q 'SONAME.*\[libroost-client.so.1\]' || { echo "soname"; return 1; }
    local bad
    bad=$(nm -D --defined-only "$P/lib/libroost-client.so.1.1.0" | awk '$2 ~ /[TDBR]/ {print $3}' | grep -v '^roost_')
    [ -z "$bad" ] || { echo "exported: $bad"; return 1; }
    bad=$(nm -g --defined-only "$P/lib/libroost-client.a" | awk 'NF == 3 {print $3}' | grep -v '^roost_')
    [ -z "$bad" ] || { echo "global in .a: $bad"; return 1; }
    nm -D --defined-only "$P/lib/libroost-client.so.1.1.0" | grep -q ' roost_session_new'
}
check "shared and static library export only roost_*, soname libroost-client.so.1" exports_ok

export PKG_CONFIG_PATH=$P/lib/pkgconfig
# Paths in the .pc are the final ones (PREFIX); the sysroot maps them into DESTDIR.
pcr() { PKG_CONFIG_SYSROOT_DIR=$D pkg-config "$@"; }
pc_ok() {
    local got="$(pkg-config --modversion roost-client) $(pkg-config --variable=prefix roost-client)"
    echo "got: $got"
    test "$got" = "1.1.0 $PREFIX"
}
check "pkg-config finds roost-client 1.1.0 with prefix $PREFIX" pc_ok

printf '#include <roost/client.h>\nint main(void) { return roost_strerror(ROOST_ERR_INVAL) == 0; }\n' >"$T/h.c"
check "the installed header compiles alone (C99, -Wall -Wextra -pedantic -Werror)" \
    cc -std=c99 -Wall -Wextra -pedantic -Werror -o "$T/h" "$T/h.c" $(pcr --cflags --libs roost-client)

EX=$P/share/doc/roost/tone.c
check "examples/tone.c builds against the installed tree (shared)" \
    cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -o "$T/tone" "$EX" \
    $(pcr --cflags --libs roost-client) $(pkg-config --cflags --libs opus) -lm
# Static libroost-client, its dependencies (Requires.private) shared.
check "examples/tone.c builds against the installed tree (static libroost-client)" \
    cc -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -o "$T/tone-static" "$EX" \
    $(pcr --cflags roost-client) $(pkg-config --cflags opus) $(pcr --libs-only-L roost-client) \
    -l:libroost-client.a $(pkg-config --libs $(pcr --print-requires-private roost-client) opus) -pthread -lm
static_ok() {
    readelf -d "$T/tone-static" | grep NEEDED | grep -q libroost-client && return 1
    LD_LIBRARY_PATH=$P/lib ldd "$T/tone" | grep -q "libroost-client.so.1 => $P/lib/"
}
check "the static build needs no libroost-client.so, the shared one the installed .so.1" static_ok

# A relay on free ports with a dev certificate and a fresh token key.
scripts/dev-cert "$T/state" >/dev/null
"$B/roost-cli" keygen --out "$T/state/token.keys" >/dev/null 2>&1
port=$(free_port udp)
aport=$(free_port tcp)
"$B/roost-relay" --listen 127.0.0.1 --port "$port" --workers 1 --admin-port "$aport" \
    --cert "$T/state/server.pem" --key "$T/state/server.key" \
    --token-keys "$T/state/token.keys" --log-level warn 2>"$T/relay.log" &
relay=$!
ready=0
for _ in $(seq 1 200); do
    kill -0 "$relay" 2>/dev/null || break
    if curl -sf -m 1 "http://127.0.0.1:$aport/healthz" >/dev/null 2>&1; then
        ready=1
        break
    fi
    sleep 0.05
done
if [ $ready = 1 ]; then ok "relay answers /healthz"; else nok "relay answers /healthz"; sed 's/^/# /' "$T/relay.log"; fi

token() { "$B/roost-cli" token --key-file "$T/state/token.keys" --room hall --identity "$1" --ttl 10m; }
TA=$(token alice)
TB=$(token bob)
# alice: shared build, library thread; bob: static build, own loop, and
# stays longer so that it sees alice leave.
LD_LIBRARY_PATH=$P/lib timeout 30 "$T/tone" --relay 127.0.0.1:$port --ca "$T/state/ca.pem" \
    --room hall --token "$TA" --name alice --hz 440 --duration 2 --threaded >"$T/alice.out" 2>&1 &
pa=$!
pids+=($pa)
timeout 30 "$T/tone-static" --relay 127.0.0.1:$port --ca "$T/state/ca.pem" \
    --room hall --token "$TB" --name bob --hz 660 --duration 4 >"$T/bob.out" 2>&1 &
pb=$!
pids+=($pb)
wait $pa
ra=$?
wait $pb
rb=$?
pids=()
if [ $ra = 0 ] && [ $rb = 0 ]; then ok "both participants join, send and leave (exit 0)"; else
    nok "both participants join, send and leave (alice $ra, bob $rb)"
    sed 's/^/# alice: /' "$T/alice.out"
    sed 's/^/# bob: /' "$T/bob.out"
fi
check "alice (shared, threaded) printed bob as speaking" grep -q '^speaking: bob (id ' "$T/alice.out"
check "bob (static, own loop) printed alice as speaking" grep -q '^speaking: alice (id ' "$T/bob.out"
check "bob saw alice present and then leave" \
    sh -c "grep -q '^present: alice' '$T/bob.out' && grep -q '^left: alice' '$T/bob.out'"
heard_ok() { # file name: at least 1 s of the other's 20 ms frames arrived
    awk -v who="$2" '$1 == "heard:" && $2 == who && $5 >= 50 { found = 1 } END { exit !found }' "$1" ||
        { cat "$1"; return 1; }
}
check "alice heard at least 1 s of bob's frames" heard_ok "$T/alice.out" bob
check "bob heard at least 1 s of alice's frames" heard_ok "$T/bob.out" alice

check "make uninstall" \
    env MAKEFLAGS= make --no-print-directory BUILD="$B" SAN=$san PREFIX=$PREFIX DESTDIR="$D" uninstall
left=$(find "$D" -type f -o -type l)
if [ -z "$left" ]; then ok "uninstall removed every installed file"; else
    nok "uninstall removed every installed file"
    printf '%s\n' "$left" | sed 's/^/# left: /'
fi
exit $fail
