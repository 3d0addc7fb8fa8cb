// sealwire in the browser: an encrypted Fabstir session from a web page.
//
//   import { connect, generateClientKey } from './sealwire.js';
//   const conn = await connect({ url: 'ws://127.0.0.1:8080/v1/ws', nodePublicKey: '02…' });
//   const session = await conn.openSession({ sessionId: '1', jobId: '1', chainId: 84532, model: 'echo' });
//   const answer = session.prompt('Hello there');
//   for await (const piece of answer) output.textContent += piece;   // the answer as it streams
//   const { text, tokensUsed, finishReason } = await answer.end;     // whole and authenticated
//   conn.close();
//
// Errors (all extend SealwireError, with a `kind`): NodeErrorFrame ('node-error', the node's
// `code` and `message`), TruncatedAnswer ('truncated': the answer was cut short, `text` holds
// what arrived), TimeoutError ('timeout'), SessionRefused ('refused': the node refused the
// session or closed before accepting it, e.g. a wrong node key), AnswerFailed ('answer-failed':
// a chunk failed the client's checks), ConnectionError ('connection').
//
// The protocol is sealwire's Rust session::Client compiled to WebAssembly (pkg/): this file only
// moves frames between it and the WebSocket and tells it the time. Randomness comes from
// crypto.getRandomValues; the client key stays in the page.

import init, { WasmClient, generateClientKey as wasmGenerateKey } from './pkg/browser_client.js';

let ready = null;
/** Loads the WebAssembly module (done by connect(); call it early to load it sooner). */
export function load() {
  ready ??= init();
  return ready;
}

/** A fresh client identity key (64 hex digits), from crypto.getRandomValues. */
export async function generateClientKey() {
  await load();
  return wasmGenerateKey();
}

export class SealwireError extends Error {
  constructor(kind, message) { super(message); this.kind = kind; this.name = this.constructor.name; }
}
export class NodeErrorFrame extends SealwireError {
  constructor(code, message) { super('node-error', `the node answered with an error: ${code}: ${message}`); this.code = code; this.nodeMessage = message; }
}
export class TruncatedAnswer extends SealwireError {
  constructor(text) { super('truncated', `the answer was cut short: its sealed end never arrived (${text.length} characters received)`); this.text = text; }
}
export class TimeoutError extends SealwireError {
  constructor(what) { super('timeout', `timed out waiting for ${what}`); }
}
export class SessionRefused extends SealwireError {
  constructor(message, code) { super('refused', message); this.code = code ?? null; }
}
export class AnswerFailed extends SealwireError {
  constructor(message) { super('answer-failed', `the answer failed the client's checks: ${message}`); }
}
export class ConnectionError extends SealwireError {
  constructor(message) { super('connection', message); }
}

const now = () => performance.now();

/**
 * Opens a WebSocket to a node's /v1/ws. Options: url, nodePublicKey (hex), clientKey (hex,
 * optional: a fresh key otherwise), connectTimeoutMs (default 10000), and the session's
 * timeouts: ackTimeoutMs (30000), firstPieceTimeoutMs (180000), pieceTimeoutMs (60000).
 */
export async function connect({ url, nodePublicKey, clientKey, connectTimeoutMs = 10000, ackTimeoutMs, firstPieceTimeoutMs, pieceTimeoutMs }) {
  await load();
  // Throws on a bad key or timeout.
  const client = new WasmClient(nodePublicKey, clientKey || undefined, ackTimeoutMs, firstPieceTimeoutMs, pieceTimeoutMs);
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => { ws.close(); reject(new TimeoutError(`the connection to ${url}`)); }, connectTimeoutMs);
    ws.onopen = () => { clearTimeout(timer); resolve(); };
    ws.onerror = () => { clearTimeout(timer); reject(new ConnectionError(`cannot connect to ${url}`)); };
  });
  return new Connection(ws, client);
}

