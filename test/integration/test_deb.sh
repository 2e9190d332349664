#!/usr/bin/env bash
# The Debian packages (debian/, make deb-quick: the same debian/rules as
# make deb, packaging the binaries this build already made): the four
# packages are built, hold what they should (dpkg-deb -c, conffiles,
# maintainer scripts), the dev package builds the example with pkg-config,
# and the relay extracted from its package (dpkg-deb -x) runs against its
# packaged /etc/roost/roost.conf (paths and ports overridden on the command
# line) until /healthz answers, then stops by PID. TAP output for prove.
set -u
B=${ROOST_BUILD:-build}
T=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
check() { if eval "$2"; then ok "$1"; else nok "$1"; fi; }
PLAN=14
echo "1..$PLAN"

if ! command -v dh >/dev/null 2>&1 || ! command -v dpkg-buildpackage >/dev/null 2>&1; then
    for i in $(seq 1 $PLAN); do echo "ok $i # SKIP debhelper/dpkg-dev not installed (scripts/install-deps --deb)"; done
    exit 0
fi

make --no-print-directory BUILD="$B" deb-quick >"$T/build.log" 2>&1; rc=$?
check "make deb-quick builds the packages" '[ $rc -eq 0 ]' || true
[ $rc -eq 0 ] || sed 's/^/# /' "$T/build.log" | tail -40
D=$B/deb
deb() { ls "$D"/"$1"_*.deb 2>/dev/null | head -1; }
relay=$(deb roost-relay) lib=$(deb libroost-client1) dev=$(deb libroost-client-dev) tools=$(deb roost-tools)
check "four packages: roost-relay libroost-client1 libroost-client-dev roost-tools" \
    '[ -n "$relay" ] && [ -n "$lib" ] && [ -n "$dev" ] && [ -n "$tools" ]'
if [ -z "$relay" ] || [ -z "$lib" ] || [ -z "$dev" ] || [ -z "$tools" ]; then
    for i in $(seq $((n + 1)) $PLAN); do echo "not ok $i - no packages"; done
    exit 1
fi

# has PACKAGE PATH...: every path is in the package's file list.
has() {
    local pkg=$1 miss=0
    shift
    dpkg-deb -c "$pkg" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||' >"$T/list"
    for p in "$@"; do grep -qxF -- "$p" "$T/list" || { echo "# $(basename "$pkg"): missing $p"; miss=1; }; done
    return $miss
}
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
check "roost-relay: daemon, unit, config, sysusers.d, sysctl drop-in, docs, man page" \
    'has "$relay" /usr/bin/roost-relay /lib/systemd/system/roost-relay.service /etc/roost/roost.conf \
        /usr/lib/sysusers.d/roost-relay.conf /usr/lib/sysctl.d/60-roost.conf \
        /usr/share/doc/roost-relay/OPERATIONS.md /usr/share/doc/roost-relay/copyright \
        /usr/share/man/man1/roost-relay.1.gz'
check "libroost-client1: the shared library with its soname link" \
    'has "$lib" /usr/lib/$MA/libroost-client.so.1 /usr/lib/$MA/libroost-client.so.1.1.0'
check "libroost-client-dev: header, .so link, static library, .pc, example" \
    'has "$dev" /usr/include/roost/client.h /usr/lib/$MA/libroost-client.so /usr/lib/$MA/libroost-client.a \
        /usr/lib/$MA/pkgconfig/roost-client.pc /usr/share/doc/libroost-client-dev/examples/tone.c'
check "roost-tools: roost-cli, roost-bench, roost-capacity, the capacity scripts, man pages" \
    'has "$tools" /usr/bin/roost-cli /usr/bin/roost-bench /usr/bin/roost-capacity \
        /usr/share/roost/capacity/all /usr/share/roost/capacity/sweep /usr/share/roost/capacity/caplib.py \
        /usr/share/man/man1/roost-cli.1.gz /usr/share/man/man1/roost-bench.1.gz /usr/share/man/man1/roost-capacity.1.gz'

dpkg-deb -I "$relay" conffiles >"$T/conffiles" 2>/dev/null
check "/etc/roost/roost.conf is a conffile" 'grep -qx /etc/roost/roost.conf "$T/conffiles"'
dpkg-deb -I "$relay" postinst >"$T/postinst" 2>/dev/null
check "postinst creates the roost user (systemd-sysusers) and does not start the unit" \
    'grep -q "systemd-sysusers" "$T/postinst" && ! grep -q "deb-systemd-invoke.*start" "$T/postinst"'
