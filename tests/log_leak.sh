#!/usr/bin/env bash
# Log-leak test (issue #12, item 6): the example programs' end-to-end flows, run with the most
# verbose logging there is (RUST_LOG=trace for every program that logs through `tracing`,
# its dependencies included), leave no key, seed, passphrase or plaintext in any output.
#
#   tests/log_leak.sh                  build the programs, then run the checks
#   LOG_LEAK_NO_BUILD=1 tests/log_leak.sh   reuse the binaries already built (debug)
#
# Flows, each with secrets known to this script:
#   1. ws_node (HOST_PRIVATE_KEY) + ws_client (--client-key): a session and a prompt;
#   2. grpc_chat_node + two grpc_chat_app (identity seeds in --identity files, CHAT_PASSPHRASE
#      sealing --state): a handshake, lines both ways, a rekey, a close;
#   3. two tun_node in network namespaces (PrivateKey, PresharedKey; ping with a payload
#      pattern): root only, else a SKIP line.
# Every stdout and stderr is captured and searched for every secret in lower- and upper-case
# hex, base64 and raw bytes, and for the plaintexts (prompt, chat lines, ping pattern) as text
# and as hex. One exception, by design: the channel a program exists to print plaintext on
# (ws_client's stdout prints the answer, grpc_chat_app's stdout the received lines) is searched
# for keys, seeds and passphrases but not for those plaintexts. A planted leak checks that the
# search itself finds every form.
# Prints PASS/FAIL (or SKIP) per check and, as its last line, `N passed, N failed`; exits
# non-zero on a failure (the logs are then kept). LOG_LEAK_KEEP=1 keeps them anyway.
set -u -o pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/debug/examples"
TIMEOUT="${LOG_LEAK_TIMEOUT:-20}" # seconds per awaited line

