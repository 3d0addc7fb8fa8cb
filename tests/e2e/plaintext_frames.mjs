#!/usr/bin/env node
// Replays the SDK's own legacy plaintext frames (vectors/fabstir/plaintext.json `client_frames`,
// byte for byte) against a node and judges the replies the way SDK 1.36.0 consumes them
// (spec §5.3): the init is resolved by `session_init_ack` or any frame carrying its `id`; the
// prompt's answer is the `stream_chunk` contents up to `stream_end`, and an `error` is only
// noticed when it carries the prompt's `id`.
// Usage: node plaintext_frames.mjs --url ws://HOST:PORT/v1/ws --file plaintext.json [--expect-rejected]
// Passes (exit 0) when, for every vector, an echo node answers with exactly the prompt the SDK
// put on the wire (`expected.wire_prompt`) — or, with --expect-rejected, when both frames get an
// `error` carrying their `id` and no answer text arrives.
import WebSocket from 'ws';
import { readFileSync } from 'fs';

const args = process.argv.slice(2);
const opt = (n) => { const i = args.indexOf('--' + n); return i >= 0 ? args[i + 1] : undefined; };
const expectRejected = args.includes('--expect-rejected');
const file = JSON.parse(readFileSync(opt('file'), 'utf8'));

async function connect(url) {
  const ws = new WebSocket(url); const inbox = []; let waiter = null;
  ws.on('message', (d) => { let f; try { f = JSON.parse(d.toString()); } catch { f = { type: '__unparseable__' }; } inbox.push(f); if (waiter) waiter(); });
  await new Promise((res, rej) => { ws.once('open', res); ws.once('error', rej); });
  const wait = (pred, ms = 5000) => new Promise((res) => {
    const check = () => { const i = inbox.findIndex(pred); if (i >= 0) { clearTimeout(t); waiter = null; res(inbox.splice(i, 1)[0]); return true; } return false; };
    const t = setTimeout(() => { waiter = null; res(null); }, ms);
    if (!check()) waiter = check;
  });
  return { ws, wait };
}

const results = [];
for (const v of file.vectors) {
  const [initText, promptText] = v.client_frames;
  const init = JSON.parse(initText); const prompt = JSON.parse(promptText);
  const c = await connect(opt('url'));
  c.ws.send(initText);
  const initReply = await c.wait((f) => f.type === 'session_init_ack' || f.id === init.id);
  c.ws.send(promptText);
  let text = ''; let end = null; let error = null;
  for (;;) {
    const f = await c.wait((x) => x.id === prompt.id && ['stream_chunk', 'stream_end', 'error'].includes(x.type));
    if (!f) break;
    if (f.type === 'stream_chunk') text += f.content ?? '';
    if (f.type === 'stream_end') { end = f; break; }
    if (f.type === 'error') { error = f; break; }
  }
  c.ws.close();
  const pass = expectRejected
    ? initReply?.type === 'error' && error !== null && text === ''
    : initReply?.type === 'session_init_ack' && end !== null && text === v.expected.wire_prompt;
  results.push({ name: v.name, pass, init: initReply?.type, text, error: error && error.code });
}
const ok = results.length > 0 && results.every((r) => r.pass);
process.stdout.write(JSON.stringify({ ok, results }) + '\n');
process.exit(ok ? 0 : 1);
