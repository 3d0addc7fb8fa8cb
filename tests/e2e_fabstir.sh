#!/usr/bin/env bash
# End-to-end check: examples/ws_node judged by a client that is not ours.
#
# The judge is ../shared/tools/fabstir-client/client.mjs, an SDK-compatible Fabstir client
# (Node.js + the SDK's @noble libraries) checked against the SDK-generated vectors. This script
# builds the examples, installs the judge's npm packages under the cargo target dir (never next
# to the tool), starts ws_node processes on free loopback ports and runs:
#   - the judge's modes: encrypted, replay, tamper, wrong-key, challenge, plaintext (rejected by
#     default, echoed with --plaintext), and the SDK's own plaintext frames from plaintext.json
#     (tests/e2e/plaintext_frames.mjs);
#   - every node-side vector of vectors/fabstir/*.json, each against a fresh node process holding
#     the vector's node key and allowing the file's client addresses;
#   - the host-key challenge for every host key of host_key_challenge.json;
#   - our own examples/ws_client against ws_node, and a few operational checks (--help, bad
#     challenge body → 400, SIGTERM → exit 0, keys from files);
#   - an on-path attacker (examples/session/ws_mitm.rs) between ws_client and ws_node: an
#     answer cut short (last chunk held back, sealed end dropped, stream_end forwarded) must
#     not make ws_client report success, while the pass-through control still succeeds; and an
#     init + prompt recorded on the wire, replayed against a restarted (SIGKILLed) ws_node, must
#     be refused with --replay-state (and, as the attack it stops, is accepted without).
# Prints one `PASS name` / `FAIL name` line per check, then `N passed, N failed`; exits 1 on any
# failure. Needs cargo, node (>= 18) and npm (registry access on the first run only).
#
# Environment: CARGO_TARGET_DIR (as cargo), FABSTIR_CLIENT_DIR (the tool), FABSTIR_VECTORS (dir),
# E2E_KEEP_LOGS=1 (keep node logs), RUST_LOG (node log filter, default warn).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

command -v node >/dev/null || { echo "e2e_fabstir: node (>= 18) is required" >&2; exit 2; }
command -v npm >/dev/null || { echo "e2e_fabstir: npm is required" >&2; exit 2; }

TOOL_SRC=${FABSTIR_CLIENT_DIR:-$ROOT/../shared/tools/fabstir-client}
if [ -n "${FABSTIR_VECTORS:-}" ]; then
  VEC_DIR=$FABSTIR_VECTORS
