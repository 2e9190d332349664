#!/usr/bin/env bash
# roost-cli keygen / token / verify end to end, TAP output for prove.
# Exit codes checked here are the documented ones (docs/TOKENS.md).
set -u

CLI="${ROOST_BUILD:-build}/roost-cli"
TMP="$(mktemp -d /tmp/roost-cli-test.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

n=0
failed=0
ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}
not_ok() {
    n=$((n + 1))
    failed=1
    echo "not ok $n - $1"
}
# check DESCRIPTION WANT_EXIT COMMAND...
check() {
    local desc="$1" want="$2"
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [ "$got" -eq "$want" ]; then
        ok "$desc"
    else
        not_ok "$desc (exit $got, want $want)"
        sed 's/^/# /' "$TMP/out" "$TMP/err"
    fi
}
mode_of() {
    stat -c '%a' "$1"
}

echo "1..22"

if [ ! -x "$CLI" ]; then
    for i in $(seq 1 22); do echo "not ok $i - $CLI not built"; done
    exit 1
fi

K="$TMP/relay.keys"
check "help exits 0" 0 "$CLI" --help
grep -q 'exit codes' "$TMP/out" && ok "help lists exit codes" || not_ok "help lists exit codes"
check "unknown command is a usage error" 1 "$CLI" frobnicate

# keygen with a umask that would otherwise give group/other read.
(umask 022 && "$CLI" keygen --key-id main --out "$K") >"$TMP/out" 2>"$TMP/err"
[ $? -eq 0 ] && ok "keygen writes a key file" || not_ok "keygen writes a key file"
[ "$(mode_of "$K")" = "600" ] && ok "key file mode is 0600" || not_ok "key file mode is $(mode_of "$K")"
before="$(cat "$K")"
check "keygen refuses to overwrite" 2 "$CLI" keygen --key-id other --out "$K"
[ "$(cat "$K")" = "$before" ] && ok "existing key file unchanged" || not_ok "existing key file unchanged"
check "keygen without --out is a usage error" 1 "$CLI" keygen

tok="$("$CLI" token --key-file "$K" --room lobby --identity alice --ttl 10m 2>"$TMP/err")"
[ $? -eq 0 ] && [[ "$tok" == v1.main.* ]] && ok "token minted with key main" ||
    not_ok "token minted with key main ($tok)"
check "minted token verifies" 0 "$CLI" verify --key-file "$K" --room lobby "$tok"
grep -qx 'identity=alice' "$TMP/out" && grep -qx 'perms=join,publish,subscribe' "$TMP/out" &&
    ok "verify prints the claims" || not_ok "verify prints the claims"
check "wrong room exits 6" 6 "$CLI" verify --key-file "$K" --room hall "$tok"
printf '%s\n' "$tok" | "$CLI" verify --key-file "$K" --room lobby - >/dev/null 2>&1 &&
    ok "token read from stdin" || not_ok "token read from stdin"

# Fixed clock: expiry and not-before.
t2="$("$CLI" token --key-file "$K" --room lobby --identity bob --ttl 1h --no-publish \
    --now 1000000 --not-before +60s)"
check "not yet valid exits 8" 8 "$CLI" verify --key-file "$K" --room lobby --skew 0 --now 1000000 "$t2"
check "valid inside its window" 0 "$CLI" verify --key-file "$K" --room lobby --now 1000060 "$t2"
grep -qx 'perms=join,subscribe' "$TMP/out" && ok "--no-publish drops publish" ||
    not_ok "--no-publish drops publish"
check "expired exits 7" 7 "$CLI" verify --key-file "$K" --room lobby --skew 30s --now 1003690 "$t2"

# Tampering and keys.
check "malformed token exits 3" 3 "$CLI" verify --key-file "$K" --room lobby "${tok}x"
last="${tok: -2:1}"
if [ "$last" = "A" ]; then sub="B"; else sub="A"; fi
check "tampered tag exits 5" 5 "$CLI" verify --key-file "$K" --room lobby "${tok:0:${#tok}-2}${sub}${tok: -1}"
K2="$TMP/other.keys"
"$CLI" keygen --key-id second --out "$K2" 2>/dev/null
check "unknown key id exits 4" 4 "$CLI" verify --key-file "$K2" --room lobby "$tok"

chmod 644 "$K"
check "group/other-readable key file exits 2" 2 "$CLI" token --key-file "$K" --room r --identity i --ttl 1m
grep -q 'mode 0644' "$TMP/err" && ok "mode error names the mode" || not_ok "mode error names the mode"
chmod 600 "$K"

exit $failed
