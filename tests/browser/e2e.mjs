// The browser client (examples/browser) in real headless Chromium against ws_node, driven by
// puppeteer-core (tests/e2e_browser.sh builds everything and runs this).
//
//   node e2e.mjs --www DIR --ws-node BIN --ws-mitm BIN --chromium BIN --out DIR
//
// Serves DIR on a loopback port, starts ws_node processes (and ws_mitm), opens the demo page
// and checks: an encrypted session with several prompts echoed back exactly (through the page's
// form; screenshot to OUT/demo.png); a wrong node key fails cleanly (SessionRefused); an answer
// cut short by an on-path proxy is reported as truncated (TruncatedAnswer), not as success;
// a node error frame surfaces as an error (NodeErrorFrame); a refused session (allow-list) and
// three timeouts: no handshake, no ack, no first piece (TimeoutError). Prints `PASS name` / `FAIL name` lines, then `N passed, N failed`.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { readFile, mkdir } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { join, extname, normalize } from 'node:path';
import puppeteer from 'puppeteer-core';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf('--' + name); if (i < 0) throw new Error(`--${name} is required`); return args[i + 1]; };
const WWW = opt('www'), WS_NODE = opt('ws-node'), WS_MITM = opt('ws-mitm'), CHROMIUM = opt('chromium'), OUT = opt('out');
// A fixed development key (SHA-256("sealwire e2e node"), as tests/e2e_fabstir.sh).
const NODE_KEY = '0x' + (await import('node:crypto')).createHash('sha256').update('sealwire e2e node').digest('hex');

const children = [];
function cleanup() { for (const c of children) { try { c.kill('SIGKILL'); } catch { /* gone */ } } }
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

// Starts PROGRAM with ARGS and resolves with the fields of its first stdout line starting with PREFIX.
function startProgram(bin, argv, env, prefix) {
  const child = spawn(bin, argv, { env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; if (stderr.length > 20000) stderr = stderr.slice(-10000); });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} did not start: ${stderr}`)), 15000);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${bin} exited ${code}: ${stderr}`)); });
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (!line.startsWith(prefix)) return;
      clearTimeout(timer);
      const f = Object.fromEntries(line.split(' ').slice(1).map((kv) => kv.split('=')));
      resolve({ child, stderr: () => stderr, ...f });
    });
  });
}
const startNode = async (...extra) => {
  const n = await startProgram(WS_NODE, ['--listen', '127.0.0.1:0', ...extra], { HOST_PRIVATE_KEY: NODE_KEY }, 'ws_node listen=');
  return { ...n, url: `ws://${n.listen}/v1/ws`, pub: n.public_key };
};
const startMitm = async (upstream, mode) => {
  const m = await startProgram(WS_MITM, ['--upstream', upstream, '--mode', mode], {}, 'ws_mitm listen=');
  return { ...m, url: `ws://${m.listen}/v1/ws` };
};
const stop = (p) => { try { p.child.kill('SIGTERM'); } catch { /* gone */ } };

// A loopback port nothing answers on (bound, then closed) and a listener that never speaks.
async function closedPort() {
  const s = createTcpServer(); await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port; await new Promise((r) => s.close(r)); return port;
}

// ---- static server for the page -----------------------------------------------------------
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  try {
    const body = await readFile(join(WWW, path.endsWith('/') ? path + 'index.html' : path));
    res.writeHead(200, { 'content-type': TYPES[extname(path)] || 'application/octet-stream' });
    res.end(body);
  } catch { res.writeHead(404); res.end('not found'); }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const PAGE = `http://127.0.0.1:${server.address().port}/index.html`;

// ---- checks -------------------------------------------------------------------------------------
let passed = 0, failed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log(`PASS ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}`); console.log(String(e?.stack || e).split('\n').map((l) => '    ' + l).join('\n')); }
}
const assert = (cond, msg) => { if (!cond) throw new Error(msg); };

const browser = await puppeteer.launch({
  executablePath: CHROMIUM, headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
});
const page = await browser.newPage();
const consoleLines = [];
page.on('console', (m) => consoleLines.push(m.text()));
page.on('pageerror', (e) => consoleLines.push('pageerror: ' + e.message));
await page.setViewport({ width: 1000, height: 900 });

// Runs one scenario in the page through the JS module's API; returns what happened.
async function inPage(fn, arg) {
  return page.evaluate(async (src, a) => {
    const m = await import('./sealwire.js');
    return (0, eval)(`(${src})`)(m, a);
  }, fn.toString(), arg);
}
// One session: connect, open, send each prompt, collect the pieces; errors as { kind, name, ... }.
async function session(m, { url, pub, prompts, clientKey, extra }) {
  const out = { answers: [], error: null };
  let conn;
  try {
    conn = await m.connect({ url, nodePublicKey: pub, clientKey, ...(extra || {}) });
    out.address = conn.address;
    const s = await conn.openSession({ sessionId: '7', jobId: '7', chainId: 84532, model: 'echo' });
    for (const p of prompts) {
      const a = s.prompt(p);
      const pieces = [];
      for await (const piece of a) pieces.push(piece);
      const end = await a.end;
      out.answers.push({ pieces, text: end.text, tokensUsed: end.tokensUsed, authenticated: end.authenticated });
    }
  } catch (e) {
    out.error = { kind: e.kind, name: e.name, message: e.message, code: e.code ?? null, text: e.text ?? null, isSealwire: e instanceof m.SealwireError };
  } finally { conn?.close(); }
  return out;
}