elif [ -d "$ROOT/vectors/fabstir" ] && ls "$ROOT"/vectors/fabstir/*.json >/dev/null 2>&1; then
  VEC_DIR=$ROOT/vectors/fabstir
else
  VEC_DIR=$ROOT/../shared/vectors/fabstir
fi
[ -f "$TOOL_SRC/client.mjs" ] || { echo "e2e_fabstir: no client.mjs in $TOOL_SRC" >&2; exit 2; }

# ---- build ------------------------------------------------------------------------------------
echo "building examples (debug)..."
if ! cargo build --example ws_node --example ws_client --example ws_mitm >"${TMPDIR:-/tmp}/e2e-fabstir-build.$$.log" 2>&1; then
  cat "${TMPDIR:-/tmp}/e2e-fabstir-build.$$.log" >&2
  echo "e2e_fabstir: cargo build failed" >&2
  exit 2
fi
rm -f "${TMPDIR:-/tmp}/e2e-fabstir-build.$$.log"
TARGET=$(cargo metadata --format-version 1 --no-deps |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')
WS_NODE=$TARGET/debug/examples/ws_node
WS_CLIENT=$TARGET/debug/examples/ws_client
WS_MITM=$TARGET/debug/examples/ws_mitm
WORK=$TARGET/e2e-fabstir
mkdir -p "$WORK"
rm -f "$WORK"/node-*.out "$WORK"/node-*.err "$WORK"/check-*.log

# ---- the judge, installed under the target dir (cached) ---------------------------------------
TOOL=$TARGET/fabstir-client
mkdir -p "$TOOL"
cp "$TOOL_SRC/client.mjs" "$TOOL/client.mjs"
cp "$ROOT/tests/e2e/plaintext_frames.mjs" "$TOOL/plaintext_frames.mjs" # resolves `ws` there
if ! cmp -s "$TOOL_SRC/package.json" "$TOOL/package.json" ||
  [ ! -d "$TOOL/node_modules/@noble/secp256k1" ] || [ ! -d "$TOOL/node_modules/ws" ]; then
  cp "$TOOL_SRC/package.json" "$TOOL/package.json"
  echo "installing the fabstir-client npm packages into $TOOL ..."
  (cd "$TOOL" && npm install --no-audit --no-fund --silent >/dev/null)
fi
judge() { timeout 120 node "$TOOL/client.mjs" "$@"; }

# ---- bookkeeping -------------------------------------------------------------------------------
PASSED=0
FAILED=0
CHECK_N=0
pass() { PASSED=$((PASSED + 1)); echo "PASS $1"; }
fail() {
  FAILED=$((FAILED + 1))
  echo "FAIL $1"
  if [ -n "${2:-}" ] && [ -f "$2" ]; then tail -c 1500 "$2" | sed 's/^/    /'; fi
}
# check NAME CMD...: passes when CMD exits 0; its output is kept in a log shown on failure.
check() {
  local name=$1
  shift
  CHECK_N=$((CHECK_N + 1))
  local log=$WORK/check-$CHECK_N.log
  if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name" "$log"; fi
}

# ---- node processes ----------------------------------------------------------------------------
NODE_PID=
NODE_N=0
NODE_URL=
NODE_HTTP=
NODE_PUB=
NODE_ADDRESS=
NODE_OUT=
NODE_ERR=

stop_node() { # stop_node [expect-clean]: SIGTERM, bounded wait, SIGKILL as a last resort
  local pid=$NODE_PID rc=0
  NODE_PID=
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 124
  fi
  wait "$pid" 2>/dev/null || rc=$?
  return "$rc"
}

cleanup() {
  local status=$?
  if [ -n "${PROXY_PID:-}" ]; then
    kill -KILL "$PROXY_PID" 2>/dev/null || true
    wait "$PROXY_PID" 2>/dev/null || true
  fi
  if [ -n "${STANDIN_PID:-}" ]; then
    kill -KILL "$STANDIN_PID" 2>/dev/null || true
    wait "$STANDIN_PID" 2>/dev/null || true
  fi
  if [ -n "$NODE_PID" ]; then
    kill -KILL "$NODE_PID" 2>/dev/null || true
    wait "$NODE_PID" 2>/dev/null || true
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_node KEY_HEX [ws_node args...]: fresh process on a free loopback port (the OS picks it:
# --listen 127.0.0.1:0, read back from the startup line); returns once the port accepts.
start_node() {
  local key=$1
  shift
  stop_node || true
  NODE_N=$((NODE_N + 1))
  NODE_OUT=$WORK/node-$NODE_N.out
  NODE_ERR=$WORK/node-$NODE_N.err
  HOST_PRIVATE_KEY=$key RUST_LOG=${RUST_LOG:-warn} \
    "$WS_NODE" --listen 127.0.0.1:0 "$@" >"$NODE_OUT" 2>"$NODE_ERR" &
  NODE_PID=$!
  local line=
  for _ in $(seq 1 400); do
    line=$(grep -m1 '^ws_node listen=' "$NODE_OUT" 2>/dev/null || true)
    [ -n "$line" ] && break
    kill -0 "$NODE_PID" 2>/dev/null || break
    sleep 0.025
  done
  if [ -z "$line" ]; then
    echo "ws_node did not start (args: $*); stderr:" >&2
    sed 's/^/    /' "$NODE_ERR" >&2
    return 1
  fi
  local listen
  listen=$(sed -n 's/.* listen=\([^ ]*\).*/\1/p' <<<"$line")
  NODE_PUB=$(sed -n 's/.* public_key=\([0-9a-f]*\).*/\1/p' <<<"$line")
  NODE_ADDRESS=$(sed -n 's/.* address=\(0x[0-9a-fA-F]*\).*/\1/p' <<<"$line")
  NODE_URL=ws://$listen/v1/ws
  NODE_HTTP=http://$listen
  local host=${listen%:*} port=${listen##*:}
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    sleep 0.025
  done
  echo "ws_node port $listen never accepted a connection" >&2
  return 1
}