if [ -z "${LOG_LEAK_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --quiet --example ws_node --example ws_client \
        --example grpc_chat_node --example grpc_chat_app --example tun_node) ||
        { echo "FAIL build"; echo "0 passed, 1 failed"; exit 1; }
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sealwire-log-leak.XXXXXX")"
PASSED=0
FAILED=0
PIDS=()
NETNS=()

cleanup() {
    for fd in 5 6; do eval "exec $fd>&-" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    for ns in "${NETNS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if [ "$FAILED" -eq 0 ] && [ -z "${LOG_LEAK_KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        echo "logs kept in $WORK"
    fi
    echo "$PASSED passed, $FAILED failed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...
    local name="$1"; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
# wait_for FILE PATTERN: true once FILE has a line with the fixed string PATTERN.
wait_for() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -le "$deadline" ]; do
        [ -f "$1" ] && grep -qF -- "$2" "$1" && return 0
        sleep 0.1
    done
    return 1
}
# wait_exit PID: true once PID has exited (within the timeout).
wait_exit() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -le "$deadline" ]; do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# --- the secrets and how they are searched ----------------------------------------------------
# PATTERNS holds one line per search: KIND<TAB>NAME<TAB>FORM<TAB>FILE-WITH-THE-PATTERN, KIND
# `key` (searched in every output) or `text` (plaintext: not in the designated channels).
PATTERNS="$WORK/patterns.tsv"
: >"$PATTERNS"
N_PAT=0
pattern() { # pattern KIND NAME FORM BYTES...: BYTES as printf escapes
    N_PAT=$((N_PAT + 1))
    printf '%b' "$4" >"$WORK/pattern.$N_PAT"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$WORK/pattern.$N_PAT" >>"$PATTERNS"
}
escapes() { sed 's/../\\x&/g' <<<"$1"; } # hex -> printf escapes
b64_to_hex() { base64 -d <<<"$1" | od -An -v -tx1 | tr -d ' \n'; }
text_to_hex() { printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n'; }
add_key() { # add_key NAME HEX: lower and upper hex, base64, raw bytes
    local hex="${2,,}"
    pattern key "$1" hex "$hex"
    pattern key "$1" HEX "${hex^^}"
    pattern key "$1" base64 "$(printf '%b' "$(escapes "$hex")" | base64 -w0)"
    # Raw bytes (a key written to a log as bytes); grep patterns end at a newline, NUL cannot
    # be passed: such keys are chosen without 00 and 0a bytes.
    if ! grep -qE '^(..)*(00|0a)' <<<"$hex"; then pattern key "$1" raw "$(escapes "$hex")"; fi
}
add_secret_text() { # a passphrase: as text and as hex
    pattern key "$1" text "$2"
    pattern key "$1" hex "$(text_to_hex "$2")"
}
add_plaintext() { # a plaintext: as text and as hex
    pattern text "$1" text "$2"
    pattern text "$1" hex "$(text_to_hex "$2")"
}

# leaks FILE [DESIGNATED]: prints every pattern found in FILE (DESIGNATED=1: keys only).
leaks() {
    local kind name form pfile
    while IFS=$'\t' read -r kind name form pfile; do
        [ "$kind" = text ] && [ "${2:-0}" = 1 ] && continue
        grep -aqF -f "$pfile" -- "$1" && echo "  $name ($form) in $(basename "$1")"
    done <"$PATTERNS"
}
# clean FILE [DESIGNATED]: no pattern found (lists the leaks when there are).
clean() {
    local found
    found="$(leaks "$@")"
    [ -z "$found" ] || { echo "$found"; return 1; }
}

# 1. ws_node / ws_client
HOST_KEY=a18e59cc571769026851fd8a98d1fdb4c3e8b08f137e729b330808cc1788b901
CLIENT_KEY=f83137456752cd0d0ea831277b755455329fecd5004806b0dce37676b853c6da
PROMPT="quokka umbrella recites seventeen xylophone haiku"
add_key "HOST_PRIVATE_KEY" "$HOST_KEY"
add_key "ws_client --client-key" "$CLIENT_KEY"
add_plaintext "the prompt (and the echoed answer)" "$PROMPT"
for word in quokka xylophone; do add_plaintext "a prompt word" "$word"; done
# 2. the chat
SEED_A=74e2e00920e7bf56d1f509ced3697bc0d90699fb16d73847b1367e700d96b642
SEED_B=278342dfc45076e3b9c76568afecffd7d5878803dc1de9a4586e96e30cbc16f6
export CHAT_PASSPHRASE="marmalade lighthouse 4471 passphrase"
LINE_A="the aardvark whispers 88 riddles at midnight"
LINE_B="a narwhal answers with 23 sonnets"
LINE_R="after the rekey the ocelot hums"
add_key "chat identity seed A" "$SEED_A"
add_key "chat identity seed B" "$SEED_B"
add_secret_text "CHAT_PASSPHRASE" "$CHAT_PASSPHRASE"
add_plaintext "chat line A" "$LINE_A"
add_plaintext "chat line B" "$LINE_B"
add_plaintext "chat line after the rekey" "$LINE_R"
# 3. the tunnel (private keys as `wg genkey` writes them; public keys from `wg pubkey`)
WG_KA="qF0MdANGittvMdJpAHvG4cVGcPBg4S2B92AMzAKuzWo="
WG_PA="e8RoNPzK5+KrK1cdxed6N1SSm5PZCl+uLqrW8dSCXHg="
WG_KB="aPv6FCTDhV5oZ7xTwITFyDTiQXSbXW2so/Pqkpfw2nc="
WG_PB="Dsv1kLWyls/FfbUC7ZOFpAW7Pf1vO/Gtkodzasg1vyo="
WG_PSK="OC+Q/XDLCk0YR+whU57q9KGqOapuZTyAz76on0D/LH4="
PING_PATTERN="5eab1e0ddba11ade" # ping -p: the payload of every echo request
add_key "tun_node PrivateKey A" "$(b64_to_hex "$WG_KA")"
add_key "tun_node PrivateKey B" "$(b64_to_hex "$WG_KB")"
add_key "tun_node PresharedKey" "$(b64_to_hex "$WG_PSK")"
pattern text "the ping payload" hex "$PING_PATTERN$PING_PATTERN"
pattern text "the ping payload" raw "$(escapes "$PING_PATTERN$PING_PATTERN")"

# --- the search finds a planted leak in every form -------------------------------------------
planted_leak_is_found() {
    local hex="${HOST_KEY^^}" f="$WORK/planted.log"
    printf 'k=%s\n' "${HOST_KEY:0:10}" >"$f" # a prefix alone is not a leak
    clean "$f" || return 1
    for line in "key=0x$hex" "$(printf '%b' "$(escapes "$HOST_KEY")" | base64 -w0)" \
        "$(printf '%b' "$(escapes "$SEED_A")")" "$WG_PSK" "pw: $CHAT_PASSPHRASE" \
        "prompt=$(text_to_hex "$PROMPT")"; do
        printf 'some log line %s\n' "$line" >"$f"
        [ -n "$(leaks "$f")" ] || { echo "  not found: $line"; return 1; }
    done
    printf 'stdout %s\n' "$PROMPT" >"$f"
    clean "$f" 1 && ! clean "$f" >/dev/null
}
check "the search finds a planted key (hex, HEX, base64, raw), passphrase and plaintext" \
    planted_leak_is_found
rm -f "$WORK/planted.log"

# --- 1. a Fabstir session: ws_node + ws_client ------------------------------------------------
RUST_LOG=trace HOST_PRIVATE_KEY="0x$HOST_KEY" "$BIN/ws_node" --listen 127.0.0.1:0 \
    >"$WORK/ws_node.out" 2>"$WORK/ws_node.err" </dev/null &
PIDS+=("$!")
WS_NODE_PID=$!
if wait_for "$WORK/ws_node.out" "ws_node listen="; then
    LINE="$(grep -m1 '^ws_node listen=' "$WORK/ws_node.out")"
    WS_ADDR="$(sed 's/.*listen=\([^ ]*\).*/\1/' <<<"$LINE")"
    NODE_PUB="$(sed 's/.*public_key=\([^ ]*\).*/\1/' <<<"$LINE")"
    RUST_LOG=trace timeout 60 "$BIN/ws_client" --url "ws://$WS_ADDR/v1/ws" --node-pub "$NODE_PUB" \
        --client-key "$CLIENT_KEY" --session-id 4242 --job-id 77 -- $PROMPT \
        >"$WORK/ws_client.out" 2>"$WORK/ws_client.err" </dev/null
    check "ws_client gets the echoed answer (exit 0)" \
        bash -c "[ $? -eq 0 ] && grep -qF 'seventeen xylophone' '$WORK/ws_client.out'"
else
    fail "ws_node starts"
fi
kill -TERM "$WS_NODE_PID" 2>/dev/null
wait_exit "$WS_NODE_PID"
check "ws_node logged at trace level (the filter took effect)" grep -q "TRACE" "$WORK/ws_node.err"

# --- 2. a chat: grpc_chat_node + two grpc_chat_app ---------------------------------------------
RUST_LOG=trace "$BIN/grpc_chat_node" --listen 127.0.0.1:0 \
    >"$WORK/chat_node.out" 2>"$WORK/chat_node.err" </dev/null &
CHAT_NODE_PID=$!
PIDS+=("$CHAT_NODE_PID")
if wait_for "$WORK/chat_node.out" "listening on 127.0.0.1:"; then
    NODE="http://$(sed -n 's/^listening on //p' "$WORK/chat_node.out" | head -n1)"
    (umask 077 && echo "$SEED_A" >"$WORK/a.key" && echo "$SEED_B" >"$WORK/b.key")
    A_ID="$("$BIN/grpc_chat_app" --identity "$WORK/a.key" --show-identity 2>>"$WORK/app_a.err")"
    B_ID="$("$BIN/grpc_chat_app" --identity "$WORK/b.key" --show-identity 2>>"$WORK/app_b.err")"
    echo "$A_ID" >>"$WORK/app_a.out"
    echo "$B_ID" >>"$WORK/app_b.out"
    CHAT_ID="0123456789abcdef0123456789abcdef"
    start_app() { # start_app NAME FD ROLE PEER_ID PEER_NAME
        local name="$1" fd="$2"
        mkfifo "$WORK/$name.in"
        RUST_LOG=trace "$BIN/grpc_chat_app" --node "$NODE" --identity "$WORK/$name.key" \
            --name "$name" --chat "$CHAT_ID" "--$3" --peer-identity "$4" --peer-name "$5" \
            --state "$WORK/$name.state" --kdf-memory-kib 19456 --kdf-iterations 2 \
            <"$WORK/$name.in" >>"$WORK/app_$name.out" 2>>"$WORK/app_$name.err" &
        PIDS+=("$!")
        eval "APP_${name^^}_PID=$!"
        eval "exec $fd>\"\$WORK/\$name.in\""
    }
    start_app b 6 responder "$A_ID" a
    start_app a 5 initiator "$B_ID" b
    if wait_for "$WORK/app_a.err" "event: established epoch=0"; then
        echo "$LINE_A" >&5
        echo "$LINE_B" >&6
        wait_for "$WORK/app_b.out" "<a> $LINE_A" && wait_for "$WORK/app_a.out" "<b> $LINE_B"
        echo "/rekey" >&5
        wait_for "$WORK/app_b.err" "event: rekeyed epoch=1"
        echo "$LINE_R" >&5
        check "the chat runs: lines both ways, a rekey, a line after it" \
            wait_for "$WORK/app_b.out" "<a> $LINE_R"
        echo "/close" >&5
        check "the chat closes and both apps exit" \
            bash -c "$(declare -f wait_exit); TIMEOUT=$TIMEOUT; wait_exit $APP_A_PID && wait_exit $APP_B_PID"
    else
        fail "the chat's handshake completes"
    fi
else
    fail "grpc_chat_node starts"
fi
kill -TERM "$CHAT_NODE_PID" 2>/dev/null
wait_exit "$CHAT_NODE_PID"
check "grpc_chat_node logged at trace level" grep -q "TRACE" "$WORK/chat_node.err"

# --- 3. a tunnel: two tun_node in network namespaces ------------------------------------------
tunnel_skip=""
if [ "$(id -u)" -ne 0 ]; then
    tunnel_skip="needs root"
elif ! command -v ip >/dev/null 2>&1 || ! command -v ping >/dev/null 2>&1; then
    tunnel_skip="needs ip (iproute2) and ping"
elif [ ! -c /dev/net/tun ]; then
    tunnel_skip="/dev/net/tun is missing"
elif ! ip netns add "swlk$$" 2>/dev/null; then
    tunnel_skip="ip netns is not available here"
else
    ip netns del "swlk$$"
fi
if [ -n "$tunnel_skip" ]; then
    echo "SKIP the tunnel flow: $tunnel_skip"
else
    NS_A="swlkA$$" NS_B="swlkB$$"
    for ns in "$NS_A" "$NS_B"; do ip netns add "$ns" && NETNS+=("$ns") && ip -n "$ns" link set lo up; done
    ip link add "swlk$$a" type veth peer name "swlk$$b"
    ip link set "swlk$$a" netns "$NS_A" && ip link set "swlk$$b" netns "$NS_B"
    ip -n "$NS_A" addr add 192.168.250.1/24 dev "swlk$$a" && ip -n "$NS_A" link set "swlk$$a" up
    ip -n "$NS_B" addr add 192.168.250.2/24 dev "swlk$$b" && ip -n "$NS_B" link set "swlk$$b" up
    wg_conf() { # wg_conf KEY ADDR PEER_PUB PEER_IP ENDPOINT
        printf '[Interface]\nPrivateKey = %s\nListenPort = 51820\nAddress = %s/24\n\n' "$1" "$2"
        printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nAllowedIPs = %s/32\nEndpoint = %s:51820\n' \
            "$3" "$WG_PSK" "$4" "$5"
    }
    (umask 077
     wg_conf "$WG_KA" 10.250.0.1 "$WG_PB" 10.250.0.2 192.168.250.2 >"$WORK/tun_a.conf"
     wg_conf "$WG_KB" 10.250.0.2 "$WG_PA" 10.250.0.1 192.168.250.1 >"$WORK/tun_b.conf")
    TUN_PIDS=()
    for side in a b; do
        ns="$NS_A"; [ "$side" = b ] && ns="$NS_B"
        ip netns exec "$ns" env RUST_LOG=trace "$BIN/tun_node" --config "$WORK/tun_$side.conf" \
            --interface "swlk$side$$" >"$WORK/tun_$side.out" 2>"$WORK/tun_$side.err" </dev/null &
        PIDS+=("$!")
        TUN_PIDS+=("$!")
    done
    up() { ip -n "$1" link show "$2" 2>/dev/null | grep -q "[<,]UP[,>]"; }
    deadline=$((SECONDS + TIMEOUT))
    until { up "$NS_A" "swlka$$" && up "$NS_B" "swlkb$$"; } || [ "$SECONDS" -gt "$deadline" ]; do
        sleep 0.1
    done
    check "tun_node A and B bring their links up" bash -c "$(declare -f up); up $NS_A swlka$$ && up $NS_B swlkb$$"
    ping_ok() { ip netns exec "$1" ping -n -q -c 3 -i 0.2 -W 2 -p "$PING_PATTERN" "$2" >/dev/null 2>&1; }
    check "ping A -> B over the tunnel (a handshake, data both ways)" \
        bash -c "$(declare -f ping_ok); PING_PATTERN=$PING_PATTERN; ping_ok $NS_A 10.250.0.2 || ping_ok $NS_A 10.250.0.2"
    check "ping B -> A over the tunnel" \
        bash -c "$(declare -f ping_ok); PING_PATTERN=$PING_PATTERN; ping_ok $NS_B 10.250.0.1"
    for pid in "${TUN_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait_exit "$pid"; done
    # tun_node and its dependencies have nothing at trace level here; debug lines show the
    # filter took effect.
    check "tun_node logged below info level" grep -qE "TRACE|DEBUG" "$WORK/tun_a.err"
fi

# --- the search -----------------------------------------------------------------------------
echo "searching $(ls "$WORK"/*.out "$WORK"/*.err | wc -l) outputs for $(wc -l <"$PATTERNS") patterns"
for f in "$WORK"/*.out "$WORK"/*.err; do
    name="$(basename "$f")"
    case "$name" in
    # The designated plaintext channels: the answer, the received chat lines.
    ws_client.out | app_a.out | app_b.out)
        check "no key, seed or passphrase in $name ($(wc -c <"$f") bytes; its plaintext is by design)" \
            clean "$f" 1 ;;
    *)
        check "no key, seed, passphrase or plaintext in $name ($(wc -c <"$f") bytes)" clean "$f" ;;
    esac
done
