#!/usr/bin/env bash
# End-to-end test of the chat over gRPC: one keyless relay node, two app processes, loopback only.
#
#   tests/e2e_chat.sh            build the examples, then run the checks
#   E2E_NO_BUILD=1 tests/e2e_chat.sh   reuse the binaries already built
#
# Apps are driven through fifos on stdin; their stdout (received messages) and stderr (events,
# `event: KIND key=value ...`) go to files that the checks poll with a timeout. No fixed sleeps
# beyond the 0.1 s poll step; the whole run takes a few seconds after the build.
# Prints PASS/FAIL per check and, as its last line, `N passed, N failed`; exits non-zero on any
# failure (then the logs' tails are shown and the logs kept). E2E_KEEP=1 keeps them anyway.
set -u

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET/debug/examples"
TIMEOUT="${E2E_TIMEOUT:-20}" # seconds per awaited line

if [ -z "${E2E_NO_BUILD:-}" ]; then
    (cd "$ROOT" && cargo build --quiet --example grpc_chat_node --example grpc_chat_app \
        --example grpc_chat_probe) || { echo "FAIL build"; echo "0 passed, 1 failed"; exit 1; }
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sealwire-e2e-chat.XXXXXX")"
PASSED=0
FAILED=0
PIDS=()

# On exit: stop every process started here, show the logs' tails if something failed, and
# print the summary as the very last line.
cleanup() {
    for fd in 5 6; do eval "exec $fd>&-" 2>/dev/null; done
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

# wait_for FILE PATTERN [COUNT]: true once FILE has at least COUNT lines matching the fixed string
# PATTERN, false after $TIMEOUT seconds.
wait_for() {
    local file="$1" pattern="$2" count="${3:-1}" deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -le "$deadline" ]; do
        if [ -f "$file" ] && [ "$(grep -cF -- "$pattern" "$file")" -ge "$count" ]; then return 0; fi
        sleep 0.1
    done
    return 1
}

# --- help and usage -------------------------------------------------------------------------
# documents_every_flag NAME: `NAME --help` exits 0 with nothing on stderr, and its stdout has an
# option line for every flag the parser in examples/chat/NAME.rs matches (its quoted "--flag" and
# "-h" strings), so the help cannot drift from the parser.
documents_every_flag() {
    local name="$1" flag flags
    "$BIN/$name" --help >"$WORK/help.out" 2>"$WORK/help.err" </dev/null || return 1
    [ ! -s "$WORK/help.err" ] || return 1
    flags="$(grep -o '"--\?[a-z][a-z-]*"' "$ROOT/examples/chat/$name.rs" | tr -d '"' | sort -u)"
    [ "$(wc -w <<<"$flags")" -ge 3 ] || return 1 # the scan itself found the parser
    for flag in $flags; do
        grep -qE -e "^ +(-h, )?$flag( |,|\$)" "$WORK/help.out" ||
            { echo "  $name --help has no line for $flag"; return 1; }
    done
}
# short_usage NAME FLAG...: a bad command line exits 2 with nothing on stdout and a usage line
# naming --help on stderr.
short_usage() {
    local name="$1"; shift
    "$BIN/$name" "$@" >"$WORK/usage.out" 2>"$WORK/usage.err" </dev/null
    [ $? -eq 2 ] && [ ! -s "$WORK/usage.out" ] && grep -q '^usage: .*--help' "$WORK/usage.err"
}
# bad_command_lines NAME FLAG: an unknown flag, and NAME's own FLAG without its value.
bad_command_lines() { short_usage "$1" --no-such-flag x && short_usage "$1" "$2"; }
for pair in grpc_chat_node:--listen grpc_chat_app:--node; do
    name="${pair%%:*}"
    check "$name --help exits 0 and documents every flag its parser accepts" \
        documents_every_flag "$name"
    check "$name: an unknown flag, a missing value -> usage naming --help, exit 2" \
        bad_command_lines "$name" "${pair#*:}"
done

