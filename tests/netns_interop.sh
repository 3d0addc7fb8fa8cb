#!/usr/bin/env bash
# Interop of `examples/tun_node.rs` with real WireGuard peers (boringtun-cli and wireguard-go,
# configured with wg(8)) in network namespaces. Run as root; everything stays inside namespaces made here.
#
#   ns A (boringtun-cli, iface swa*)  -- veth 192.168.241.1/24 fd41::1/64
#                                        <-> 192.168.241.2/24 fd41::2/64 --  ns B (tun_node, swb*)
#        inner 10.241.0.1/24 fd00:241::1/64                 inner 10.241.0.2/24 fd00:241::2/64
#   ns C (boringtun-cli) -- veth 192.168.242.1/24 <-> .2 -- ns D (boringtun-cli): reference
#   ns G (wireguard-go, swg*) -- veth 192.168.244.1/24 <-> .2 -- ns H (tun_node, swh*)
#        inner 10.244.0.1/24 fd00:244::1/64                 inner 10.244.0.2/24 fd00:244::2/64
#
# Checks: bad config exits 2 naming the line; link up within 2 s with MTU and addresses;
# handshake + ping both ways (inner v4 and v6); bounded TCP transfers (iperf3) both ways whose
# median throughput over several rounds must be at least boringtun<->boringtun's in the same
# run; recovery after kill -9 and restart with the same file (over a stale link of the same
# name); roaming of either side's outer address; a spoofed inner source gets nothing through; a
# wrong private key gets nothing through (and the right one does, over an outer IPv6 endpoint);
# SIGTERM; `wg showconf` output is accepted; the default workers (one per two CPUs, 1 to 4)
# each got a TUN queue and a UDP socket. Against wireguard-go (tun_node initiating this time,
# with `--workers 3 --no-offload`, the path without TUN offloads): handshake seen by `wg show`,
# ping both ways (v4 and v6), one bulk TCP transfer each way. tun_node never deletes a link it
# did not create:
# a bridge, a TUN another program holds (boringtun's) and a TUN with an owner stay, and
# tun_node exits 1 naming the link and --replace; with --replace it takes the name; a parse
# error quotes no piece of a key.
# Ends with `N passed, N failed`; exit status non-zero on any failure.
#
# Environment: TUN_NODE=path (skip the build), NETNS_KEEP_LOGS=1 (print log paths, keep them),
# NETNS_ROUNDS=N (throughput rounds, default 5), NETNS_BULK=SIZE (per transfer, default 40M).
set -u -o pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: netns interop needs root"
    exit 0
fi
if ! command -v ip >/dev/null 2>&1; then
    echo "SKIP: the ip command (iproute2) is not available"
    exit 0
fi
probe="swprobe$$"
if ! ip netns add "$probe" 2>/dev/null; then
    echo "SKIP: ip netns is not available here"
    exit 0
fi
ip netns del "$probe"
if [[ ! -c /dev/net/tun ]]; then
    echo "SKIP: /dev/net/tun is missing"
    exit 0
fi

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=tests/netns/lib.sh
source "$HERE/netns/lib.sh"

