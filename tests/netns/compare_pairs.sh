#!/usr/bin/env bash
# Measures three WireGuard pairs in one run (a measurement, not a test; it checks nothing):
#
#   tun_node      <-> tun_node       (examples/tunnel, release, `--features ring`)
#   wireguard-go  <-> wireguard-go   (the Debian package)
#   boringtun-cli <-> boringtun-cli  (crates.io)
#
# Each pair has its own two network namespaces joined by a veth pair (outer 192.168.250.1/.2,
# inner 10.250.0.1/.2, MTU 1420). iperf3 TCP runs SECONDS each way per round; every round
# measures all three pairs, the order of the pairs alternating between rounds, so a noisy
# neighbour on a shared machine hits them alike. Reports per pair the median Mbit/s each way,
# the mean of both medians, and the CPU seconds both tunnel processes spent per GiB received
# (utime + stime from /proc/PID/stat, read before and after that pair's transfers), then the
# ratios tun_node / wireguard-go and tun_node / boringtun, as a markdown table.
#
#   sudo bash tests/netns/compare_pairs.sh
#
# Environment: PAIR_ROUNDS (default 3), PAIR_SECONDS (default 5), TUN_NODE=path (skip the
# build). Installs wireguard-tools, iperf3, wireguard-go and boringtun-cli on first use.
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
ROUNDS=${PAIR_ROUNDS:-3}
SECONDS_EACH=${PAIR_SECONDS:-5}
WORK=$(mktemp -d /tmp/sealwire-compare.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
PIDS=()
NSS=()
IFS_MADE=()
cleanup() {
    local pid ns ifname
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 0.3
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    for ifname in "${IFS_MADE[@]}"; do rm -f "/var/run/wireguard/$ifname.sock"; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

KINDS=(tun_node wireguard-go boringtun)
declare -A NAME=([tun_node]="tun_node" [wireguard-go]="wireguard-go" [boringtun]="boringtun-cli")
declare -A COMM=([tun_node]="tun_node" [wireguard-go]="wireguard-go" [boringtun]="boringtun-cli")

# tunnel_pid NS COMM: the process named COMM in namespace NS (found by name, so a daemon that
# forked away from the PID we started is found too).
tunnel_pid() {
    local pid
    for pid in $(ip netns pids "$1"); do
        [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]] && { echo "$pid"; return 0; }
    done
    return 1
}

# start_ref KIND NS IFACE KEY PEER_PUB INNER PEER_INNER ENDPOINT: a wireguard-go or
# boringtun-cli end, configured with wg(8) and ip(8) as wg-quick would.
start_ref() {
    local kind=$1 ns=$2 ifname=$3 key=$4 peer=$5 inner=$6 peer_inner=$7 endpoint=$8
    IFS_MADE+=("$ifname")
    if [[ $kind == wireguard-go ]]; then
        start_wireguard_go "$ns" "$ifname" || return 1
    else
        # boringtun's defaults (connected UDP, 4 threads); foreground so it is ours to stop.
        ip netns exec "$ns" "$BORINGTUN" "$ifname" --foreground --disable-drop-privileges \
            >"$WORK/bt-$ifname.log" 2>&1 &
        PIDS+=($!)
        local i
        for i in $(seq 1 50); do
            [[ -S /var/run/wireguard/$ifname.sock ]] && break
            sleep 0.1
        done
    fi
    printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s:51820\n' \
        "$key" "$peer" "$peer_inner" "$endpoint" >"$WORK/$ifname.conf"
    ip netns exec "$ns" wg setconf "$ifname" "$WORK/$ifname.conf" || return 1
    ip -n "$ns" addr add "$inner/24" dev "$ifname"
    ip -n "$ns" link set mtu 1420 up dev "$ifname"
}

declare -A UP DOWN BYTES TICKS NS_A NS_B
for k in "${!KINDS[@]}"; do
    kind=${KINDS[$k]}
    a="swca$$x$k" b="swcb$$x$k"
    NS_A[$kind]=$a; NS_B[$kind]=$b
    NSS+=("$a" "$b")
    ip netns add "$a"; ip netns add "$b"
    ip -n "$a" link set lo up; ip -n "$b" link set lo up
    veth_pair "$a" "$b" 192.168.250.1/24 192.168.250.2/24
    ka=$(wg genkey); kb=$(wg genkey)
    pa=$(wg pubkey <<<"$ka"); pb=$(wg pubkey <<<"$kb")
    if [[ $kind == tun_node ]]; then
        printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 10.250.0.1/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.250.0.2/32\nEndpoint = 192.168.250.2:51820\n' \
            "$ka" "$pb" >"$WORK/a$k.conf"
        printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = 10.250.0.2/24\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.250.0.1/32\n' \
            "$kb" "$pa" >"$WORK/b$k.conf"
        start_tun_node "$a" "$WORK/a$k.conf" "swca$k" "a$k" || exit 1
        start_tun_node "$b" "$WORK/b$k.conf" "swcb$k" "b$k" || exit 1
    else
        start_ref "$kind" "$a" "swca$$x$k" "$ka" "$pb" 10.250.0.1 10.250.0.2 192.168.250.2 ||
            { echo "$kind did not start"; exit 1; }
        start_ref "$kind" "$b" "swcb$$x$k" "$kb" "$pa" 10.250.0.2 10.250.0.1 192.168.250.1 ||
            { echo "$kind did not start"; exit 1; }
    fi
    ping_ok "$a" 10.250.0.2 >/dev/null || { echo "${NAME[$kind]} pair: no ping"; exit 1; }
    UP[$kind]=""; DOWN[$kind]=""; BYTES[$kind]=0; TICKS[$kind]=0
done
declare -A PID_A PID_B
for kind in "${KINDS[@]}"; do
    PID_A[$kind]=$(tunnel_pid "${NS_A[$kind]}" "${COMM[$kind]}") || { echo "no ${COMM[$kind]} in ${NS_A[$kind]}"; exit 1; }
    PID_B[$kind]=$(tunnel_pid "${NS_B[$kind]}" "${COMM[$kind]}") || { echo "no ${COMM[$kind]} in ${NS_B[$kind]}"; exit 1; }
done

for round in $(seq 1 "$ROUNDS"); do
    order=("${KINDS[@]}")
    ((round % 2)) || mapfile -t order < <(printf '%s\n' "${order[@]}" | tac)
    for kind in "${order[@]}"; do
        a=${NS_A[$kind]} b=${NS_B[$kind]}
        t0=$(($(cpu_ticks "${PID_A[$kind]}") + $(cpu_ticks "${PID_B[$kind]}")))
        read -r by1 up < <(iperf_timed "$a" 10.250.0.2 "$b" "$SECONDS_EACH")
        read -r by2 down < <(iperf_timed "$b" 10.250.0.1 "$a" "$SECONDS_EACH")
        t1=$(($(cpu_ticks "${PID_A[$kind]}") + $(cpu_ticks "${PID_B[$kind]}")))
        UP[$kind]+="$up "; DOWN[$kind]+="$down "
        BYTES[$kind]=$((BYTES[$kind] + by1 + by2)); TICKS[$kind]=$((TICKS[$kind] + t1 - t0))
    done
done

declare -A MEAN CPU
echo
echo "iperf3 TCP, ${SECONDS_EACH} s each way, $ROUNDS rounds; Mbit/s medians; CPU = seconds both tunnel processes spent per GiB received; $(nproc) cores"
echo "($(grep -ho 'UDP send: .*' "$WORK/a0.log" | head -n 1 | sed 's/\x1b\[[0-9;]*m//g'))"
echo
echo "| pair | a -> b Mbit/s | b -> a Mbit/s | mean Mbit/s | CPU s/GiB | all rounds a -> b / b -> a |"
echo "|---|---:|---:|---:|---:|---|"
for kind in "${KINDS[@]}"; do
    read -ra u <<<"${UP[$kind]}"; read -ra d <<<"${DOWN[$kind]}"
    mu=$(median "${u[@]}"); md=$(median "${d[@]}")
    MEAN[$kind]=$(awk -v a="${mu:-0}" -v b="${md:-0}" 'BEGIN { printf "%.0f", (a + b) / 2 }')
    CPU[$kind]=$(awk -v b="${BYTES[$kind]}" -v t="${TICKS[$kind]}" -v hz="$CLK_TCK" \
        'BEGIN { if (b > 0) printf "%.1f", t / hz / (b / 2^30); else print "n/a" }')
    echo "| ${NAME[$kind]} <-> ${NAME[$kind]} | ${mu:-n/a} | ${md:-n/a} | ${MEAN[$kind]} | ${CPU[$kind]} | ${u[*]} / ${d[*]} |"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0 && a ~ /^[0-9.]+$/) printf "%.2fx", a / b; else print "n/a" }'; }
echo
echo "| tun_node pair over | Mbit/s (mean) | CPU s/GiB |"
echo "|---|---:|---:|"
for kind in wireguard-go boringtun; do
    echo "| ${NAME[$kind]} pair | $(ratio "${MEAN[tun_node]}" "${MEAN[$kind]}") | $(ratio "${CPU[tun_node]}" "${CPU[$kind]}") |"
done