# --- the node -------------------------------------------------------------------------------
"$BIN/grpc_chat_node" --listen 127.0.0.1:0 >"$WORK/node.out" 2>"$WORK/node.err" &
NODE_PID=$!
PIDS+=("$NODE_PID")
check "node starts and listens on loopback" wait_for "$WORK/node.out" "listening on 127.0.0.1:"
ADDR="$(sed -n 's/^listening on //p' "$WORK/node.out" | head -n1)"
if [ -z "$ADDR" ]; then FAILED=$((FAILED + 1)); echo "FAIL node did not start"; exit 1; fi
NODE="http://$ADDR"
# A second node's address, nothing listening there yet: the apps get `--node NODE,NODE2` and
# fail over to it once it runs and the first node dies (see "fail-over" below).
ADDR2="127.0.0.1:$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
NODE2="http://$ADDR2"

# --- identities and the chat ----------------------------------------------------------------
# unreachable_named: with no node reachable the app exits 1 naming each URL and the cause.
unreachable_named() {
    "$BIN/grpc_chat_app" --node http://127.0.0.1:9,http://127.0.0.1:19 --identity "$WORK/u.key" \
        --chat 00000000000000000000000000000001 --initiator </dev/null >/dev/null 2>"$WORK/unreach.err"
    [ $? -eq 1 ] && grep -q "http://127.0.0.1:9: .*refused" "$WORK/unreach.err" &&
        grep -q "http://127.0.0.1:19: .*refused" "$WORK/unreach.err"
}
check "no node reachable: exit 1 naming each URL and its cause" unreachable_named
export CHAT_PASSPHRASE="e2e passphrase"
KDF=(--kdf-memory-kib 19456 --kdf-iterations 2) # the least Argon2id accepts (19 MiB, 2); defaults are 64 MiB, 3
CHAT="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
A_ID="$("$BIN/grpc_chat_app" --identity "$WORK/a.key" --show-identity)"
B_ID="$("$BIN/grpc_chat_app" --identity "$WORK/b.key" --show-identity)"
check "identity files are created and give 32-byte keys" \
    bash -c "[[ '$A_ID' =~ ^[0-9a-f]{64}$ && '$B_ID' =~ ^[0-9a-f]{64}$ && '$A_ID' != '$B_ID' ]]"

# start_app NAME FD ROLE PEER_ID PEER_NAME [FLAG...]: the app reads the fifo NAME.in (held open
# on FD by this shell); received lines are labelled <PEER_NAME>.
start_app() {
    local name="$1" fd="$2" role="$3" peer="$4" peer_name="$5"
    shift 5
    rm -f "$WORK/$name.in"
    mkfifo "$WORK/$name.in"
    "$BIN/grpc_chat_app" --node "$NODE,$NODE2" --identity "$WORK/$name.key" --name "$name" \
        --chat "$CHAT" --peer-identity "$peer" --peer-name "$peer_name" "--$role" --state "$WORK/$name.state" "${KDF[@]}" "$@" \
        <"$WORK/$name.in" >>"$WORK/$name.out" 2>>"$WORK/$name.err" &
    eval "${name^^}_PID=$!"
    PIDS+=("$!")
    eval "exec $fd>\"\$WORK/\$name.in\""
}
say_a() { echo "$1" >&5; }
say_b() { echo "$1" >&6; }

start_app b 6 responder "$A_ID" a
start_app a 5 initiator "$B_ID" b

check "handshake completes on A (epoch 0, pinned peer B)" \
    wait_for "$WORK/a.err" "event: established epoch=0 peer=$B_ID"
check "handshake completes on B (epoch 0, pinned peer A)" \
    wait_for "$WORK/b.err" "event: established epoch=0 peer=$A_ID"

say_a "hello from a"
check "A -> B message arrives" wait_for "$WORK/b.out" "<a> hello from a"
say_b "hello from b"
check "B -> A message arrives" wait_for "$WORK/a.out" "<b> hello from b"
for i in 1 2 3 4 5; do say_a "burst $i"; done
if wait_for "$WORK/b.out" "<a> burst 5" && [ "$(grep -F '<a> burst' "$WORK/b.out" | tr '\n' '|')" = "<a> burst 1|<a> burst 2|<a> burst 3|<a> burst 4|<a> burst 5|" ]; then
    pass "five messages in a row arrive in order"
else
    fail "five messages in a row arrive in order"
fi