export class Connection {
  constructor(ws, client) {
    this._ws = ws; this._client = client; this._timer = null;
    this._waiting = null;   // { resolve, reject } of openSession
    this._answer = null;    // the Answer being received
    this._closed = null;    // the error once the socket is gone
    this._model = null;
    /** This client's address (0x…): what a node's allow-list holds. */
    this.address = client.address();
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      // A frame the client rejects outside an answer is ignored (like ws_client); inside an
      // answer it fails it through an event.
      try { this._client.handleFrame(now(), ev.data); } catch (_) { /* ignored */ }
      this._pump();
    };
    ws.onclose = (ev) => this._gone(`the node closed the connection (code ${ev.code})`);
    ws.onerror = () => this._gone('the connection failed');
  }

  /** Opens the encrypted session: { sessionId, jobId, chainId, model }. Resolves with a Session. */
  openSession({ sessionId = '1', jobId = '1', chainId = 84532, model = 'echo' } = {}) {
    if (this._closed) return Promise.reject(this._closed);
    this._model = model;
    const p = new Promise((resolve, reject) => { this._waiting = { resolve, reject }; });
    this._client.startSession(now(), String(sessionId), String(jobId), Number(chainId), String(model));
    this._pump();
    return p;
  }

  /** Closes the WebSocket. */
  close() { this._gone('closed by the page'); try { this._ws.close(1000); } catch (_) { /* closed */ } }

  _prompt(text) {
    if (this._closed) throw this._closed;
    if (this._answer) throw new SealwireError('busy', 'an answer is still arriving');
    const answer = new Answer();
    this._client.sendPrompt(now(), text, this._model);
    this._answer = answer;
    this._pump();
    return answer;
  }

  _pump() {
    let f;
    while ((f = this._client.pollTransmit()) !== undefined) this._ws.send(f);
    let e;
    while ((e = this._client.pollEvent()) !== undefined) this._event(e);
    clearTimeout(this._timer);
    const t = this._client.pollTimeout();
    if (t !== undefined) {
      this._timer = setTimeout(() => { this._client.handleTimeout(now()); this._pump(); }, Math.max(0, t - now()) + 1);
    }
  }

  _event(e) {
    const w = this._waiting, a = this._answer;
    switch (e.type) {
      case 'ready':
        if (w) { this._waiting = null; w.resolve(new Session(this)); }
        break;
      case 'chunk':
        if (a) a._piece(e.text);
        break;
      case 'finished':
        if (a) { this._answer = null; a._end({ text: e.text, tokensUsed: e.tokensUsed, finishReason: e.finishReason, authenticated: e.authenticated }); }
        break;
      case 'truncated': this._failAnswer(new TruncatedAnswer(e.text)); break;
      case 'answerFailed': this._failAnswer(new AnswerFailed(e.message)); break;
      case 'timeout':
        if (w) { this._waiting = null; w.reject(new TimeoutError('the node to accept the session')); } else this._failAnswer(new TimeoutError('the answer'));
        break;
      case 'nodeError':
        if (w) { this._waiting = null; w.reject(new SessionRefused(`the node refused the session: ${e.code}: ${e.message}`, e.code)); } else this._failAnswer(new NodeErrorFrame(e.code, e.message));
        break;
      default: break;
    }
  }

  _failAnswer(err) {
    const a = this._answer;
    this._answer = null;
    if (a) a._fail(err);
  }

  _gone(why) {
    if (this._closed) return;
    clearTimeout(this._timer);
    if (this._waiting) {
      this._waiting.reject(new SessionRefused(`the node closed the connection before accepting the session (${why})`));
      this._waiting = null;
    }
    this._closed = new ConnectionError(why);
    this._failAnswer(this._closed);
  }
}

export class Session {
  constructor(conn) { this._conn = conn; }
  /** Sends a prompt; returns an Answer (one at a time). */
  prompt(text) { return this._conn._prompt(text); }
  /** Asks the node to stop the current answer (it then ends with what arrived). */
  cancel() { this._conn._client.cancel(); this._conn._pump(); }
}

/**
 * An answer: an async iterable of text pieces as they arrive, and `end`, a promise of
 * { text, tokensUsed, finishReason, authenticated } once the node's sealed end of answer
 * proved it whole. Both reject with a SealwireError on failure.
 */
export class Answer {
  constructor() {
    this._pieces = []; this._wake = null; this._done = false; this._error = null;
    this.end = new Promise((resolve, reject) => { this._resolve = resolve; this._reject = reject; });
    this.end.catch(() => {}); // a page that only iterates still sees the error there
  }
  /** Called with each piece as it arrives (an alternative to iterating). */
  onPiece(fn) { this._listener = fn; return this; }
  _piece(t) { this._pieces.push(t); if (this._listener) this._listener(t); this._poke(); }
  _end(r) { this._done = true; this._resolve(r); this._poke(); }
  _fail(err) { this._done = true; this._error = err; this._reject(err); this._poke(); }
  _poke() { const w = this._wake; this._wake = null; if (w) w(); }
  async *[Symbol.asyncIterator]() {
    for (;;) {
      if (this._pieces.length) { yield this._pieces.shift(); continue; }
      if (this._error) throw this._error;
      if (this._done) return;
      await new Promise((r) => { this._wake = r; });
    }
  }
}