install_deps || { echo "0 passed, 1 failed"; exit 1; }
build_tun_node || { echo "0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d /tmp/sealwire-netns.XXXXXX)
ID=$$
NS_A="swA$ID"; NS_B="swB$ID"; NS_C="swC$ID"; NS_D="swD$ID"; NS_G="swG$ID"; NS_H="swH$ID"
# Interface names must be unique machine-wide: boringtun's UAPI socket is
# /var/run/wireguard/NAME.sock, and the filesystem is not namespaced.
IF_A="swa$ID"; IF_B="swb$ID"; IF_B2="swx$ID"; IF_C="swc$ID"; IF_D="swd$ID"; IF_G="swg$ID"
IF_H="swh$ID"
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for ns in "$NS_A" "$NS_B" "$NS_C" "$NS_D" "$NS_G" "$NS_H"; do ip netns del "$ns" 2>/dev/null; done
    rm -f /var/run/wireguard/{"$IF_A","$IF_C","$IF_D","$IF_G"}.sock
    if [[ "${NETNS_KEEP_LOGS:-0}" == 1 ]]; then
        echo "logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$NS_A" "$NS_B" "$NS_C" "$NS_D" "$NS_G" "$NS_H"; do
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
veth_pair "$NS_A" "$NS_B" 192.168.241.1/24 192.168.241.2/24
veth_pair "$NS_C" "$NS_D" 192.168.242.1/24 192.168.242.2/24
veth_pair "$NS_G" "$NS_H" 192.168.244.1/24 192.168.244.2/24
# Outer IPv6 too (unique local), for an Endpoint in brackets.
ip -n "$NS_A" addr add fd41::1/64 dev vetha nodad
ip -n "$NS_B" addr add fd41::2/64 dev vethb nodad

KA=$(wg genkey); KB=$(wg genkey); KC=$(wg genkey); KD=$(wg genkey)
KBAD=$(wg genkey); KX=$(wg genkey); KG=$(wg genkey); KH=$(wg genkey)
PA=$(wg pubkey <<<"$KA"); PB=$(wg pubkey <<<"$KB"); PC=$(wg pubkey <<<"$KC"); PD=$(wg pubkey <<<"$KD")
PX=$(wg pubkey <<<"$KX"); PG=$(wg pubkey <<<"$KG"); PH=$(wg pubkey <<<"$KH")

# --- ns A: boringtun-cli, the initiator towards tun_node --------------------------------
start_boringtun "$NS_A" "$IF_A" || fail_setup "boringtun-cli did not start in $NS_A"
cat >"$WORK/a.conf" <<EOF
[Interface]
PrivateKey = $KA
ListenPort = 51820

[Peer]
PublicKey = $PB
AllowedIPs = 10.241.0.2/32, fd00:241::2/128
Endpoint = 192.168.241.2:51820

[Peer]
# The key the second tun_node instance should have had (wrong-key check).
PublicKey = $PX
AllowedIPs = 10.243.0.2/32
Endpoint = 192.168.241.2:51821
EOF
ip netns exec "$NS_A" wg setconf "$IF_A" "$WORK/a.conf"
ip -n "$NS_A" addr add 10.241.0.1/24 dev "$IF_A"
ip -n "$NS_A" addr add fd00:241::1/64 dev "$IF_A" nodad
ip -n "$NS_A" addr add 10.243.0.1/24 dev "$IF_A"
ip -n "$NS_A" link set mtu 1420 up dev "$IF_A"

# --- ns B: tun_node, a pure responder (no Endpoint) --------------------------------------
cat >"$WORK/b.conf" <<EOF
# tun_node under test
[Interface]
PrivateKey = $KB
ListenPort = 51820
Address = 10.241.0.2/24, fd00:241::2/64
DNS = 10.241.0.1   # ignored by tun_node, tolerated like wg-quick

[Peer]
PublicKey = $PA
AllowedIPs = 10.241.0.1/32, fd00:241::1/128
EOF
start_tun_node "$NS_B" "$WORK/b.conf" "$IF_B" b || fail_setup "tun_node did not come up in $NS_B"
# Which UDP path (GSO/GRO or the fallbacks) it chose, logged at start.
check "tun_node logs the UDP path it chose ($(grep -o 'UDP send: [^;]*' "$WORK/b.log" | head -n 1))" \
    grep -q "UDP send: .*; UDP receive: " "$WORK/b.log"
# Its workers: one per two CPUs (1 to 4) by default, each with a TUN queue and a UDP socket.
WORKERS=$(( $(nproc) / 2 ))
WORKERS=$(( WORKERS < 1 ? 1 : WORKERS > 4 ? 4 : WORKERS ))
check "tun_node runs $WORKERS worker(s) by default, each with a TUN queue and a UDP socket" \
    grep -q "workers: $WORKERS TUN queue(s) and $WORKERS UDP socket(s)" "$WORK/b.log"

# --- 1. bad config: exit 2, the line named ------------------------------------------------
printf '[Interface]\nPrivateKey = %s\n[Peer]\nPublicKey = not-a-key\n' "$KB" >"$WORK/bad.conf"
out=$(timeout 10 "$TUN_NODE" --config "$WORK/bad.conf" --interface swbad$ID 2>&1); rc=$?
check "bad config exits 2 naming the line ($(head -c 80 <<<"$out"))" \
    test "$rc" -eq 2 -a -n "$(grep -F 'line 4: PublicKey' <<<"$out")"
# A piece of a private key where a key name goes (a wrapped or mangled paste): the error names
# the line, never the text. The piece is alphanumeric, the kind a lax parser would echo.
for _ in $(seq 1 200); do
    KW=$(wg genkey)
    [[ ${KW:20:16} =~ ^[A-Za-z0-9]+$ ]] && break
done
printf '[Interface]\n%s = 1\nPrivateKey = %s\n' "${KW:20:16}" "$KW" >"$WORK/wrapped.conf"
out=$(timeout 10 "$TUN_NODE" --config "$WORK/wrapped.conf" --interface swbad$ID 2>&1); rc=$?
wrapped_refused() { test "$rc" -eq 2 && grep -q "line 2" <<<"$out" && quotes_none "$out" "$KW"; }
check "a piece of a key in the file: exit 2 naming line 2, no piece of the key quoted ($out)" \
    wrapped_refused

# --- 2. handshake and ping both ways -----------------------------------------------------
check "link $IF_B is up within 2 s (${UP_MS} ms) with MTU 1420 and both addresses" \
    tun_link_ok "$NS_B" "$IF_B" 1420 "$UP_MS"
check "ping A -> B over the tunnel (IPv4; boringtun initiates)" ping_ok "$NS_A" 10.241.0.2
check "ping B -> A over the tunnel (IPv4)" ping_ok "$NS_B" 10.241.0.1
check "ping A -> B over the tunnel (IPv6)" ping_ok "$NS_A" fd00:241::2
check "ping B -> A over the tunnel (IPv6)" ping_ok "$NS_B" fd00:241::1
check "boringtun reports a handshake with tun_node" handshake_seen "$NS_A" "$IF_A" "$PB"
check "tun_node logged the handshake" grep -qi "handshake" "$WORK/b.log"

# --- 2b. tun_node never deletes a link it did not create ------------------------------------
MAIN_PID=$TUN_PID
IF_BR="swr$ID"; IF_OWN="swo$ID"
printf '[Interface]\nPrivateKey = %s\nListenPort = 51823\nAddress = 10.245.0.2/24\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.245.0.1/32\n' \
    "$KBAD" "$PA" >"$WORK/other.conf"
try_tun_node() { # NS IFACE: runs tun_node on other.conf; sets out and rc
    out=$(timeout 10 ip netns exec "$1" "$TUN_NODE" --config "$WORK/other.conf" --interface "$2" 2>&1)
    rc=$?
}
ip -n "$NS_B" link add "$IF_BR" type bridge
try_tun_node "$NS_B" "$IF_BR"
check "an existing bridge named like the interface: exit 1 naming it and --replace" \
    refused "$out" "$rc" "$IF_BR" "a bridge link"
check "and the bridge is left alone" link_kind_is "$NS_B" "$IF_BR" bridge
try_tun_node "$NS_A" "$IF_A"
check "boringtun's TUN (held by a running process): exit 1 naming it" \
    refused "$out" "$rc" "$IF_A" "held by a running process"
check "and boringtun's tunnel still works (A -> B)" ping_ok "$NS_A" 10.241.0.2
ip -n "$NS_B" tuntap add dev "$IF_OWN" mode tun user 65534
try_tun_node "$NS_B" "$IF_OWN"
owned_refused() { refused "$out" "$rc" "$IF_OWN" "owner" && link_kind_is "$NS_B" "$IF_OWN" "tun type tun"; }
check "a TUN with an owner (another program's): exit 1, left alone" owned_refused
start_tun_node "$NS_B" "$WORK/other.conf" "$IF_BR" replace --replace
check "with --replace it deletes the bridge and brings its TUN up (${UP_MS} ms)" \
    link_kind_is "$NS_B" "$IF_BR" "tun type tun"
check "and says so" grep -q "because of --replace" "$WORK/replace.log"
stop_tun_node
ip -n "$NS_B" link del "$IF_OWN"
TUN_PID=$MAIN_PID

# --- 3. bulk transfer, beside boringtun <-> boringtun in ns C/D ---------------------------
start_boringtun "$NS_C" "$IF_C" || fail_setup "boringtun-cli did not start in $NS_C"
start_boringtun "$NS_D" "$IF_D" || fail_setup "boringtun-cli did not start in $NS_D"
BT_D_PID=${PIDS[-1]}
printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.242.0.2/32\nEndpoint = 192.168.242.2:51820\n' \
    "$KC" "$PD" >"$WORK/c.conf"
printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.242.0.1/32\nEndpoint = 192.168.242.1:51820\n' \
    "$KD" "$PC" >"$WORK/d.conf"
ip netns exec "$NS_C" wg setconf "$IF_C" "$WORK/c.conf"
ip netns exec "$NS_D" wg setconf "$IF_D" "$WORK/d.conf"
ip -n "$NS_C" addr add 10.242.0.1/24 dev "$IF_C"; ip -n "$NS_C" link set mtu 1420 up dev "$IF_C"
ip -n "$NS_D" addr add 10.242.0.2/24 dev "$IF_D"; ip -n "$NS_D" link set mtu 1420 up dev "$IF_D"
ping_ok "$NS_D" 10.242.0.1 >/dev/null
# The machine is shared and noisy: ROUNDS rounds, each timing both setups in both directions
# (the order alternates between rounds); the check compares the medians of the same run.
ROUNDS=${NETNS_ROUNDS:-5}
SW_UP=(); BT_UP=(); SW_DOWN=(); BT_DOWN=()
cpu0_sw=$(cpu_ticks "$TUN_PID"); cpu0_bt=$(cpu_ticks "$BT_D_PID")
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then order="sw bt"; else order="bt sw"; fi
    for who in $order; do
        if [[ $who == sw ]]; then
            # B -> A: tun_node encrypts; A -> B: tun_node decrypts.
            SW_UP+=("$(bulk_mbps "$NS_A" 10.241.0.1 "$NS_B")")
            SW_DOWN+=("$(bulk_mbps "$NS_B" 10.241.0.2 "$NS_A")")
        else
            BT_UP+=("$(bulk_mbps "$NS_C" 10.242.0.1 "$NS_D")")
            BT_DOWN+=("$(bulk_mbps "$NS_D" 10.242.0.2 "$NS_C")")
        fi
    done
done
cpu_sw=$(($(cpu_ticks "$TUN_PID") - cpu0_sw)); cpu_bt=$(($(cpu_ticks "$BT_D_PID") - cpu0_bt))
SW_UP_MED=$(median "${SW_UP[@]}"); BT_UP_MED=$(median "${BT_UP[@]}")
SW_DOWN_MED=$(median "${SW_DOWN[@]}"); BT_DOWN_MED=$(median "${BT_DOWN[@]}")
echo "throughput (iperf3 ${BULK_SIZE} TCP, $ROUNDS rounds, Mbit/s; median [all]):"
echo "  tun_node  -> boringtun ${SW_UP_MED:-n/a} [${SW_UP[*]}]"
echo "  boringtun -> boringtun ${BT_UP_MED:-n/a} [${BT_UP[*]}]"
echo "  boringtun -> tun_node  ${SW_DOWN_MED:-n/a} [${SW_DOWN[*]}]"
echo "  boringtun -> boringtun ${BT_DOWN_MED:-n/a} [${BT_DOWN[*]}]"
echo "  CPU over all transfers: tun_node $((cpu_sw * 10)) ms, the boringtun in its place $((cpu_bt * 10)) ms"
check "bulk TCP through tun_node<->boringtun completed in every round" \
    test "$(count_numbers "${SW_UP[@]}" "${SW_DOWN[@]}")" -eq $((2 * ROUNDS))
check "bulk TCP through boringtun<->boringtun completed in every round" \
    test "$(count_numbers "${BT_UP[@]}" "${BT_DOWN[@]}")" -eq $((2 * ROUNDS))
check "throughput tun_node -> boringtun (median ${SW_UP_MED:-n/a}) >= boringtun -> boringtun (${BT_UP_MED:-n/a})" \
    at_least "$SW_UP_MED" "$BT_UP_MED"
check "throughput boringtun -> tun_node (median ${SW_DOWN_MED:-n/a}) >= boringtun -> boringtun (${BT_DOWN_MED:-n/a})" \
    at_least "$SW_DOWN_MED" "$BT_DOWN_MED"
ip netns del "$NS_C"; ip netns del "$NS_D"

# --- 3b. wireguard-go, a second reference peer, in ns G/H -----------------------------------
# Here tun_node initiates (it has the Endpoint) and wireguard-go only responds, the other way
# round from the boringtun pair above.
MAIN_PID=$TUN_PID
start_wireguard_go "$NS_G" "$IF_G" || fail_setup "wireguard-go did not start in $NS_G"
WG_GO_G=$WG_GO_PID
cat >"$WORK/g.conf" <<EOF
[Interface]
PrivateKey = $KG
ListenPort = 51820

[Peer]
PublicKey = $PH
AllowedIPs = 10.244.0.2/32, fd00:244::2/128
EOF
ip netns exec "$NS_G" wg setconf "$IF_G" "$WORK/g.conf"
ip -n "$NS_G" addr add 10.244.0.1/24 dev "$IF_G"
ip -n "$NS_G" addr add fd00:244::1/64 dev "$IF_G" nodad
ip -n "$NS_G" link set mtu 1420 up dev "$IF_G"
cat >"$WORK/h.conf" <<EOF
[Interface]
PrivateKey = $KH
Address = 10.244.0.2/24, fd00:244::2/64

[Peer]
PublicKey = $PG
AllowedIPs = 10.244.0.1/32, fd00:244::1/128
Endpoint = 192.168.244.1:51820
PersistentKeepalive = 25
EOF
# Three workers and no TUN offloads here, whatever the defaults (the boringtun section above
# runs the defaults): the fallback path, one packet per TUN read and write, carries the
# transfers below.
start_tun_node "$NS_H" "$WORK/h.conf" "$IF_H" h --workers 3 --no-offload || fail_setup "tun_node did not come up in $NS_H"
check "wireguard-go: tun_node's link $IF_H is up (${UP_MS} ms)" link_mtu_is "$NS_H" "$IF_H" 1420
check "wireguard-go: tun_node has the 3 workers asked for (3 TUN queues, 3 UDP sockets)" \
    grep -q "workers: 3 TUN queue(s) and 3 UDP socket(s)" "$WORK/h.log"
check "wireguard-go: tun_node runs without TUN offloads as asked (--no-offload)" \
    grep -q "TUN offload: off (--no-offload)" "$WORK/h.log"
check "wireguard-go: ping tun_node -> wireguard-go (IPv4; tun_node initiates)" ping_ok "$NS_H" 10.244.0.1
check "wireguard-go: ping wireguard-go -> tun_node (IPv4)" ping_ok "$NS_G" 10.244.0.2
check "wireguard-go: ping tun_node -> wireguard-go (IPv6)" ping_ok "$NS_H" fd00:244::1
check "wireguard-go: ping wireguard-go -> tun_node (IPv6)" ping_ok "$NS_G" fd00:244::2
check "wireguard-go reports a handshake with tun_node (wg show)" handshake_seen "$NS_G" "$IF_G" "$PH"
WG_UP=$(bulk_mbps "$NS_G" 10.244.0.1 "$NS_H")
WG_DOWN=$(bulk_mbps "$NS_H" 10.244.0.2 "$NS_G")
check "wireguard-go: bulk TCP tun_node -> wireguard-go completed (${BULK_SIZE}, ${WG_UP:-n/a} Mbit/s)" \
    test -n "$WG_UP"
check "wireguard-go: bulk TCP wireguard-go -> tun_node completed (${BULK_SIZE}, ${WG_DOWN:-n/a} Mbit/s)" \
    test -n "$WG_DOWN"
stop_tun_node
kill "$WG_GO_G" 2>/dev/null
wait_exit "$WG_GO_G" 5 || kill -9 "$WG_GO_G" 2>/dev/null
ip netns del "$NS_G"; ip netns del "$NS_H"
TUN_PID=$MAIN_PID

# --- 4. kill -9 and restart with the same file ------------------------------------------
kill -9 "$TUN_PID" 2>/dev/null; wait "$TUN_PID" 2>/dev/null
# Leave a stale (persistent) link with the same name behind, as a crashed setup could.
ip -n "$NS_B" tuntap add dev "$IF_B" mode tun 2>/dev/null
start_tun_node "$NS_B" "$WORK/b.conf" "$IF_B" b2
check "tun_node restarts after kill -9 with the same file (up in ${UP_MS} ms)" \
    tun_link_ok "$NS_B" "$IF_B" 1420 "$UP_MS"
# tun_node has no Endpoint: boringtun still holds the old session and re-handshakes once its
# data goes unanswered (KEEPALIVE_TIMEOUT + REKEY_TIMEOUT = 15 s).
check "traffic resumes after the restart (A -> B within 40 s)" ping_within "$NS_A" 10.241.0.2 40
echo "     (resumed after ${WAITED} s)"
check "the stale link was deleted at start" grep -q "deleting stale interface" "$WORK/b2.log"
check "and B -> A" ping_ok "$NS_B" 10.241.0.1
# A supervisor restarts at once: the killed process (and its TUN) may not be gone yet.
KILLED=$TUN_PID
kill -9 "$KILLED" 2>/dev/null
start_tun_node "$NS_B" "$WORK/b.conf" "$IF_B" b3
wait "$KILLED" 2>/dev/null
sleep 2
restarted() { kill -0 "$TUN_PID" && tun_link_ok "$NS_B" "$IF_B" 1420 0; }
check "restart at once after kill -9 (no wait): running, link up with MTU and addresses" restarted
check "traffic resumes after that restart too (A -> B within 40 s)" ping_within "$NS_A" 10.241.0.2 40
echo "     (resumed after ${WAITED} s)"

# --- 5. roaming ----------------------------------------------------------------------------
# tun_node's outer address changes; its socket is bound to no address, so the next packet
# leaves from the new one and boringtun follows it.
# (Delete first: removing a primary address also removes the secondaries of its subnet.)
ip -n "$NS_B" addr del 192.168.241.2/24 dev vethb
ip -n "$NS_B" addr add 192.168.241.3/24 dev vethb
check "roaming: B moves to 192.168.241.3, B -> A still works" ping_within "$NS_B" 10.241.0.1 10
check "roaming: boringtun now sends to 192.168.241.3" endpoint_is "$NS_A" "$IF_A" "$PB" 192.168.241.3:51820
check "roaming: A -> B works after B moved" ping_ok "$NS_A" 10.241.0.2
# boringtun's outer address changes; tun_node follows its authenticated packets.
ip -n "$NS_A" addr del 192.168.241.1/24 dev vetha
ip -n "$NS_A" addr add 192.168.241.4/24 dev vetha
check "roaming: A moves to 192.168.241.4, A -> B still works" ping_within "$NS_A" 10.241.0.2 10
check "roaming: B -> A works after A moved" ping_ok "$NS_B" 10.241.0.1

# --- 6. spoofed inner source -----------------------------------------------------------------
# 10.241.0.99 is on boringtun's interface but outside the AllowedIPs tun_node has for it.
ip -n "$NS_A" addr add 10.241.0.99/32 dev "$IF_A"
rx0=$(rx_packets "$NS_B" "$IF_B"); tx0=$(peer_tx_bytes "$NS_A" "$IF_A" "$PB")
ping_quiet "$NS_A" 10.241.0.2 10.241.0.99
rx1=$(rx_packets "$NS_B" "$IF_B"); tx1=$(peer_tx_bytes "$NS_A" "$IF_A" "$PB")
check "spoofed inner source: boringtun did encrypt and send them (+$((tx1 - tx0)) bytes)" \
    test $((tx1 - tx0)) -ge 400
check "spoofed inner source 10.241.0.99: nothing reaches tun_node's TUN (rx +$((rx1 - rx0)))" \
    test $((rx1 - rx0)) -lt 3
check "the genuine source still gets through" ping_ok "$NS_A" 10.241.0.2

# --- 7. wrong key (over outer IPv6) -------------------------------------------------------------
# A second tun_node in B uses a private key boringtun does not know (it expects $PX). Its
# Endpoint is boringtun's outer IPv6 address, so the control below also covers that path.
cat >"$WORK/bad-key.conf" <<EOF
[Interface]
PrivateKey = $KBAD
ListenPort = 51821
Address = 10.243.0.2/24
MTU = 1380

[Peer]
PublicKey = $PA
AllowedIPs = 10.243.0.1/32
Endpoint = [fd41::1]:51820
EOF
start_tun_node "$NS_B" "$WORK/bad-key.conf" "$IF_B2" bad
check "wrong private key: ping to A fails" ping_fails "$NS_B" 10.243.0.1
check "wrong private key: boringtun never completed a handshake for it" no_handshake "$NS_A" "$IF_A" "$PX"
stop_tun_node
# Control: with the key boringtun expects, the same setup works, so the failure was the key.
sed "s|^PrivateKey = .*|PrivateKey = $KX|" "$WORK/bad-key.conf" >"$WORK/good-key.conf"
start_tun_node "$NS_B" "$WORK/good-key.conf" "$IF_B2" good
check "control: the expected key gets through" ping_within "$NS_B" 10.243.0.1 10
check "MTU = 1380 from the file is applied" link_mtu_is "$NS_B" "$IF_B2" 1380
check "control: boringtun sees it at its outer IPv6 address" endpoint_is "$NS_A" "$IF_A" "$PX" "[fd41::2]:51821"

# --- 8. clean shutdown on SIGTERM ------------------------------------------------------------
kill -TERM "$TUN_PID"
check "tun_node exits on SIGTERM within 5 s" wait_exit "$TUN_PID" 5
check "and its interface is gone" bash -c "! ip -n $NS_B link show $IF_B2"

# --- 9. what wg(8) writes, tun_node reads -----------------------------------------------------
# boringtun's UAPI does not report the private key, so `wg showconf` omits it: put it back.
ip netns exec "$NS_A" wg showconf "$IF_A" | sed "/^\[Interface\]/a PrivateKey = $KA" >"$WORK/showconf.conf"
ip netns add "$NS_C"
start_tun_node "$NS_C" "$WORK/showconf.conf" "$IF_C" showconf
check "tun_node accepts the output of \`wg showconf\` (2 peers, up in ${UP_MS} ms)" \
    grep -q "2 peer(s)" "$WORK/showconf.log"
stop_tun_node

echo "netns interop took $SECONDS s"

summary