# --- rekey ----------------------------------------------------------------------------------
say_a "/rekey"
check "rekey: A reaches epoch 1" wait_for "$WORK/a.err" "event: rekeyed epoch=1"
check "rekey: B reaches epoch 1" wait_for "$WORK/b.err" "event: rekeyed epoch=1"
say_a "after rekey from a"
check "A -> B after rekey" wait_for "$WORK/b.out" "<a> after rekey from a"
say_b "after rekey from b"
check "B -> A after rekey" wait_for "$WORK/a.out" "<b> after rekey from b"

# --- sealed state -----------------------------------------------------------------------------
check "state files exist" test -s "$WORK/a.state" -a -s "$WORK/b.state"
sealed_records() {
    [ "$(head -c4 "$WORK/a.state")" = SWCH ] && [ "$(head -c4 "$WORK/b.state")" = SWCH ] &&
        ! compgen -G "$WORK/*.tmp" >/dev/null
}
check "state files are sealed chat records (magic SWCH), no temp file left" sealed_records
# refuse_resume STATE [ENV...]: the app must refuse to resume from STATE and exit 1 before it
# talks to any node (the address given has no listener).
refuse_resume() {
    local state="$1"; shift
    env "$@" "$BIN/grpc_chat_app" --node http://127.0.0.1:9 --identity "$WORK/b.key" \
        --chat "$CHAT" --responder --state "$state" "${KDF[@]}" </dev/null \
        >/dev/null 2>"$WORK/refuse.err"
    [ $? -eq 1 ] && grep -q "cannot resume" "$WORK/refuse.err"
}
cp "$WORK/b.state" "$WORK/tampered.state"
printf '\xff' | dd of="$WORK/tampered.state" bs=1 seek=80 conv=notrunc status=none
check "a tampered sealed state is refused" refuse_resume "$WORK/tampered.state"
cp "$WORK/b.state" "$WORK/b-copy.state" # B runs and holds b.state's lock
check "a wrong passphrase is refused" \
    refuse_resume "$WORK/b-copy.state" CHAT_PASSPHRASE="not the passphrase"
check "sealed state holds no plaintext" \
    bash -c "! grep -qaF 'hello from' '$WORK/a.state' '$WORK/b.state'"

# --- crash and resume -------------------------------------------------------------------------
{ kill -KILL "$B_PID" && wait "$B_PID"; } 2>/dev/null
exec 6>&-
# Let the node notice the dead stream first, so it queues (not hands to the dead stream) what
# A sends next: delivery to a stream that dies mid-delivery is at most once.
check "node notices B's death" wait_for "$WORK/node.err" "app disconnected identity=${B_ID:0:16}"
say_a "sent while b is down"
# B comes back with its passphrase from a file this time (and none in the environment).
printf '%s\n' "$CHAT_PASSPHRASE" >"$WORK/b.pass"
CHAT_PASSPHRASE= start_app b 6 responder "$A_ID" a --passphrase-file "$WORK/b.pass"
check "B resumes from its sealed state at epoch 1 (no initial handshake, --passphrase-file)" \
    wait_for "$WORK/b.err" "event: resumed epoch=1"
# A second instance on the same state would restore the same record and reuse its keys.
second_instance_refused() {
    "$BIN/grpc_chat_app" --node "$NODE" --identity "$WORK/b.key" --chat "$CHAT" --responder \
        --state "$WORK/b.state" "${KDF[@]}" </dev/null >/dev/null 2>"$WORK/second.err"
    [ $? -eq 1 ] && grep -q "is in use by another grpc_chat_app" "$WORK/second.err"
}
check "a second instance on B's state file exits 1 (the state is locked)" second_instance_refused
cp "$WORK/a.state" "$WORK/a-copy.state"
check "a wrong passphrase file is refused" \
    bash -c "printf 'wrong\n' >'$WORK/wrong.pass' && ! CHAT_PASSPHRASE= '$BIN/grpc_chat_app' \
        --node http://127.0.0.1:9 --identity '$WORK/a.key' --chat '$CHAT' --initiator \
        --state '$WORK/a-copy.state' --passphrase-file '$WORK/wrong.pass' ${KDF[*]} </dev/null \
        >/dev/null 2>'$WORK/wrongpass.err' && grep -q 'cannot resume' '$WORK/wrongpass.err'"