# A fixed development key for the mode checks (SHA-256("sealwire e2e node")).
E2E_KEY=0x$(printf 'sealwire e2e node' | sha256sum | cut -d' ' -f1)

# ---- operational checks ------------------------------------------------------------------------
check "ws_node --help" bash -c '"$1" --help | grep -q -- --listen' _ "$WS_NODE"
check "ws_node rejects a bad HOST_PRIVATE_KEY" bash -c \
  'HOST_PRIVATE_KEY=0x1234 timeout 10 "$1" --listen 127.0.0.1:0; [ $? -eq 2 ]' _ "$WS_NODE"

# ---- the judge's modes against a strict node (no --allow: any address; no --plaintext) ---------
start_node "$E2E_KEY"
J=(--url "$NODE_URL" --node-pub "$NODE_PUB")
check "mode encrypted --prompts 3 --expect-echo" judge encrypted --prompts 3 --expect-echo "${J[@]}"
check "mode replay" judge replay "${J[@]}"
check_concurrent() { # ten SDK-style clients at once on one node, each with its own session id
  local pids=() i rc=0
  for i in $(seq 1 10); do
    judge encrypted --prompts 3 --expect-echo --session-id "$((100 + i))" --job-id "$i" "${J[@]}" &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  return "$rc"
}
check "mode encrypted, 10 clients at once" check_concurrent
check "mode tamper" judge tamper "${J[@]}"
check "mode wrong-key" judge wrong-key "${J[@]}"
check "mode challenge" judge challenge "${J[@]}" --host-address "$NODE_ADDRESS"
check "mode plaintext --expect-rejected (no --plaintext)" judge plaintext --expect-rejected "${J[@]}"
if [ -f "$VEC_DIR/plaintext.json" ]; then
  check "SDK plaintext frames rejected (no --plaintext)" \
    timeout 60 node "$TOOL/plaintext_frames.mjs" --url "$NODE_URL" --file "$VEC_DIR/plaintext.json" --expect-rejected
fi

# our own client against our node
check_ws_client_echo() {
  local out
  out=$("$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" --session-id 7 --job-id 7 \
    hello from the sealwire ws_client, "é😀" done)
  [ "$out" = "hello from the sealwire ws_client, é😀 done" ] || { echo "got: $out"; return 1; }
}
check "ws_client echo through ws_node" check_ws_client_echo
check "ws_client --node-key echo" bash -c \
  'out=$("$1" --url "$2" --node-key "$3" one two three) && [ "$out" = "one two three" ]' \
  _ "$WS_CLIENT" "$NODE_URL" "$E2E_KEY"
check "ws_client fails against the wrong node key" bash -c \
  '! timeout 60 "$1" --url "$2" --node-key 0x$(printf other | sha256sum | cut -d" " -f1) hi' \
  _ "$WS_CLIENT" "$NODE_URL"

# the challenge endpoint's error path: a bad body is a 400 with a JSON error
check_challenge_bad_body() {
  node --input-type=module -e '
    const r = await fetch(process.argv[1] + "/v1/auth/challenge", { method: "POST",
      headers: { "Content-Type": "application/json" }, body: "{\"challenge\":\"zz\"}" });
    const b = await r.json().catch(() => null);
    console.log(r.status, JSON.stringify(b));
    process.exit(r.status === 400 && b && typeof b === "object" ? 0 : 1);
  ' "$NODE_HTTP"
}
check "challenge with a bad body → 400 JSON" check_challenge_bad_body

# stream_cancel: ws_client gets Ctrl-C after the first words of a slow answer; it must exit 0
# with a strict prefix of the echo, and the node must have seen the cancel.
check_cancel() {
  local out=$WORK/cancel.out words pid
  words=$(seq -s ' ' 1 40)
  RUST_LOG=info start_node "$E2E_KEY" --echo-delay-ms 100 || return 1
  : >"$out" # truncate now: the background job's own redirection may come too late
  "$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" $words >"$out" &
  pid=$!
  for _ in $(seq 1 400); do [ -s "$out" ] && break; sleep 0.025; done
  kill -INT "$pid"
  wait "$pid" || { echo "ws_client exited $?"; return 1; }
  local got
  got=$(tr -d '\n' <"$out" | sed 's/ *$//')
  echo "partial answer: $got"
  [ -n "$got" ] && [ "$got" != "$words" ] && [ "${words#"$got"}" != "$words" ] || return 1
  for _ in $(seq 1 100); do grep -q 'stream cancelled by the client' "$NODE_ERR" && return 0; sleep 0.02; done
  echo "the node never reported the cancel"
  return 1
}
check "stream_cancel from ws_client stops the answer" check_cancel

