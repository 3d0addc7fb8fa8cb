#!/usr/bin/env bash
# What a restart of either side costs (a measurement, not a test; it checks nothing): the
# README's one-machine setup (tun_node in one namespace, a reference peer in the other, both
# with an Endpoint), then each side in turn is killed with SIGKILL and started again with the
# same configuration, and we time how long until a ping through the tunnel is answered, once
# with the restarted side sending first and once with the side that stayed up sending first.
# The time runs from the kill to the first answer, so it includes the restarted program's
# start (for the peer: start, `wg setconf`, addresses, link up, as wg-quick does).
#
#   sudo bash tests/netns/restart_cost.sh
#
# Environment: RESTART_PEER=wireguard-go|boringtun (default wireguard-go), RESTART_ROUNDS
# (default 2), TUN_NODE=path (skip the build).
set -u -o pipefail

if [[ $(id -u) -ne 0 ]]; then
    echo "SKIP: needs root (network namespaces)"
    exit 0
fi
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
# shellcheck source=tests/netns/lib.sh
source "$HERE/lib.sh"
install_deps || exit 1
build_tun_node || exit 1
PEER=${RESTART_PEER:-wireguard-go}
ROUNDS=${RESTART_ROUNDS:-2}
WORK=$(mktemp -d /tmp/sealwire-restart.XXXXXX)
NS_T="swrt$$"; NS_P="swrp$$"; IF_P="swrp$$"
PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    ip netns del "$NS_T" 2>/dev/null; ip netns del "$NS_P" 2>/dev/null
    rm -f "/var/run/wireguard/$IF_P.sock"
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$NS_T" "$NS_P"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
veth_pair "$NS_T" "$NS_P" 192.168.77.1/24 192.168.77.2/24
KT=$(wg genkey); KP=$(wg genkey)
cat >"$WORK/tn.conf" <<EOF
[Interface]
PrivateKey = $KT
ListenPort = 51820
Address = 10.77.0.1/24

[Peer]
PublicKey = $(wg pubkey <<<"$KP")
AllowedIPs = 10.77.0.2/32
Endpoint = 192.168.77.2:51820
EOF
cat >"$WORK/peer.conf" <<EOF
[Interface]
PrivateKey = $KP
ListenPort = 51820

[Peer]
PublicKey = $(wg pubkey <<<"$KT")
AllowedIPs = 10.77.0.1/32
Endpoint = 192.168.77.1:51820
EOF

start_peer() {
    rm -f "/var/run/wireguard/$IF_P.sock"
    if [[ $PEER == wireguard-go ]]; then
        start_wireguard_go "$NS_P" "$IF_P" || return 1
        PEER_PID=$WG_GO_PID
    else
        start_boringtun "$NS_P" "$IF_P" || return 1
        PEER_PID=${PIDS[-1]}
    fi
    ip netns exec "$NS_P" wg setconf "$IF_P" "$WORK/peer.conf" &&
        ip -n "$NS_P" addr add 10.77.0.2/24 dev "$IF_P" &&
        ip -n "$NS_P" link set mtu 1420 up dev "$IF_P"
}

# until_answer NS DEST: pings (0.2 s apart, 0.5 s timeout) until one is answered, at most 60 s;
# prints the milliseconds since T0.
until_answer() {
    local deadline=$((SECONDS + 60))
    while ((SECONDS < deadline)); do
        if ip netns exec "$1" ping -n -q -c 1 -W 0.5 "$2" >/dev/null 2>&1; then
            echo $((($(date +%s%N) - T0) / 1000000))
            return 0
        fi
        sleep 0.2
    done
    echo "none in 60 s"
}

both_ways() {
    ping_ok "$NS_T" 10.77.0.2 >/dev/null && ping_ok "$NS_P" 10.77.0.1 >/dev/null
}

start_peer || { echo "$PEER did not start"; exit 1; }
start_tun_node "$NS_T" "$WORK/tn.conf" wg0 tn || exit 1
both_ways || { echo "no ping through the tunnel"; exit 1; }

declare -A MS
for round in $(seq 1 "$ROUNDS"); do
    for first in restarted other; do
        # tun_node restarted
        both_ways
        sleep 1
        T0=$(date +%s%N)
        kill -9 "$TUN_PID"; wait "$TUN_PID" 2>/dev/null
        start_tun_node "$NS_T" "$WORK/tn.conf" wg0 "tn$round$first" || exit 1
        if [[ $first == restarted ]]; then
            MS[tun_node,$first]+="$(until_answer "$NS_T" 10.77.0.2) "
        else
            MS[tun_node,$first]+="$(until_answer "$NS_P" 10.77.0.1) "
        fi
        # the peer restarted
        both_ways
        sleep 1
        T0=$(date +%s%N)
        kill -9 "$PEER_PID"; wait "$PEER_PID" 2>/dev/null
        start_peer || { echo "$PEER did not restart"; exit 1; }
        if [[ $first == restarted ]]; then
            MS[peer,$first]+="$(until_answer "$NS_P" 10.77.0.1) "
        else
            MS[peer,$first]+="$(until_answer "$NS_T" 10.77.0.2) "
        fi
    done
done

echo "milliseconds from SIGKILL to the first answered ping, $ROUNDS rounds, peer $PEER:"
echo "| restarted | restarted side sends first | side that stayed up sends first |"
echo "|---|---:|---:|"
echo "| tun_node | ${MS[tun_node,restarted]}| ${MS[tun_node,other]}|"
echo "| $PEER | ${MS[peer,restarted]}| ${MS[peer,other]}|"