if wait_for "$WORK/b.out" "<a> sent while b is down"; then
    pass "message queued by the node reaches the resumed B"
else
    fail "message queued by the node reaches the resumed B"
fi
say_b "back from the dead"
check "resumed B -> A arrives" wait_for "$WORK/a.out" "<b> back from the dead"
say_a "welcome back"
check "A -> resumed B arrives" wait_for "$WORK/b.out" "<a> welcome back"
check "no second initial handshake after resume (B established only once)" \
    bash -c "[ \"\$(grep -cF 'event: established' '$WORK/b.err')\" -eq 1 ]"
# sealwire::chat starts a rekey on restore (the record may predate a rekey the peer finished).
check "restore rekeys: B reaches epoch 2" wait_for "$WORK/b.err" "event: rekeyed epoch=2"
check "restore rekeys: A reaches epoch 2" wait_for "$WORK/a.err" "event: rekeyed epoch=2"
say_b "/rekey"
check "rekey by the resumed B: B reaches epoch 3" wait_for "$WORK/b.err" "event: rekeyed epoch=3"
check "rekey by the resumed B: A reaches epoch 3" wait_for "$WORK/a.err" "event: rekeyed epoch=3"
say_b "epoch three from b"
check "B -> A after the third rekey" wait_for "$WORK/a.out" "<b> epoch three from b"
say_a "epoch three from a"
check "A -> B after the third rekey" wait_for "$WORK/b.out" "<a> epoch three from a"
check "no chat error on either side" \
    bash -c "! grep -h '^error' '$WORK/a.err' '$WORK/b.err'"

# --- the node refuses bad input with gRPC status codes and keeps serving ---------------------
timeout 60 "$BIN/grpc_chat_probe" --node "$NODE" >"$WORK/probe.out" 2>"$WORK/probe.err"
PROBE_RC=$?
check "probe ran" test "$PROBE_RC" -eq 0
check "garbage frame -> InvalidArgument" grep -qx "garbage InvalidArgument" "$WORK/probe.out"
check "bad version -> InvalidArgument" grep -qx "bad-version InvalidArgument" "$WORK/probe.out"
check "bad handshake size -> InvalidArgument" grep -qx "bad-size InvalidArgument" "$WORK/probe.out"
check "bad kind -> InvalidArgument" grep -qx "bad-kind InvalidArgument" "$WORK/probe.out"
check "frame of a chat not started -> NotFound" grep -qx "unknown-chat NotFound" "$WORK/probe.out"
check "oversized frame -> ResourceExhausted" grep -qx "oversized ResourceExhausted" "$WORK/probe.out"
check "rekey flood -> ResourceExhausted (throttle)" grep -qx "rekey-throttle ResourceExhausted" "$WORK/probe.out"
check "third participant -> PermissionDenied" grep -qx "third-participant PermissionDenied" "$WORK/probe.out"
check "a reader that stalls: its mailbox fills -> ResourceExhausted" grep -qx "mailbox-full ResourceExhausted" "$WORK/probe.out"
check "bad registration signature -> Unauthenticated" grep -qx "bad-signature Unauthenticated" "$WORK/probe.out"
check "a second registration of an identity replaces its stream (Aborted)" grep -qx "replaced Aborted" "$WORK/probe.out"
check "message beyond the transport limit ends only that stream" grep -qx "huge OutOfRange" "$WORK/probe.out"
check "node still running" kill -0 "$NODE_PID"
say_a "still alive"
check "chat still works after the probe" wait_for "$WORK/b.out" "<a> still alive"

# --- the node restarts (its queues and chat table are in memory only) -------------------------
{ kill -KILL "$NODE_PID" && wait "$NODE_PID"; } 2>/dev/null
check "A notices the node is gone" wait_for "$WORK/a.err" "event: relay-lost"
check "B notices the node is gone" wait_for "$WORK/b.err" "event: relay-lost"
say_a "queued while the node is down"
"$BIN/grpc_chat_node" --listen "$ADDR" >"$WORK/node2.out" 2>"$WORK/node2.err" &
NODE_PID=$!
PIDS+=("$NODE_PID")
check "node restarts on the same address" wait_for "$WORK/node2.out" "listening on $ADDR"
check "A reconnects" wait_for "$WORK/a.err" "event: relay-reconnected"
check "B reconnects" wait_for "$WORK/b.err" "event: relay-reconnected"
check "A's frame kept while the node was down arrives" \
    wait_for "$WORK/b.out" "<a> queued while the node is down"
