#!/usr/bin/env bash
# Measures a tun_node <-> tun_node pair (a measurement, not a test): two network namespaces
# joined by a veth pair, one tun_node in each, iperf3 TCP for SECONDS each way, ROUNDS rounds.
# Prints Mbit/s (median and all rounds) per direction and the CPU seconds both tun_node
# processes spent per GiB moved (from /proc/PID/stat over all transfers).
#
#   bash tests/netns/pair_throughput.sh [BINARY...]    (root; default: build tun_node)
#
# Several binaries (say, before and after a change) each get their own pair, measured in
# alternating order in the same run, so their figures compare. Environment: PAIR_ROUNDS
# (default 3), PAIR_SECONDS (default 5).
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
BINS=("$@")
if ((${#BINS[@]} == 0)); then
    build_tun_node || exit 1
    BINS=("$TUN_NODE")
fi
ROUNDS=${PAIR_ROUNDS:-3}
SECONDS_EACH=${PAIR_SECONDS:-5}
WORK=$(mktemp -d /tmp/sealwire-pair.XXXXXX)
PIDS=()
NSS=()
cleanup() {
    local pid ns
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PID_A PID_B UP DOWN BYTES TICKS
for i in "${!BINS[@]}"; do
    a="swpa$$x$i" b="swpb$$x$i"
    NSS+=("$a" "$b")
    ip netns add "$a"; ip netns add "$b"
    ip -n "$a" link set lo up; ip -n "$b" link set lo up
    veth_pair "$a" "$b" 192.168.251.1/24 192.168.251.2/24
    ka=$(wg genkey); kb=$(wg genkey)
    printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 10.251.0.1/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.251.0.2/32\nEndpoint = 192.168.251.2:51820\n' \
        "$ka" "$(wg pubkey <<<"$kb")" >"$WORK/a$i.conf"
    printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 10.251.0.2/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.251.0.1/32\n' \
        "$kb" "$(wg pubkey <<<"$ka")" >"$WORK/b$i.conf"
    TUN_NODE=${BINS[$i]}
    start_tun_node "$a" "$WORK/a$i.conf" "swpa$i" "a$i" || exit 1
    PID_A[$i]=$TUN_PID
    start_tun_node "$b" "$WORK/b$i.conf" "swpb$i" "b$i" || exit 1
    PID_B[$i]=$TUN_PID
    ping_ok "$a" 10.251.0.2 >/dev/null || { echo "pair $i: no ping"; exit 1; }
    grep -h "UDP send" "$WORK/a$i.log" | sed "s|^.*tun_node: |pair $i (${BINS[$i]}): |" | head -n 1
    UP[$i]=""; DOWN[$i]=""; BYTES[$i]=0; TICKS[$i]=0
done

for round in $(seq 1 "$ROUNDS"); do
    order=("${!BINS[@]}")
    ((round % 2)) || order=($(printf '%s\n' "${order[@]}" | tac))
    for i in "${order[@]}"; do
        a="swpa$$x$i" b="swpb$$x$i"
        t0=$(($(cpu_ticks "${PID_A[$i]}") + $(cpu_ticks "${PID_B[$i]}")))
        read -r by1 up < <(iperf_timed "$a" 10.251.0.2 "$b" "$SECONDS_EACH")
        read -r by2 down < <(iperf_timed "$b" 10.251.0.1 "$a" "$SECONDS_EACH")
        t1=$(($(cpu_ticks "${PID_A[$i]}") + $(cpu_ticks "${PID_B[$i]}")))
        UP[$i]+="$up "; DOWN[$i]+="$down "
        BYTES[$i]=$((BYTES[$i] + by1 + by2)); TICKS[$i]=$((TICKS[$i] + t1 - t0))
    done
done

echo "tun_node pair, iperf3 TCP ${SECONDS_EACH} s each way, $ROUNDS rounds (Mbit/s: median [all]; CPU s/GiB of both processes):"
for i in "${!BINS[@]}"; do
    read -ra u <<<"${UP[$i]}"; read -ra d <<<"${DOWN[$i]}"
    cpu=$(python3 -c "import sys; b, t = int(sys.argv[1]), int(sys.argv[2]); print(f'{t / 100 / (b / 2**30):.1f}' if b else 'n/a')" "${BYTES[$i]}" "${TICKS[$i]}")
    echo "  ${BINS[$i]}: a->b $(median "${u[@]}") [${u[*]}], b->a $(median "${d[@]}") [${d[*]}], CPU $cpu s/GiB"
done