const node = await startNode('--echo-delay-ms', '2');

await check('demo page: encrypted session, several prompts echoed back exactly, screenshot', async () => {
  await page.goto(`${PAGE}?url=${encodeURIComponent(node.url)}&nodePub=${node.pub}`);
  await page.click('#open');
  await page.waitForFunction(() => document.getElementById('status').textContent !== 'connecting…' && document.getElementById('status').textContent !== 'not connected', { timeout: 20000 });
  const st = await page.$eval('#status', (e) => e.textContent);
  assert(st === 'session open', `status after open: ${st}`);
  const prompts = ['Hello from the browser', 'second prompt with   spaces and ünïcödé → ✓', 'one two three four five six seven eight nine ten'];
  for (const p of prompts) {
    await page.$eval('#prompt', (e, v) => { e.value = v; }, p);
    await page.click('#send');
    await page.waitForFunction(() => /^(done|[a-z-]+:)/.test(document.getElementById('status').textContent) && !document.getElementById('status').textContent.startsWith('answering'), { timeout: 20000 });
    const [got, status] = await Promise.all([page.$eval('#answer', (e) => e.textContent), page.$eval('#status', (e) => e.textContent)]);
    assert(status.startsWith('done:'), `status: ${status}`);
    assert(got === p, `echo mismatch: sent ${JSON.stringify(p)}, got ${JSON.stringify(got)}`);
  }
  await mkdir(OUT, { recursive: true });
  await page.screenshot({ path: join(OUT, 'demo.png'), fullPage: true });
});

await check('module API: prompts streamed in pieces, ended with token counts, authenticated', async () => {
  await page.goto(PAGE);
  const prompts = ['alpha beta gamma delta', 'x', 'the quick brown fox jumps over the lazy dog'];
  const r = await inPage(session, { url: node.url, pub: node.pub, prompts });
  assert(!r.error, `error: ${JSON.stringify(r.error)}`);
  assert(r.answers.length === prompts.length, `answers: ${r.answers.length}`);
  r.answers.forEach((a, i) => {
    assert(a.text === prompts[i], `answer ${i}: ${JSON.stringify(a.text)}`);
    assert(a.pieces.join('') === prompts[i], `pieces ${i}: ${JSON.stringify(a.pieces)}`);
    assert(a.pieces.length === prompts[i].split(' ').length, `answer ${i} came in ${a.pieces.length} pieces, expected one a word`);
    assert(typeof a.tokensUsed === 'number' && a.tokensUsed > 0, `tokensUsed: ${a.tokensUsed}`);
    assert(a.authenticated === true, 'not authenticated');
  });
});

await check('client key supplied by the page: the address the node allows', async () => {
  const key = '11'.repeat(32);
  const kind = await inPage(async (m, a) => { const c = await m.connect({ url: `ws://127.0.0.1:${a.port}/v1/ws`, nodePublicKey: a.pub, connectTimeoutMs: 5000 }).catch((e) => e); return c.kind ?? 'connected'; }, { port: await closedPort(), pub: node.pub });
  assert(kind === 'connection', `connect to a closed port: ${kind}`); // ConnectionError, not a hang
  const allowed = await startNode('--allow', '0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A');
  try {
    const ok = await inPage(session, { url: allowed.url, pub: allowed.pub, prompts: ['allowed'], clientKey: key });
    assert(!ok.error && ok.answers[0].text === 'allowed', `allowed key: ${JSON.stringify(ok)}`);
    // Computed independently with @noble/secp256k1 + keccak (EIP-55), not by sealwire.
    assert(ok.address === '0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A', `address: ${ok.address}`);
    const other = await inPage(session, { url: allowed.url, pub: allowed.pub, prompts: ['refused'] });
    assert(other.error && other.error.kind === 'refused' && other.error.name === 'SessionRefused' && other.error.isSealwire, `fresh key: ${JSON.stringify(other)}`);
  } finally { stop(allowed); }
});