check "soname dependency: libroost-client1 Depends on its libraries, the dev package on it" \
    '[ "$(dpkg-deb -f "$dev" Depends | grep -o "libroost-client1 (= [^)]*)")" = "libroost-client1 (= $(dpkg-deb -f "$lib" Version))" ] &&
     dpkg-deb -f "$lib" Depends | grep -q libngtcp2'

R=$T/root
mkdir -p "$R"
for p in "$relay" "$lib" "$dev" "$tools"; do dpkg-deb -x "$p" "$R"; done
unit=$R/lib/systemd/system/roost-relay.service
check "unit: packaged paths (/usr/bin, /etc/roost) and Type=notify, User=roost, StateDirectory=roost" \
    'grep -qx "ExecStart=/usr/bin/roost-relay -c /etc/roost/roost.conf" "$unit" &&
     grep -qx "Type=notify" "$unit" && grep -qx "User=roost" "$unit" && grep -qx "StateDirectory=roost" "$unit" &&
     grep -q "^Documentation=file:///usr/share/doc/roost-relay/OPERATIONS.md" "$unit"'

# The dev package on its own: pkg-config in the extracted root builds the
# example against the packaged header and library.
export PKG_CONFIG_PATH=$R/usr/lib/$MA/pkgconfig PKG_CONFIG_SYSROOT_DIR=$R
flags=$(pkg-config --cflags --libs roost-client 2>"$T/pc.err")
cc -std=c11 -D_GNU_SOURCE -o "$T/tone" "$R/usr/share/doc/libroost-client-dev/examples/tone.c" \
    $flags >"$T/cc.log" 2>&1 && LD_LIBRARY_PATH=$R/usr/lib/$MA "$T/tone" --help >/dev/null 2>&1
rc=$?
check "example builds with pkg-config against the packaged library and runs" '[ $rc -eq 0 ] || [ $rc -eq 1 ]'
[ $rc -le 1 ] || { sed 's/^/# /' "$T/pc.err" "$T/cc.log" | tail -20; }
unset PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

# The packaged relay against the packaged config: only what differs on this
# machine is overridden (certificate, keys, state dir, free ports).
scripts/dev-cert "$T/certs" >/dev/null 2>&1
"$R/usr/bin/roost-cli" keygen --out "$T/token.keys" >/dev/null 2>&1
mkdir -p "$T/state"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3
port=$($PY -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
over=(--cert "$T/certs/server.pem" --key "$T/certs/server.key" --token-keys "$T/token.keys"
      --state-dir "$T/state" --port "$port" --admin-port 0 --workers 1)
"$R/usr/bin/roost-relay" -c "$R/etc/roost/roost.conf" --check-config "${over[@]}" >"$T/check.log" 2>&1
rc=$?
check "packaged relay: packaged config passes --check-config" '[ $rc -eq 0 ]'
[ $rc -eq 0 ] || sed 's/^/# /' "$T/check.log"

"$R/usr/bin/roost-relay" -c "$R/etc/roost/roost.conf" "${over[@]}" 2>"$T/relay.log" &
pid=$!
aport=
for _ in $(seq 1 300); do
    aport=$(grep -o 'event=start .* admin=127.0.0.1:[0-9]*' "$T/relay.log" | sed 's/.*admin=127.0.0.1://')
    [ -n "$aport" ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
done
code=
for _ in $(seq 1 100); do
    [ -n "$aport" ] || break
    code=$($PY -c 'import sys, urllib.request
try:
    print(urllib.request.urlopen("http://127.0.0.1:%s/healthz" % sys.argv[1], timeout=5).status)
except Exception as e:
    print(getattr(e, "code", 0))' "$aport")
    [ "$code" = 200 ] && break
    sleep 0.1
done
check "packaged relay starts from the packaged config and /healthz answers 200" '[ "$code" = 200 ]'
[ "$code" = 200 ] || sed 's/^/# /' "$T/relay.log" | tail -20
kill -TERM $pid 2>/dev/null
wait $pid
rc=$?
pid=
check "packaged relay exits 0 on SIGTERM" '[ $rc -eq 0 ]'
exit $fail
