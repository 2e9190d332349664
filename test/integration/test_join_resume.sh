#!/usr/bin/env bash
# Resumed joins through the relay binary (issue 15): scripts/join-cpu
# --resume runs a relay and test/integration/prog_joins, N participants
# join with full handshakes, close, and join again offering their session
# ticket. join-cpu fails unless the relay's roost_tls_resumed_total counted
# no resumption in the first round and exactly N in the second (and the
# clients saw N resumed handshakes); the key exchange it reports comes from
# roost_tls_resumed_psk_ke_total: psk_dhe_ke by default, psk_ke when relay
# and clients both add ":+PSK" to the priority. CPU figures are printed,
# never asserted. TAP output.
set -u
export ROOST_BUILD=${ROOST_BUILD:-build}
n=0
fail=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
nok() { n=$((n + 1)); fail=1; echo "not ok $n - $1"; }
cpus=(--relay-cpu 0 --bench-cpu 1)
[ "$(nproc)" -ge 2 ] || cpus=(--relay-cpu 0 --bench-cpu 0)
PSK="NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:+CHACHA20-POLY1305"
PSK="$PSK:-GROUP-ALL:+GROUP-X25519:+GROUP-SECP256R1:%DISABLE_TLS13_COMPAT_MODE:+PSK"

out=$(scripts/join-cpu --resume --joins 10 --rate 50 "${cpus[@]}" 2>&1)
echo "$out" | sed 's/^/# /'
if echo "$out" | grep -q 'resumed(psk_dhe_ke, 10 resumed)'; then
    ok "10 of 10 joins resumed, psk_dhe_ke by default"
else
    nok "10 of 10 joins resumed, psk_dhe_ke by default"
fi

out=$(scripts/join-cpu --resume --joins 10 --rate 50 --priority "$PSK" "${cpus[@]}" 2>&1)
echo "$out" | sed 's/^/# /'
if echo "$out" | grep -q 'resumed(psk_ke, 10 resumed)'; then
    ok "10 of 10 joins resumed with psk_ke when both sides allow :+PSK"
else
    nok "10 of 10 joins resumed with psk_ke when both sides allow :+PSK"
fi
echo "1..$n"
exit $fail
