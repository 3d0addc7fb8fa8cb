#!/usr/bin/env bash
# End-to-end test of the chat relay mesh (issue #13): a real nats-server and three
# grpc_chat_node processes joined through it (--nats), two grpc_chat_app processes on different
# nodes, loopback only. A node is SIGKILLed; its app fails over to the next node of its --node
# list and the chat goes on.
#
#   tests/e2e_mesh.sh                   build the examples, then run the checks
#   E2E_NO_BUILD=1 tests/e2e_mesh.sh    reuse the binaries already built
#
# Apps are driven as in tests/e2e_chat.sh: fifos on stdin, stdout/stderr to files polled with a
# timeout (0.1 s steps, no fixed sleeps). Prints PASS/FAIL per check and, as its last line,
# `N passed, N failed`; exits non-zero on any failure (then the logs' tails are shown and the
# logs kept). E2E_KEEP=1 keeps them anyway. NATS_SERVER overrides the nats-server binary.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/debug/examples"
TIMEOUT="${E2E_TIMEOUT:-20}" # seconds per awaited line
NATS_SERVER="${NATS_SERVER:-$(command -v nats-server || echo /usr/sbin/nats-server)}"

if [ -z "${E2E_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --quiet --example grpc_chat_node --example grpc_chat_app --example chat_load) ||
        { echo "FAIL build"; echo "0 passed, 1 failed"; exit 1; }
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sealwire-e2e-mesh.XXXXXX")"
PASSED=0
FAILED=0
PIDS=()

cleanup() {
    for fd in 5 6 7 8; do eval "exec $fd>&-" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
    if [ "$FAILED" -eq 0 ] && [ -z "${E2E_KEEP:-}" ]; then
        rm -rf "$WORK"
    else
        for f in "$WORK"/*.err "$WORK"/*.out; do
            [ -s "$f" ] && { echo "--- tail of $f"; tail -n 12 "$f"; }
        done
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
abort() { fail "$1"; exit 1; }
# kill9 PID...: SIGKILL and wait until they are gone (so their ports are free again).
kill9() { kill -9 "$@" 2>/dev/null; wait "$@" 2>/dev/null; }

# wait_for FILE PATTERN [COUNT]: true once FILE has at least COUNT lines matching the fixed
# string PATTERN, false after $TIMEOUT seconds.
wait_for() {
    local file="$1" pattern="$2" count="${3:-1}" deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -le "$deadline" ]; do
        if [ -f "$file" ] && [ "$(grep -cF -- "$pattern" "$file")" -ge "$count" ]; then return 0; fi
        sleep 0.1
    done
    return 1
}

# --- NATS -----------------------------------------------------------------------------------
[ -x "$NATS_SERVER" ] || abort "nats-server not found (apt-get install nats-server)"
# Port -1: the server picks a free port and logs it.
"$NATS_SERVER" -a 127.0.0.1 -p -1 >"$WORK/nats.out" 2>"$WORK/nats.err" &
PIDS+=("$!")
check "nats-server starts on a free loopback port" \
    wait_for "$WORK/nats.err" "Listening for client connections on 127.0.0.1:"
NATS_PORT="$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/nats.err" | head -n1)"
[ -n "$NATS_PORT" ] || abort "no NATS port"
NATS="nats://127.0.0.1:$NATS_PORT"

# --- command lines --------------------------------------------------------------------------
no_nats() { # the node exits 1 naming the URL when NATS does not answer
    "$BIN/grpc_chat_node" --listen 127.0.0.1:0 --nats nats://127.0.0.1:1 --node-id lost \
        >"$WORK/nonats.out" 2>"$WORK/nonats.err" </dev/null
    [ $? -eq 1 ] && grep -q "nats://127.0.0.1:1" "$WORK/nonats.err"
}
check "node: an unreachable --nats exits 1 naming the URL" no_nats
for flag in --nats --node-id --tls-cert --tls-key --metrics --rate-data --rate-handshakes \
    --chat-idle --mesh-copies --nats-ca; do
    check "grpc_chat_node --help documents $flag" \
        bash -c "'$BIN/grpc_chat_node' --help | grep -qE '^ +$flag '"
done
check "grpc_chat_app --help documents --node URL[,URL...]" \
    bash -c "'$BIN/grpc_chat_app' --help | grep -qE '^ +--node URL\[,URL\.\.\.\]'"
check "grpc_chat_app --help documents --ca FILE" \
    bash -c "'$BIN/grpc_chat_app' --help | grep -qE '^ +--ca FILE'"

# --- three nodes ----------------------------------------------------------------------------
declare -A URL PID APP_PID
start_node() { # start_node NAME
    local n="$1"
    rm -f "$WORK/$n.out"
    RUST_LOG=info "$BIN/grpc_chat_node" --listen 127.0.0.1:0 --nats "$NATS" --node-id "$n" \
        >"$WORK/$n.out" 2>>"$WORK/$n.err" &
    PID[$n]=$!
    PIDS+=("$!")
    wait_for "$WORK/$n.out" "listening on 127.0.0.1:" || return 1
    URL[$n]="http://$(sed -n 's/^listening on //p' "$WORK/$n.out" | head -n1)"
    wait_for "$WORK/$n.err" "joined the mesh"
}
for n in n1 n2 n3; do
    check "node $n starts and joins the mesh" start_node "$n" || abort "node $n did not start"
done

# --- identities and apps --------------------------------------------------------------------
export CHAT_PASSPHRASE="e2e passphrase"
KDF=(--kdf-memory-kib 19456 --kdf-iterations 2)
CHAT="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
A_ID="$("$BIN/grpc_chat_app" --identity "$WORK/a.key" --show-identity)"
B_ID="$("$BIN/grpc_chat_app" --identity "$WORK/b.key" --show-identity)"

check "an app with no node answering exits 1 naming each URL and its cause" bash -c "
    '$BIN/grpc_chat_app' --identity '$WORK/a.key' --chat $CHAT --initiator \
        --node http://127.0.0.1:1,http://127.0.0.1:2 </dev/null >/dev/null 2>'$WORK/nonode.err'
    [ \$? -eq 1 ] && grep -q 'http://127.0.0.1:1: ' '$WORK/nonode.err' &&
        grep -q 'http://127.0.0.1:2: ' '$WORK/nonode.err'"

start_app() { # start_app NAME FD ROLE PEER_ID PEER_NAME NODES
    local name="$1" fd="$2" role="$3" peer="$4" peer_name="$5" nodes="$6"
    rm -f "$WORK/$name.in"
    mkfifo "$WORK/$name.in"
    "$BIN/grpc_chat_app" --node "$nodes" --identity "$WORK/$name.key" --name "$name" \
        --chat "$CHAT" --peer-identity "$peer" --peer-name "$peer_name" "--$role" \
        --state "$WORK/$name.state" "${KDF[@]}" \
        <"$WORK/$name.in" >>"$WORK/$name.out" 2>>"$WORK/$name.err" &
    PIDS+=("$!")
    APP_PID[$name]=$!
    eval "exec $fd>\"\$WORK/\$name.in\""
}
say_a() { echo "$1" >&5; }
say_b() { echo "$1" >&6; }

# B on n2 (then n3, n1), A on n1 (then n2, n3): the chat crosses nodes from the start.
start_app b 6 responder "$A_ID" a "${URL[n2]},${URL[n3]},${URL[n1]}"
check "B registers at n2" wait_for "$WORK/b.err" "event: registered node=${URL[n2]} queued=0"
start_app a 5 initiator "$B_ID" b "${URL[n1]},${URL[n2]},${URL[n3]}"
check "A registers at n1" wait_for "$WORK/a.err" "event: registered node=${URL[n1]} queued=0"

check "handshake across nodes completes on A" \
    wait_for "$WORK/a.err" "event: established epoch=0 peer=$B_ID"
check "handshake across nodes completes on B" \
    wait_for "$WORK/b.err" "event: established epoch=0 peer=$A_ID"
say_a "hello from a on n1"
check "A (n1) -> B (n2) arrives" wait_for "$WORK/b.out" "<a> hello from a on n1"
say_b "hello from b on n2"
check "B (n2) -> A (n1) arrives" wait_for "$WORK/a.out" "<b> hello from b on n2"
check "n1 joined A to the chat, n2 joined B (each node holds only its own app)" bash -c "
    grep -q 'joined chat identity=${A_ID:0:16}' '$WORK/n1.err' &&
    grep -q 'joined chat identity=${B_ID:0:16}' '$WORK/n2.err' &&
    ! grep -q 'joined chat identity=${B_ID:0:16}' '$WORK/n1.err'"

# --- a stranger who knows the chat id is refused on every node (the membership is mesh-wide) ---
S_ID="$("$BIN/grpc_chat_app" --identity "$WORK/s.key" --show-identity)"
for n in n1 n2 n3; do
    check "a stranger's start of the live chat is refused on $n (PermissionDenied)" bash -c "
        timeout 30 '$BIN/grpc_chat_app' --identity '$WORK/s.key' --name stranger --chat $CHAT \
            --initiator --node '${URL[$n]}' </dev/null >/dev/null 2>'$WORK/stranger-$n.err'
        grep -q 'refused uplink #2: PermissionDenied' '$WORK/stranger-$n.err'"
done
say_a "still private"
check "the chat goes on after the stranger's attempts" wait_for "$WORK/b.out" "<a> still private"

# --- a node dies ----------------------------------------------------------------------------
kill9 "${PID[n2]}"
check "B notices its node is gone" wait_for "$WORK/b.err" "event: relay-lost"
check "B fails over to the next node (n3)" \
    wait_for "$WORK/b.err" "event: relay-reconnected node=${URL[n3]} queued=0"
check "n3 joins B to the chat" wait_for "$WORK/n3.err" "identity=${B_ID:0:16}"
say_a "after failover from a"
check "A (n1) -> B (now n3) arrives after the fail-over" \
    wait_for "$WORK/b.out" "<a> after failover from a"
say_b "after failover from b"
check "B (n3) -> A (n1) arrives after the fail-over" \
    wait_for "$WORK/a.out" "<b> after failover from b"
check "A kept its node (no relay-lost on A)" bash -c "! grep -q 'event: relay-lost' '$WORK/a.err'"

# --- rekey after the fail-over --------------------------------------------------------------
say_b "/rekey"
check "rekey after fail-over: B reaches epoch 1" wait_for "$WORK/b.err" "event: rekeyed epoch=1"
check "rekey after fail-over: A reaches epoch 1" wait_for "$WORK/a.err" "event: rekeyed epoch=1"
for i in 1 2 3 4 5; do say_a "burst $i from a"; done
check "five lines A -> B after the rekey, in order" bash -c "
    deadline=\$((SECONDS + $TIMEOUT))
    while [ \$SECONDS -le \$deadline ]; do
        [ \"\$(grep -F '<a> burst ' '$WORK/b.out' | tr -d '\n')\" = \
          '<a> burst 1 from a<a> burst 2 from a<a> burst 3 from a<a> burst 4 from a<a> burst 5 from a' ] && exit 0
        sleep 0.1
    done
    exit 1"

# --- n2 comes back on its address; A's node dies: A fails over to the restarted n2 -----------
start_node_at() { # start_node_at NAME ADDR [NODE ARGS...]: restart NAME on the address it had
    local n="$1" addr="$2" joined
    shift 2
    joined=$(($(grep -c "joined the mesh" "$WORK/$n.err") + 1))
    rm -f "$WORK/$n.out"
    RUST_LOG=info "$BIN/grpc_chat_node" --listen "$addr" --nats "$NATS" --node-id "$n" "$@" \
        >"$WORK/$n.out" 2>>"$WORK/$n.err" &
    PID[$n]=$!
    PIDS+=("$!")
    wait_for "$WORK/$n.out" "listening on $addr" && wait_for "$WORK/$n.err" "joined the mesh" "$joined"
}
check "n2 restarts on its address and rejoins the mesh" start_node_at n2 "${URL[n2]#http://}"
kill9 "${PID[n1]}"
check "A fails over from n1 to the restarted n2" \
    wait_for "$WORK/a.err" "event: relay-reconnected node=${URL[n2]} queued=0"
say_a "from a on the restarted n2"
check "A (n2) -> B (n3) arrives" wait_for "$WORK/b.out" "<a> from a on the restarted n2"
say_b "from b on n3"
check "B (n3) -> A (n2) arrives" wait_for "$WORK/a.out" "<b> from b on n3"

# --- SIGTERM: the node tells its apps first ---------------------------------------------------
check "n1 restarts on its address and rejoins the mesh" start_node_at n1 "${URL[n1]#http://}"
kill -TERM "${PID[n3]}"
check "SIGTERM on n3: B is told the node is shutting down" \
    wait_for "$WORK/b.err" "the node is shutting down"
check "B fails over from the stopped n3 to n1" \
    wait_for "$WORK/b.err" "event: relay-reconnected node=${URL[n1]}"
check "n3 exits 0 after SIGTERM" bash -c "
    for _ in \$(seq 100); do kill -0 ${PID[n3]} 2>/dev/null || exit 0; sleep 0.1; done; exit 1"

# in_order FILE PREFIX N: FILE shows lines `PREFIX 1` .. `PREFIX N` exactly once each, in order
# (waits up to 60 s for the last).
in_order() {
    local file="$1" prefix="$2" n="$3" deadline=$((SECONDS + 60))
    while [ "$SECONDS" -le "$deadline" ]; do
        [ "$(grep -cF "$prefix " "$file")" -ge "$n" ] && break
        sleep 0.2
    done
    grep -F "$prefix " "$file" | awk -v n="$n" -v p="$prefix " '
        { want = p (NR); if ($0 != want) { print "line " NR ": " $0 " (expected " want ")"; bad = 1; exit } }
        END { if (!bad && NR != n) { print NR " lines, expected " n; bad = 1 } exit bad }'
}

# --- a node SIGKILLed during a 1,000-line burst: every line arrives once, in order -------------
# A is on n2, B on n1. n2 dies after B has seen 100 lines; A fails over to n3... which is
# stopped, so to n1; its unacknowledged frames go again (copies are dropped by B).
start_node_at n3 "${URL[n3]#http://}" >/dev/null
( for i in $(seq 1000); do echo "line $i"; done >&5 ) &
BURST=$!
if TIMEOUT=60 wait_for "$WORK/b.out" "<a> line 100"; then
    kill9 "${PID[n2]}"
    pass "n2 SIGKILLed after B saw 100 of 1,000 lines"
else
    fail "the burst did not start"
fi
wait "$BURST"
check "relay killed mid-burst: B got lines 1..1000 once each, in order" in_order "$WORK/b.out" "<a> line" 1000
check "A reported no failed message" bash -c "! grep -q 'not delivered\|not stored' '$WORK/a.err'"

# --- an app SIGKILLed mid-burst, restarted on its sealed state: no line it took is lost --------
check "n2 restarts for the app-crash case" start_node_at n2 "${URL[n2]#http://}"
( for i in $(seq 1000); do echo "kline $i"; done >&5 ) 2>/dev/null &
BURST=$!
wait_for "$WORK/b.out" "<a> kline 50"
kill9 "${APP_PID[a]}"
exec 5>&-
wait "$BURST" 2>/dev/null
# A now prefers n2 (B is on n1), so the chat crosses nodes again.
start_app a 5 initiator "$B_ID" b "${URL[n2]},${URL[n1]},${URL[n3]}"
check "A resumes after SIGKILL" wait_for "$WORK/a.err" "event: resumed"
say_a "after the crash"
check "A's first line after the restart arrives" wait_for "$WORK/b.out" "<a> after the crash"
KLINES=$(grep -cF "<a> kline " "$WORK/b.out")
check "app killed mid-burst: B got klines 1..$KLINES once each, in order, no gap ($KLINES >= 50)" \
    bash -c "[ $KLINES -ge 50 ] && $(declare -f in_order); in_order '$WORK/b.out' '<a> kline' $KLINES"
check "A's kept frames: restored or none pending" bash -c "
    grep -q 'event: outbox-restored' '$WORK/a.err' || [ ! -e '$WORK/a.state.outbox' ]"

# --- the recipient SIGKILLed mid-burst, restarted on its sealed state: it gets every line ------
# A is on n2, B on n1. B acknowledges only what it sealed; n1 delivers the rest again on B's
# next stream, and n2 keeps its copies until B has them.
RESUMED_B=$(grep -cF "event: resumed" "$WORK/b.err")
( for i in $(seq 1000); do echo "rline $i"; done >&5 ) 2>/dev/null &
BURST=$!
if TIMEOUT=60 wait_for "$WORK/b.out" "<a> rline 100"; then
    kill9 "${APP_PID[b]}"
    pass "B SIGKILLed after it showed 100 of 1,000 lines"
else
    fail "the rline burst did not start"
fi
exec 6>&-
wait "$BURST"
start_app b 6 responder "$A_ID" a "${URL[n1]},${URL[n2]},${URL[n3]}"
check "B resumes after SIGKILL" wait_for "$WORK/b.err" "event: resumed" $((RESUMED_B + 1))
check "recipient killed mid-burst: B shows every rline 1..1000" bash -c "
    deadline=\$((SECONDS + 90))
    while [ \$SECONDS -le \$deadline ]; do
        [ \$(grep -F '<a> rline ' '$WORK/b.out' | sort -u | wc -l) -ge 1000 ] && exit 0
        sleep 0.2
    done
    exit 1"
RSHOWN=$(grep -cF "<a> rline " "$WORK/b.out")
check "a line shown twice at most around the crash (shown before it was sealed): $((RSHOWN - 1000)) <= 256" \
    bash -c "[ $RSHOWN -le 1256 ]"
check "A reported no failed message" bash -c "! grep -q 'not delivered\|not stored' '$WORK/a.err'"

# --- TLS: a node serving gRPC over TLS, apps connecting with --ca ------------------------------
make_cert() {
    command -v openssl >/dev/null || { echo "no openssl"; return 1; }
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=sealwire e2e CA" -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem" 2>/dev/null &&
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
        -keyout "$WORK/tls-key.pem" -out "$WORK/tls.csr" 2>/dev/null &&
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/tls.ext" &&
    openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
        -CAcreateserial -days 2 -extfile "$WORK/tls.ext" -out "$WORK/tls-cert.pem" 2>/dev/null
}
check "a CA and a certificate for TLS" make_cert

# The NATS connection over TLS: a second nats-server that requires TLS.
"$NATS_SERVER" -a 127.0.0.1 -p -1 --tls --tlscert "$WORK/tls-cert.pem" --tlskey "$WORK/tls-key.pem" \
    >"$WORK/nats-tls.out" 2>"$WORK/nats-tls.err" &
PIDS+=("$!")
wait_for "$WORK/nats-tls.err" "Listening for client connections on 127.0.0.1:"
NATS_TLS="tls://localhost:$(sed -n 's/.*Listening for client connections on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$WORK/nats-tls.err" | head -n1)"
RUST_LOG=info "$BIN/grpc_chat_node" --listen 127.0.0.1:0 --nats "$NATS_TLS" --nats-ca "$WORK/ca.pem" \
    --node-id t1 >"$WORK/t1.out" 2>"$WORK/t1.err" &
T1=$!
PIDS+=("$T1")
check "NATS over TLS: a node with --nats-ca joins a TLS NATS server" wait_for "$WORK/t1.err" "joined the mesh"
kill "$T1" 2>/dev/null
check "NATS over TLS: without --nats-ca the node exits 1 naming the URL" bash -c "
    timeout 30 '$BIN/grpc_chat_node' --listen 127.0.0.1:0 --nats '$NATS_TLS' --node-id t2 \
        </dev/null >/dev/null 2>'$WORK/t2.err'; [ \$? -eq 1 ] && grep -q '$NATS_TLS' '$WORK/t2.err'"
RUST_LOG=info "$BIN/grpc_chat_node" --listen 127.0.0.1:0 --nats "$NATS" --node-id n4 \
    --metrics 127.0.0.1:0 --rate-data 20 --tls-cert "$WORK/tls-cert.pem" --tls-key "$WORK/tls-key.pem" >"$WORK/n4.out" 2>"$WORK/n4.err" &
PID[n4]=$!
PIDS+=("$!")
wait_for "$WORK/n4.out" "listening on 127.0.0.1:"
TLS_URL="https://localhost:$(sed -n 's/^listening on 127\.0\.0\.1://p' "$WORK/n4.out" | head -n1)"
CHAT2="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
C_ID="$("$BIN/grpc_chat_app" --identity "$WORK/c.key" --show-identity)"
D_ID="$("$BIN/grpc_chat_app" --identity "$WORK/d.key" --show-identity)"
tls_app() { # tls_app NAME ROLE PEER_ID NODE [ARGS...]
    local name="$1" role="$2" peer="$3" node="$4"; shift 4
    mkfifo "$WORK/$name.in"
    "$BIN/grpc_chat_app" --node "$node" --identity "$WORK/$name.key" --name "$name" \
        --chat "$CHAT2" --peer-identity "$peer" "--$role" "$@" \
        <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    PIDS+=("$!")
}
tls_app d responder "$C_ID" "${URL[n3]},${URL[n2]}"
exec 8>"$WORK/d.in"
tls_app c initiator "$D_ID" "$TLS_URL" --ca "$WORK/ca.pem"
exec 7>"$WORK/c.in"
check "TLS: C registers at n4 over https with --ca" wait_for "$WORK/c.err" "event: registered node=$TLS_URL"
check "TLS: C (n4) and D (n3) complete the handshake" wait_for "$WORK/c.err" "event: established epoch=0"
echo "over tls and the mesh" >&7
check "TLS: C (n4, TLS) -> D (n3) arrives" wait_for "$WORK/d.out" "over tls and the mesh"
check "TLS: an app without --ca cannot connect to the TLS node" bash -c "
    '$BIN/grpc_chat_app' --identity '$WORK/c.key' --chat $CHAT2 --initiator --node '$TLS_URL' \
        </dev/null >/dev/null 2>'$WORK/noca.err'; [ \$? -eq 1 ] && grep -q '$TLS_URL' '$WORK/noca.err'"

# --- rate limits and metrics on n4 ----------------------------------------------------------
( for i in $(seq 100); do echo "rline $i"; done >&7 ) &
wait $!
check "rate limit (--rate-data 20): C is told to slow down and sends again" \
    wait_for "$WORK/c.err" "event: outbox-retry reason=\"rate limited"
check "rate limit: D still gets rline 1..100 once each, in order" \
    in_order "$WORK/d.out" "<${C_ID:0:16}> rline" 100
METRICS_URL="http://$(sed -n 's/^metrics on //p' "$WORK/n4.out" | head -n1)/metrics"
curl -fsS "$METRICS_URL" >"$WORK/metrics.txt" 2>"$WORK/metrics.err"
check "metrics: n4 serves Prometheus text with its registrations" \
    grep -qE '^chat_node_registrations_total [1-9]' "$WORK/metrics.txt"
check "metrics: data and handshake frames by kind, bytes, mailbox depth" bash -c "
    grep -qE '^chat_node_frames_total\{kind=\"data\"\} [1-9]' '$WORK/metrics.txt' &&
    grep -qE '^chat_node_frames_total\{kind=\"handshake_init\"\} 1' '$WORK/metrics.txt' &&
    grep -qE '^chat_node_frame_bytes_total [1-9]' '$WORK/metrics.txt' &&
    grep -qE '^chat_node_mailbox_frames [0-9]' '$WORK/metrics.txt'"
check "metrics: rate-limited frames and refusals by reason" bash -c "
    grep -qE '^chat_node_rate_limited_total\{scope=\"app\",kind=\"data\"\} [1-9]' '$WORK/metrics.txt' &&
    grep -qE '^chat_node_refused_total\{reason=\"RateLimited\"\} [1-9]' '$WORK/metrics.txt'"

# --- the recipient's node SIGKILLed mid-burst: D fails over, every line still arrives once ----
( for i in $(seq 100); do echo "fline $i"; done >&7 ) &
BURST=$!
if TIMEOUT=60 wait_for "$WORK/d.out" "> fline 30"; then
    kill9 "${PID[n3]}"
    pass "D's node n3 SIGKILLed after D saw 30 of 100 lines"
else
    fail "the fline burst did not start"
fi
wait "$BURST"
check "D fails over to n2" wait_for "$WORK/d.err" "event: relay-reconnected node=${URL[n2]}"
check "recipient's node killed mid-burst: D shows fline 1..100 once each, in order" \
    in_order "$WORK/d.out" "<${C_ID:0:16}> fline" 100
check "recipient's node killed mid-burst: D got every fline once (copies dropped)" bash -c "
    deadline=\$((SECONDS + 60))
    while [ \$SECONDS -le \$deadline ]; do
        [ \$(grep -F '> fline ' '$WORK/d.out' | sort -u | wc -l) -ge 100 ] && break
        sleep 0.2
    done
    [ \$(grep -F '> fline ' '$WORK/d.out' | wc -l) -eq 100 ] &&
        [ \$(grep -F '> fline ' '$WORK/d.out' | sort -u | wc -l) -eq 100 ]"
exec 7>&- 8>&-

# --- 200 concurrent chats across two nodes, node memory bounded -----------------------------
check "the TLS node n4 stops (SIGTERM)" kill "${PID[n4]}"
check "n3 restarts for the load" start_node_at n3 "${URL[n3]#http://}"
"$BIN/chat_load" --node "${URL[n1]}" --peer-node "${URL[n3]}" --chats 200 --frames 50 \
    --size 1024 --latency-frames 100 >"$WORK/load.out" 2>"$WORK/load.err"
check "200 concurrent chats across n1 and n3: every frame (10,000) arrives" \
    grep -qx "frames_received 10000" "$WORK/load.out"
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
RSS1=$(rss_kib "${PID[n1]}"); RSS3=$(rss_kib "${PID[n3]}")
check "node memory stays bounded under 200 chats (n1 ${RSS1} KiB, n3 ${RSS3} KiB < 256 MiB)" \
    bash -c "[ ${RSS1:-999999999} -lt 262144 ] && [ ${RSS3:-999999999} -lt 262144 ]"
sed 's/^/  load: /' "$WORK/load.out"

# --- every node restarts at once; the chat goes on; an idle chat expires everywhere ----------
# node_of FILE: the name of the node the app of FILE reconnected to last.
node_of() {
    local url n
    url=$(grep -o 'event: relay-reconnected node=[^ ]*' "$1" | tail -n 1 | sed 's/.*node=//')
    for n in n1 n2 n3; do [ "${URL[$n]}" = "$url" ] && echo "$n"; done
}
RECON_A=$(grep -cF "event: relay-reconnected" "$WORK/a.err")
RECON_B=$(grep -cF "event: relay-reconnected" "$WORK/b.err")
kill9 "${PID[n1]}" "${PID[n2]}" "${PID[n3]}"
for n in n1 n2 n3; do
    check "all nodes down and back: $n restarts (--chat-idle 6)" \
        start_node_at "$n" "${URL[$n]#http://}" --chat-idle 6
done
# Each app goes on with the next node of its list.
check "A reconnects after the restart" \
    wait_for "$WORK/a.err" "event: relay-reconnected" $((RECON_A + 1))
check "B reconnects after the restart" \
    wait_for "$WORK/b.err" "event: relay-reconnected" $((RECON_B + 1))
NODE_A=$(node_of "$WORK/a.err")
NODE_B=$(node_of "$WORK/b.err")
check "A and B are on nodes of the mesh (${NODE_A:-?}, ${NODE_B:-?})" \
    bash -c "[ -n '$NODE_A' ] && [ -n '$NODE_B' ]"
say_a "after all nodes restarted"
check "A ($NODE_A) -> B ($NODE_B) after every node restarted" \
    wait_for "$WORK/b.out" "<a> after all nodes restarted"
say_b "b after the restart"
check "B ($NODE_B) -> A ($NODE_A) after every node restarted" \
    wait_for "$WORK/a.out" "<b> b after the restart"

# --- /close crosses nodes -------------------------------------------------------------------
say_a "/close"
check "/close from A ($NODE_A) reaches B ($NODE_B) as a close event" \
    wait_for "$WORK/b.err" "event: closed reason=Normal by_peer=true"
check "A reports its own close" wait_for "$WORK/a.err" "event: closed reason=Normal by_peer=false"
for n in $(printf '%s\n' "$NODE_A" "$NODE_B" | sort -u); do
    check "the idle chat expires on $n (holding A or B) and its relay state is wiped" \
        wait_for "$WORK/$n.err" "chat expired chat=$CHAT"
done

check "no chat error on either app" bash -c "! grep -q '^error:' '$WORK/a.err' '$WORK/b.err'"
