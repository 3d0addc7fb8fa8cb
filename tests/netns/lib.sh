# shellcheck shell=bash disable=SC2034  # variables set here are read by the sourcing script
# Helpers for tests/netns_interop.sh (sourced; expects ROOT, WORK, PIDS, TUN_NODE to be set by
# the caller where noted). Every wait is bounded.

PASSED=0
FAILED=0

# check NAME CMD... : runs CMD, counts and prints the outcome.
check() {
    local name=$1
    shift
    if "$@" >>"${WORK:-/tmp}/checks.log" 2>&1; then
        PASSED=$((PASSED + 1))
        echo "ok   - $name"
    else
        FAILED=$((FAILED + 1))
        echo "FAIL - $name"
    fi
}

summary() {
    echo "$PASSED passed, $FAILED failed"
    [[ $FAILED -eq 0 ]]
}

fail_setup() {
    echo "FAIL - setup: $1"
    FAILED=$((FAILED + 1))
    for f in "$WORK"/*.log; do
        [[ -f "$f" ]] || continue
        echo "--- $f (last 20 lines)"
        tail -n 20 "$f"
    done
    summary
    exit 1
}

# Installs wg, ip, ping, iperf3, wireguard-go (Debian packages) and boringtun-cli (crates.io),
# once.
install_deps() {
    local need=()
    command -v wg >/dev/null || need+=(wireguard-tools)
    command -v wireguard-go >/dev/null || need+=(wireguard-go)
    command -v ping >/dev/null || need+=(iputils-ping)
    command -v iperf3 >/dev/null || need+=(iperf3)
    if [[ ${#need[@]} -gt 0 ]]; then
        echo "installing ${need[*]}"
        timeout 120 apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq "${need[@]}" >/dev/null ||
            { echo "FAIL - apt-get install ${need[*]}"; return 1; }
    fi
    export PATH="$HOME/.cargo/bin:$PATH"
    if ! command -v boringtun-cli >/dev/null; then
        echo "installing boringtun-cli (cargo install, once)"
        timeout 1800 cargo install boringtun-cli --locked --quiet ||
            { echo "FAIL - cargo install boringtun-cli"; return 1; }
    fi
    BORINGTUN=$(command -v boringtun-cli)
    WIREGUARD_GO=$(command -v wireguard-go)
}

# Builds the tun_node example (release, with the `ring` AEAD when the crate has that feature).
build_tun_node() {
    if [[ -n "${TUN_NODE:-}" ]]; then
        [[ -x "$TUN_NODE" ]] || { echo "FAIL - TUN_NODE=$TUN_NODE is not executable"; return 1; }
        return 0
    fi
    local features=()
    grep -q '^ring *=' "$ROOT/Cargo.toml" && features=(--features ring)
    echo "building tun_node (release ${features[*]})"
    if ! (cd "$ROOT" && timeout 1200 cargo build --release --example tun_node "${features[@]}") \
        >/tmp/sealwire-netns-build.log 2>&1; then
        tail -n 40 /tmp/sealwire-netns-build.log
        echo "FAIL - cargo build --example tun_node"
        return 1
    fi
    local dir
    dir=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
    TUN_NODE="${dir:-$ROOT/target}/release/examples/tun_node"
    [[ -x "$TUN_NODE" ]] || { echo "FAIL - $TUN_NODE not found"; return 1; }
}

# veth_pair NS1 NS2 ADDR1 ADDR2: veth "vetha" in NS1, "vethb" in NS2 (names are per namespace).
veth_pair() {
    local tmp="swv$$"
    ip link add "${tmp}a" type veth peer name "${tmp}b"
    ip link set "${tmp}a" netns "$1"
    ip link set "${tmp}b" netns "$2"
    ip -n "$1" link set "${tmp}a" name vetha
    ip -n "$2" link set "${tmp}b" name vethb
    ip -n "$1" addr add "$3" dev vetha
    ip -n "$2" addr add "$4" dev vethb
    ip -n "$1" link set vetha up
    ip -n "$2" link set vethb up
}

# start_boringtun NS IFACE: boringtun-cli in the foreground inside NS; waits for its UAPI socket.
start_boringtun() {
    local ns=$1 ifname=$2
    ip netns exec "$ns" "$BORINGTUN" "$ifname" --foreground --disable-drop-privileges \
        --disable-connected-udp >"$WORK/bt-$ifname.log" 2>&1 &
    PIDS+=($!)
    local i
    for i in $(seq 1 50); do
        [[ -S /var/run/wireguard/$ifname.sock ]] && ip -n "$ns" link show "$ifname" >/dev/null 2>&1 &&
            return 0
        sleep 0.1
    done
    return 1
}

# start_wireguard_go NS IFACE: wireguard-go in the foreground inside NS (so $! is the process
# doing the work; sets WG_GO_PID); waits for its UAPI socket and its link.
start_wireguard_go() {
    local ns=$1 ifname=$2
    ip netns exec "$ns" "$WIREGUARD_GO" -f "$ifname" >"$WORK/wggo-$ifname.log" 2>&1 &
    WG_GO_PID=$!
    PIDS+=("$WG_GO_PID")
    local i
    for i in $(seq 1 50); do
        [[ -S /var/run/wireguard/$ifname.sock ]] && ip -n "$ns" link show "$ifname" >/dev/null 2>&1 &&
            return 0
        kill -0 "$WG_GO_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$WORK/wggo-$ifname.log" >&2
    return 1
}

# start_tun_node NS CONFIG IFACE TAG [ARGS...]: starts tun_node (with any further ARGS); sets
# TUN_PID and UP_MS (how long the link took to come up); waits at most 5 s.
start_tun_node() {
    local ns=$1 conf=$2 ifname=$3 tag=$4
    shift 4
    local t0
    t0=$(date +%s%N)
    ip netns exec "$ns" env RUST_LOG="${RUST_LOG:-info}" "$TUN_NODE" --config "$conf" \
        --interface "$ifname" "$@" >"$WORK/$tag.log" 2>&1 &
    TUN_PID=$!
    PIDS+=("$TUN_PID")
    local i
    UP_MS=99999
    for i in $(seq 1 100); do
        local link
        link=$(ip -n "$ns" link show "$ifname" 2>/dev/null)
        if grep -q "[<,]UP[,>]" <<<"$link"; then
            UP_MS=$((($(date +%s%N) - t0) / 1000000))
            return 0
        fi
        kill -0 "$TUN_PID" 2>/dev/null || break
        sleep 0.05
    done
    echo "tun_node ($tag) did not bring $ifname up; log:" >&2
    tail -n 20 "$WORK/$tag.log" >&2
    return 1
}

stop_tun_node() {
    kill -TERM "$TUN_PID" 2>/dev/null
    wait_exit "$TUN_PID" 5 || kill -9 "$TUN_PID" 2>/dev/null
    wait "$TUN_PID" 2>/dev/null
    return 0
}

# wait_exit PID SECONDS
wait_exit() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || { wait "$1" 2>/dev/null; return 0; }
        sleep 0.1
    done
    return 1
}

# tun_link_ok NS IFACE MTU UP_MS: up within 2 s, the MTU, and every Address assigned.
tun_link_ok() {
    # Outputs are captured first: `cmd | grep -q` can fail under pipefail (SIGPIPE).
    local ns=$1 ifname=$2 mtu=$3 up_ms=$4
    [[ $up_ms -le 2000 ]] || return 1
    local link addrs
    link=$(ip -n "$ns" link show "$ifname") || return 1
    addrs=$(ip -n "$ns" addr show dev "$ifname") || return 1
    echo "$link"
    echo "$addrs"
    grep -q "[<,]UP[,>]" <<<"$link" || return 1
    grep -q "mtu $mtu " <<<"$link" || return 1
    grep -q "inet 10.241.0.2/24" <<<"$addrs" || return 1
    grep -q "inet6 fd00:241::2/64" <<<"$addrs" || return 1
}

# link_kind_is NS IFACE KIND: `ip -d link show` reports KIND (e.g. "bridge", "tun type tun").
link_kind_is() {
    local link
    link=$(ip -n "$1" -d link show "$2") || return 1
    echo "$link"
    grep -q "^ *$3 " <<<"$link"
}

# refused OUT RC IFACE WHAT: tun_node exited 1 naming IFACE, WHAT it found and --replace.
refused() {
    echo "rc=$2: $1"
    test "$2" -eq 1 && grep -qF "interface $3 already exists" <<<"$1" &&
        grep -qF "$4" <<<"$1" && grep -qF -- "--replace" <<<"$1"
}

# quotes_none TEXT SECRET: TEXT holds no 6 consecutive characters of SECRET.
quotes_none() {
    local i
    for ((i = 0; i + 6 <= ${#2}; i++)); do
        if grep -qF -- "${2:i:6}" <<<"$1"; then
            echo "quotes ${2:i:6}: $1"
            return 1
        fi
    done
}

link_mtu_is() {
    local link
    link=$(ip -n "$1" link show "$2") || return 1
    grep -q "mtu $3 " <<<"$link"
}

ping_cmd() {
    # ping_cmd NS DEST [SOURCE]: 3 echo requests, 1 s timeout each.
    local ns=$1 dst=$2 src=${3:-}
    ip netns exec "$ns" ping -n -q -c 3 -i 0.2 -W 1 ${src:+-I "$src"} "$dst"
}

ping_ok() {
    ping_cmd "$1" "$2" >/dev/null 2>&1 || ping_cmd "$1" "$2"
}

# ping_within NS DEST SECONDS: one ping a second until one answer or the deadline; sets WAITED.
ping_within() {
    local t0=$SECONDS
    for _ in $(seq 1 "$3"); do
        if ip netns exec "$1" ping -n -q -c 1 -W 1 "$2" >/dev/null 2>&1; then
            WAITED=$((SECONDS - t0))
            return 0
        fi
    done
    WAITED=$((SECONDS - t0))
    return 1
}

ping_fails() {
    ! ip netns exec "$1" ping -n -q -c 5 -i 0.5 -W 1 "$2"
}

ping_quiet() {
    ip netns exec "$1" ping -n -q -c 5 -i 0.2 -W 1 -I "$3" "$2" >/dev/null 2>&1
    return 0
}

rx_packets() {
    ip -n "$1" -s link show "$2" | awk '/RX:/ { getline; print $2; exit }'
}

# peer_tx_bytes NS IFACE PEER: bytes boringtun sent to PEER (wg show transfer).
peer_tx_bytes() {
    ip netns exec "$1" wg show "$2" transfer | awk -v p="$3" '$1 == p { print $3 }'
}

# handshake_seen NS IFACE PEER: wg show reports a non-zero latest handshake for PEER.
handshake_seen() {
    local t
    t=$(ip netns exec "$1" wg show "$2" latest-handshakes | awk -v p="$3" '$1 == p { print $2 }')
    [[ -n "$t" && "$t" != 0 ]]
}

no_handshake() {
    ! handshake_seen "$@"
}

endpoint_is() {
    local ep
    ep=$(ip netns exec "$1" wg show "$2" endpoints | awk -v p="$3" '$1 == p { print $2 }')
    echo "endpoint of $3: $ep"
    [[ "$ep" == "$4" ]]
}

# median NUMBERS...: the median of the non-empty arguments (mean of the middle two when even).
median() {
    printf '%s\n' "$@" | grep -E '^[0-9.]+$' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# count_numbers ARGS...: how many arguments are numbers (a failed transfer yields an empty one).
count_numbers() {
    printf '%s\n' "$@" | grep -cE '^[0-9.]+$'
}

# at_least A B: both are numbers and A >= B.
at_least() {
    [[ -n "$1" && -n "$2" ]] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'
}

# cpu_ticks PID: user + system CPU time of PID (all its threads) in clock ticks (1/100 s).
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

BULK_SIZE=${NETNS_BULK:-40M}

# bulk_mbps SERVER_NS SERVER_ADDR CLIENT_NS: BULK_SIZE over TCP with iperf3 from the client to
# the server; prints the receiver's Mbit/s (nothing if the transfer failed).
bulk_mbps() {
    local sns=$1 saddr=$2 cns=$3
    ip netns exec "$sns" timeout 60 iperf3 -s -1 -B "$saddr" >"$WORK/iperf-s-$sns.log" 2>&1 &
    local spid=$!
    sleep 0.3
    ip netns exec "$cns" timeout 60 iperf3 -c "$saddr" -n "$BULK_SIZE" -f m >"$WORK/iperf-c-$cns.log" 2>&1
    wait "$spid" 2>/dev/null
    awk '/receiver/ { for (i = 1; i < NF; i++) if ($(i + 1) == "Mbits/sec") print $i }' \
        "$WORK/iperf-c-$cns.log" | tail -n 1
}

# iperf_timed CLIENT_NS SERVER_ADDR SERVER_NS SECONDS: iperf3 TCP from the client for SECONDS;
# prints "bytes Mbit/s" as the receiver counted them ("0 0" if the transfer failed).
iperf_timed() {
    local cns=$1 saddr=$2 sns=$3 secs=$4
    ip netns exec "$sns" timeout $((secs + 55)) iperf3 -s -1 -B "$saddr" >/dev/null 2>&1 &
    local spid=$!
    sleep 0.3
    ip netns exec "$cns" timeout $((secs + 55)) iperf3 -c "$saddr" -t "$secs" -J >"$WORK/iperf.json" 2>&1
    wait "$spid" 2>/dev/null
    python3 -c 'import json,sys
e = json.load(open(sys.argv[1]))["end"]["sum_received"]
print(int(e["bytes"]), round(e["bits_per_second"] / 1e6))' "$WORK/iperf.json" 2>/dev/null || echo "0 0"
}