check_sigterm() {
  stop_node && grep -q . "$NODE_OUT"
}
check "ws_node exits 0 on SIGTERM" check_sigterm

# ---- the judge against ws_node --upstream (an OpenAI-compatible stand-in echoing the prompt) ---
check_upstream() {
  if ! command -v python3 >/dev/null; then echo "SKIP: no python3 for the stand-in"; return 0; fi
  local out=$WORK/standin.out
  : >"$out"
  python3 "$ROOT/tests/e2e/openai_standin.py" >"$out" 2>"$WORK/standin.err" &
  STANDIN_PID=$!
  local line=
  for _ in $(seq 1 400); do
    line=$(grep -m1 '^openai_standin listen=' "$out" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.025
  done
  [ -n "$line" ] || { echo "the stand-in did not start"; return 1; }
  UPSTREAM_URL=http://${line#openai_standin listen=}/v1
}
STANDIN_PID=
check "OpenAI-compatible stand-in starts" check_upstream
if [ -n "${UPSTREAM_URL:-}" ]; then
  start_node "$E2E_KEY" --upstream "$UPSTREAM_URL" --plaintext
  U=(--url "$NODE_URL" --node-pub "$NODE_PUB")
  check "--upstream: mode encrypted --prompts 3 --expect-echo" judge encrypted --prompts 3 --expect-echo "${U[@]}"
  check "--upstream: mode replay" judge replay "${U[@]}"
  check "--upstream: mode tamper" judge tamper "${U[@]}"
  check "--upstream: mode wrong-key" judge wrong-key "${U[@]}"
  check "--upstream: mode challenge" judge challenge "${U[@]}" --host-address "$NODE_ADDRESS"
  check "--upstream: mode plaintext --expect-echo" judge plaintext --expect-echo "${U[@]}"
  # The answers came from the stand-in (its echo is the built-in echo's: count its requests).
  check "--upstream: the prompts went to the stand-in" \
    bash -c '[ "$(grep -c "^request" "$1")" -ge 5 ]' _ "$WORK/standin.out"
  stop_node || true
  kill -TERM "$STANDIN_PID" 2>/dev/null || true
  wait "$STANDIN_PID" 2>/dev/null || true
  STANDIN_PID=
fi

# ---- TLS: ws_node --tls-cert/--tls-key serves wss:// (a throwaway CA and a leaf it signed) ----
check_tls_cert() {
  command -v openssl >/dev/null || { echo "no openssl"; return 1; }
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=sealwire e2e CA" -keyout "$WORK/ca-key.pem" -out "$WORK/ca.pem"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -keyout "$WORK/tls-key.pem" -out "$WORK/tls.csr"
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$WORK/tls.ext"
  openssl x509 -req -in "$WORK/tls.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" \
    -CAcreateserial -days 2 -extfile "$WORK/tls.ext" -out "$WORK/tls-cert.pem"
}
check "a CA and a certificate for the TLS checks" check_tls_cert
if [ -s "$WORK/tls-cert.pem" ]; then
  start_node "$E2E_KEY" --tls-cert "$WORK/tls-cert.pem" --tls-key "$WORK/tls-key.pem"
  TLS_URL=${NODE_URL/#ws:/wss:}
  check "wss: ws_client --ca echo" bash -c \
    'out=$("$1" --url "$2" --node-pub "$3" --ca "$4" over tls) && [ "$out" = "over tls" ]' \
    _ "$WS_CLIENT" "$TLS_URL" "$NODE_PUB" "$WORK/ca.pem"
  check "wss: ws_client refuses the certificate without --ca" bash -c \
    '! timeout 30 "$1" --url "$2" --node-pub "$3" hi' _ "$WS_CLIENT" "$TLS_URL" "$NODE_PUB"
  check "wss: plain ws:// to the TLS listener fails" bash -c \
    '! timeout 30 "$1" --url "$2" --node-pub "$3" hi' _ "$WS_CLIENT" "$NODE_URL" "$NODE_PUB"
  export NODE_EXTRA_CA_CERTS=$WORK/ca.pem
  T=(--url "$TLS_URL" --node-pub "$NODE_PUB")
  check "wss: SDK client mode encrypted --prompts 3 --expect-echo" judge encrypted --prompts 3 --expect-echo "${T[@]}"
  check "wss: SDK client mode challenge (https)" judge challenge "${T[@]}" --host-address "$NODE_ADDRESS"
  check "wss: SDK client mode replay" judge replay "${T[@]}"
  check "wss: SDK client mode tamper" judge tamper "${T[@]}"
  check "wss: SDK client mode wrong-key" judge wrong-key "${T[@]}"
  check "wss: SDK client mode plaintext --expect-rejected" judge plaintext --expect-rejected "${T[@]}"
  unset NODE_EXTRA_CA_CERTS
  stop_node || true
fi

check_client_connect_timeout() { # a listener that accepts and never answers the handshake
  command -v python3 >/dev/null || { echo "SKIP: no python3"; return 0; }
  local out=$WORK/silent.out
  : >"$out"
  python3 -c 'import socket,sys,time
s=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(8)
print(s.getsockname()[1], flush=True); c=s.accept(); time.sleep(30)' >"$out" &
  local pid=$! port=
  for _ in $(seq 1 200); do port=$(head -1 "$out"); [ -n "$port" ] && break; sleep 0.025; done
  local start=$SECONDS rc=0
  timeout 20 "$WS_CLIENT" --url "ws://127.0.0.1:$port/v1/ws" --node-pub "$E2E_PUB_HEX" \
    --connect-timeout-ms 500 hello || rc=$?
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  [ "$rc" -eq 1 ] || { echo "exit $rc, want 1"; return 1; }
  [ $((SECONDS - start)) -le 5 ] || { echo "took $((SECONDS - start)) s"; return 1; }
}
E2E_PUB_HEX=$NODE_PUB
check "ws_client --connect-timeout-ms against a silent listener" check_client_connect_timeout

# ---- keys from files ---------------------------------------------------------------------------
KEYS=$WORK/keys
mkdir -p "$KEYS"
chmod 700 "$KEYS"
printf '  %s\n' "$E2E_KEY" >"$KEYS/host.key"
CLIENT_KEY=0x$(printf 'sealwire e2e client' | sha256sum | cut -d' ' -f1)
printf '%s\n' "$CLIENT_KEY" >"$KEYS/client.key"
chmod 600 "$KEYS"/*.key
E2E_PUB=$NODE_PUB
# start_node KEY_HEX with an empty KEY_HEX leaves HOST_PRIVATE_KEY blank (unset for ws_node).
check_key_file() { # the node's key from --key-file, and never in its debug logs
  RUST_LOG=debug start_node "" --key-file "$KEYS/host.key" || return 1
  [ "$NODE_PUB" = "$E2E_PUB" ] || { echo "public key $NODE_PUB, want $E2E_PUB"; return 1; }
  out=$("$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" key from a file) || return 1
  [ "$out" = "key from a file" ] || { echo "got: $out"; return 1; }
  stop_node || true
  if grep -qi "${E2E_KEY#0x}" "$NODE_OUT" "$NODE_ERR"; then echo "the key is in the logs"; return 1; fi
}
check "ws_node --key-file (and the key never logged)" check_key_file
check_key_file_env() {
  HOST_PRIVATE_KEY_FILE=$KEYS/host.key start_node "" || return 1
  [ "$NODE_PUB" = "$E2E_PUB" ] || { echo "public key $NODE_PUB, want $E2E_PUB"; return 1; }
}
check "ws_node HOST_PRIVATE_KEY_FILE" check_key_file_env
check_client_key_file() { # the allow-list admits exactly the key read from the file
  start_node "$E2E_KEY" --allow "$CLIENT_ADDRESS" || return 1
  out=$("$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" --client-key-file "$KEYS/client.key" allowed) || return 1
  [ "$out" = "allowed" ] || { echo "got: $out"; return 1; }
  out=$(CLIENT_PRIVATE_KEY_FILE=$KEYS/client.key "$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" allowed too) || return 1
  [ "$out" = "allowed too" ] || { echo "got: $out"; return 1; }
  ! timeout 60 "$WS_CLIENT" --url "$NODE_URL" --node-pub "$NODE_PUB" stranger
}
# The client key's address (EIP-55), computed by the judge's own libraries.
CLIENT_ADDRESS=$(cd "$TOOL" && node --input-type=module -e '
  import * as secp from "@noble/secp256k1"; import { keccak_256 } from "@noble/hashes/sha3";
  const pub = secp.getPublicKey(process.argv[1].replace(/^0x/, ""), false).slice(1);
  const a = Buffer.from(keccak_256(pub).slice(-20)).toString("hex");
  const h = Buffer.from(keccak_256(new TextEncoder().encode(a))).toString("hex");
  console.log("0x" + [...a].map((c, i) => (parseInt(h[i], 16) >= 8 ? c.toUpperCase() : c)).join(""));
' "$CLIENT_KEY")
check "ws_client --client-key-file / CLIENT_PRIVATE_KEY_FILE against --allow" check_client_key_file
stop_node || true

# ---- an on-path attacker ------------------------------------------------------------------------
PROXY_PID=
PROXY_URL=
stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill -TERM "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=
}
# start_proxy [ws_mitm args...]: an attacker between clients and the current node.
start_proxy() {
  stop_proxy
  local out=$WORK/proxy.out
  : >"$out"
  "$WS_MITM" --upstream "$NODE_URL" "$@" >"$out" 2>"$WORK/proxy.err" &
  PROXY_PID=$!
  local line=
  for _ in $(seq 1 400); do
    line=$(grep -m1 '^ws_mitm listen=' "$out" 2>/dev/null || true)
    [ -n "$line" ] && break
    sleep 0.025
  done
  [ -n "$line" ] || { echo "ws_mitm did not start"; return 1; }
  PROXY_URL=ws://${line#ws_mitm listen=}/v1/ws
}
ANSWER="one two three four five"
check_cut_answer() { # the attack reproduced from outside: must not end in success
  start_node "$E2E_KEY" || return 1
  start_proxy --mode cut-answer || return 1
  local out err=$WORK/cut.err rc=0
  out=$(timeout 60 "$WS_CLIENT" --url "$PROXY_URL" --node-pub "$NODE_PUB" $ANSWER 2>"$err") || rc=$?
  stop_proxy
  echo "stdout: $out"; echo "exit: $rc"; cat "$err"
  grep -q "held back the last encrypted_chunk" "$WORK/proxy.err" || { echo "the attack did not happen"; return 1; }
  [ "$rc" -ne 0 ] && grep -q "cut short" "$err"
}
check "an answer cut short on the path: ws_client reports the truncation, exits non-zero" check_cut_answer
check_pass_through() { # the control: the same proxy, relaying everything
  start_proxy --mode pass || return 1
  local out
  out=$(timeout 60 "$WS_CLIENT" --url "$PROXY_URL" --node-pub "$NODE_PUB" $ANSWER) || return 1
  stop_proxy
  [ "$out" = "$ANSWER" ] || { echo "got: $out"; return 1; }
}
check "the pass-through control through the same proxy succeeds" check_pass_through
stop_node || true

# replay_after_restart [ws_node args...]: ws_client's init and prompt recorded by a passive
# attacker; the node is SIGKILLed and restarted with the same args; the attacker replays both.
replay_after_restart() {
  local rec=$WORK/recorded.jsonl
  rm -f "$rec"
  start_node "$E2E_KEY" "$@" || return 1
  start_proxy --mode pass --record "$rec" || return 1
  out=$(timeout 60 "$WS_CLIENT" --url "$PROXY_URL" --node-pub "$NODE_PUB" pay the attacker) || return 1
  stop_proxy
  [ "$out" = "pay the attacker" ] || { echo "got: $out"; return 1; }
  kill -KILL "$NODE_PID"
  wait "$NODE_PID" 2>/dev/null || true
  NODE_PID=
  start_node "$E2E_KEY" "$@" || return 1
  REPLAYED=$(timeout 60 "$WS_MITM" replay --upstream "$NODE_URL" --frames "$rec" | tr '\n' ' ')
  echo "replayed: $REPLAYED"
}
check_replay_refused() {
  rm -f "$WORK/replay-state.bin"
  replay_after_restart --replay-state "$WORK/replay-state.bin" || return 1
  [ "$REPLAYED" = "error:REPLAYED_SESSION_INIT error:SESSION_KEY_NOT_FOUND " ]
}
check "--replay-state: a recorded init + prompt is refused after a SIGKILL and restart" check_replay_refused
check_replay_accepted_without() {
  replay_after_restart || return 1
  [ "$REPLAYED" = "ack answer " ]
}
check "without --replay-state the recorded init + prompt runs again (the attack it stops)" check_replay_accepted_without
check "ws_node refuses a replay state it cannot read" bash -c \
  'echo garbage >"$2"; HOST_PRIVATE_KEY=$3 timeout 10 "$1" --listen 127.0.0.1:0 --replay-state "$2"; [ $? -eq 2 ]' \
  _ "$WS_NODE" "$WORK/bad-state.bin" "$E2E_KEY"
stop_node || true

# ---- legacy plaintext, allowed -------------------------------------------------------------------
start_node "$E2E_KEY" --plaintext
check "mode plaintext --expect-echo (--plaintext)" judge plaintext --expect-echo --url "$NODE_URL" --node-pub "$NODE_PUB"
if [ -f "$VEC_DIR/plaintext.json" ]; then
  check "SDK plaintext frames echoed (--plaintext)" \
    timeout 60 node "$TOOL/plaintext_frames.mjs" --url "$NODE_URL" --file "$VEC_DIR/plaintext.json"
fi
stop_node || true

# ---- vectors: one fresh node per vector ----------------------------------------------------------
# vec_keys FILE: distinct node_private_key values; vec_allow FILE: every client address the file
# names (the vectors expect exactly these to be allowed; recovered strangers must be refused).
vec_keys() {
  node -e 'const f=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
    console.log([...new Set(f.vectors.map(v=>v.node_private_key).filter(Boolean))].join("\n"))' "$1"
}
vec_allow() {
  node -e 'const f=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
    const a=new Set(); for (const v of f.vectors) for (const x of [v.client_address, v.expected&&v.expected.client_address]) if (typeof x==="string") a.add(x);
    console.log([...a].join("\n"))' "$1"
}

echo "vectors from $VEC_DIR"
for file in "$VEC_DIR"/*.json; do
  base=$(basename "$file" .json)
  mapfile -t keys < <(vec_keys "$file")
  [ "${#keys[@]}" -gt 0 ] && [ -n "${keys[0]}" ] || continue
  allow=()
  while IFS= read -r a; do [ -n "$a" ] && allow+=(--allow "$a"); done < <(vec_allow "$file")
  for key in "${keys[@]}"; do
    mapfile -t names < <(judge vectors --file "$file" --node-key "$key" --list)
    for name in "${names[@]}"; do
      [ -n "$name" ] || continue
      if ! start_node "0x$key" "${allow[@]}"; then
        fail "vector $base/$name (node did not start)" "$NODE_ERR"
        continue
      fi
      check "vector $base/$name" judge vectors --file "$file" --node-key "$key" --name "$name" --url "$NODE_URL"
    done
  done
done
stop_node || true

# ---- the host-key challenge with every host key of the challenge vectors -------------------------
challenge_file=$VEC_DIR/host_key_challenge.json
if [ -f "$challenge_file" ]; then
  while IFS=' ' read -r hkey haddr; do
    [ -n "$hkey" ] || continue
    if ! start_node "0x$hkey"; then fail "challenge host $haddr (node did not start)" "$NODE_ERR"; continue; fi
    check "challenge host $haddr" judge challenge --url "$NODE_URL" --host-address "$haddr"
  done < <(node -e 'const f=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8"));
    const seen=new Set(); for (const v of f.vectors) if (v.host_private_key && v.host_address && !seen.has(v.host_private_key)) { seen.add(v.host_private_key); console.log(v.host_private_key.replace(/^0x/,""), v.host_address); }' "$challenge_file")
  stop_node || true
fi

[ "${E2E_KEEP_LOGS:-0}" = 1 ] || { [ "$FAILED" -gt 0 ] || rm -f "$WORK"/node-*.out "$WORK"/node-*.err "$WORK"/check-*.log; }
[ "$FAILED" -eq 0 ] || echo "logs: $WORK"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