say_b "after the node restart"
check "B -> A after the node restart" wait_for "$WORK/a.out" "<b> after the node restart"

# --- fail-over: --node NODE,NODE2, the first node dies ----------------------------------------
"$BIN/grpc_chat_node" --listen "$ADDR2" >"$WORK/node3.out" 2>"$WORK/node3.err" &
NODE2_PID=$!
PIDS+=("$NODE2_PID")
check "a second node starts" wait_for "$WORK/node3.out" "listening on $ADDR2"
{ kill -KILL "$NODE_PID" && wait "$NODE_PID"; } 2>/dev/null
check "A fails over to the second node" wait_for "$WORK/a.err" "event: relay-reconnected node=$NODE2"
check "B fails over to the second node" wait_for "$WORK/b.err" "event: relay-reconnected node=$NODE2"
say_a "over the second node"
check "A -> B over the second node" wait_for "$WORK/b.out" "<a> over the second node"
say_b "back over the second node"
check "B -> A over the second node" wait_for "$WORK/a.out" "<b> back over the second node"

# --- stale handshake frames: C's first run dies after its message 1; its second run gets D's
# answer to that old message 1 (queued at the node) and reports it once as stale. ------------
C_ID="$("$BIN/grpc_chat_app" --identity "$WORK/c.key" --show-identity)"
D_ID="$("$BIN/grpc_chat_app" --identity "$WORK/d.key" --show-identity)"
CHAT2="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
run_cd() { # run_cd NAME PEER_ID ROLE: an app of chat 2 on the second node, stdin held open
    sleep 60 | "$BIN/grpc_chat_app" --node "$NODE2" --identity "$WORK/$1.key" --name "$1" \
        --chat "$CHAT2" --peer-identity "$2" "--$3" >>"$WORK/$1.out" 2>>"$WORK/$1.err" &
    PIDS+=("$!")
}
run_cd c "$D_ID" initiator
check "C's first run registers" wait_for "$WORK/c.err" "event: relay-chat-started"
sleep 0.5 # its message 1 reaches the node
pkill -KILL -f -- "--identity $WORK/c.key" || true
mv "$WORK/c.err" "$WORK/c1.err"
run_cd c "$D_ID" initiator
check "C's second run registers" wait_for "$WORK/c.err" "event: relay-chat-started"
run_cd d "$C_ID" responder
check "C and D establish the chat after all" wait_for "$WORK/c.err" "event: established epoch=0"
stale_once() {
    [ "$(grep -c 'event: stale-handshake-frames' "$WORK/c.err")" -eq 1 ] &&
        ! grep -q "error: frame refused" "$WORK/c.err" "$WORK/d.err"
}
check "stale handshake frames reported once, no verification errors" stale_once
pkill -f -- "--chat $CHAT2" || true

# --- authenticated close ----------------------------------------------------------------------
# wait_until COMMAND...: true once COMMAND succeeds, false after $TIMEOUT seconds.
wait_until() {
    local deadline=$((SECONDS + TIMEOUT))
    while [ "$SECONDS" -le "$deadline" ]; do
        if "$@"; then return 0; fi
        sleep 0.1
    done
    return 1
}
# exited PID...: every PID has exited (a zombie not yet reaped by this shell counts as exited).
exited() {
    local pid st
    for pid in "$@"; do
        st="$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null)"
        [ -z "$st" ] || [[ "$st" == Z* ]] || return 1
    done
}
no_state() { [ ! -e "$WORK/a.state" ] && [ ! -e "$WORK/b.state" ]; }
say_a "/close"
check "close: A reports its close" wait_for "$WORK/a.err" "event: closed reason=Normal by_peer=false"
check "close: B sees the peer's authenticated close" \
    wait_for "$WORK/b.err" "event: closed reason=Normal by_peer=true"
check "close: both apps exit" wait_until exited "$A_PID" "$B_PID"
check "close: both sealed states are deleted" wait_until no_state

# The summary line is printed by `cleanup` on exit.
[ "$FAILED" -eq 0 ] && exit 0
exit 1