await check('wrong node key fails cleanly (SessionRefused, no answer)', async () => {
  const wrong = '02' + '79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798'; // the generator: not the node
  const r = await inPage(session, { url: node.url, pub: wrong, prompts: ['must not be answered'] });
  assert(r.answers.length === 0, 'answered with a wrong node key');
  assert(r.error && r.error.kind === 'refused' && r.error.name === 'SessionRefused', `error: ${JSON.stringify(r.error)}`);
  const bad = await inPage(async (m) => { try { await m.connect({ url: 'ws://127.0.0.1:1/v1/ws', nodePublicKey: 'zz' }); return 'accepted'; } catch (e) { return e.message; } });
  assert(/node public key/.test(bad), `malformed key: ${bad}`);
});

await check('answer cut short by an on-path proxy (ws_mitm cut-answer) is reported as truncated', async () => {
  const mitm = await startMitm(node.url, 'cut-answer');
  try {
    const r = await inPage(session, { url: mitm.url, pub: node.pub, prompts: ['one two three four five'] });
    assert(r.answers.length === 0, `reported as success: ${JSON.stringify(r.answers)}`);
    assert(r.error && r.error.kind === 'truncated' && r.error.name === 'TruncatedAnswer', `error: ${JSON.stringify(r.error)}`);
    assert(r.error.text === 'one two three four ', `truncated text: ${JSON.stringify(r.error.text)}`);
    assert(/held back the last encrypted_chunk/.test(mitm.stderr()), `the attack did not happen: ${mitm.stderr()}`);
  } finally { stop(mitm); }
  const pass = await startMitm(node.url, 'pass');
  try { // control: the same proxy relaying unchanged gives the whole answer
    const r = await inPage(session, { url: pass.url, pub: node.pub, prompts: ['one two three four five'] });
    assert(!r.error && r.answers[0].text === 'one two three four five', `pass-through: ${JSON.stringify(r)}`);
  } finally { stop(pass); }
});

await check('node error frame surfaces as an error (NodeErrorFrame INFERENCE_FAILED)', async () => {
  const errNode = await startNode('--upstream', `http://127.0.0.1:${await closedPort()}/v1`);
  try {
    const r = await inPage(session, { url: errNode.url, pub: errNode.pub, prompts: ['fails upstream'] });
    assert(r.answers.length === 0, 'answered');
    assert(r.error && r.error.kind === 'node-error' && r.error.name === 'NodeErrorFrame' && r.error.code === 'INFERENCE_FAILED', `error: ${JSON.stringify(r.error)}`);
  } finally { stop(errNode); }
});

await check('silent listener (no WebSocket handshake): TimeoutError', async () => {
  const silent = createTcpServer((sock) => { sock.on('data', () => {}); sock.on('error', () => {}); });
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  try {
    const r = await inPage(session, { url: `ws://127.0.0.1:${silent.address().port}/v1/ws`, pub: node.pub, prompts: ['x'], extra: { connectTimeoutMs: 1500 } });
    assert(r.error && r.error.kind === 'timeout' && r.error.name === 'TimeoutError', `error: ${JSON.stringify(r.error)}`);
  } finally { silent.close(); }
});

// A WebSocket server that completes the handshake (RFC 6455 accept key) and then says nothing.
async function silentWebSocket() {
  const { createHash } = await import('node:crypto');
  const s = createTcpServer((sock) => {
    sock.on('error', () => {});
    let head = '';
    sock.on('data', (d) => {
      if (head === null) return; // frames from the client: ignored
      head += d.toString('latin1');
      const m = /sec-websocket-key: *([^\r\n]+)/i.exec(head);
      if (!head.includes('\r\n\r\n') || !m) return;
      const accept = createHash('sha1').update(m[1].trim() + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
      sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      head = null;
    });
  });
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  return s;
}

await check('silent node after the handshake: TimeoutError from the client\'s ack timer', async () => {
  const silent = await silentWebSocket();
  try {
    const t0 = Date.now();
    const r = await inPage(session, { url: `ws://127.0.0.1:${silent.address().port}/v1/ws`, pub: node.pub, prompts: ['x'], extra: { ackTimeoutMs: 1000 } });
    const took = Date.now() - t0;
    assert(r.error && r.error.kind === 'timeout' && r.error.name === 'TimeoutError' && /accept the session/.test(r.error.message), `error: ${JSON.stringify(r.error)}`);
    assert(took >= 900 && took < 10000, `timed out after ${took} ms, expected about 1000`);
  } finally { silent.close(); }
});

await check('slow answer: TimeoutError from the client\'s first-piece timer', async () => {
  const slow = await startNode('--echo-delay-ms', '5000');
  try {
    const r = await inPage(session, { url: slow.url, pub: slow.pub, prompts: ['too slow'], extra: { firstPieceTimeoutMs: 800 } });
    assert(r.answers.length === 0, 'answered');
    assert(r.error && r.error.kind === 'timeout' && r.error.name === 'TimeoutError' && /the answer/.test(r.error.message), `error: ${JSON.stringify(r.error)}`);
  } finally { stop(slow); }
});

await browser.close();
server.close();
stop(node);
if (failed) console.log('page console:\n' + consoleLines.slice(-30).map((l) => '    ' + l).join('\n'));
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
