// The size-and-speed page (examples/browser/www/bench.html) in headless Chromium; not a test:
// prints the figures the README reports and writes them to OUT/bench.json.
//   node bench.mjs --www DIR(bench build) --ship-wasm FILE --chromium BIN --out DIR
// (run by tests/browser_bench.sh). node_modules (the noble libraries) is served from the
// directory this script lives in.
import { createServer } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import { gzipSync } from 'node:zlib';
import { join, extname, normalize, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import puppeteer from 'puppeteer-core';

const args = process.argv.slice(2);
const opt = (name) => { const i = args.indexOf('--' + name); if (i < 0) throw new Error(`--${name} is required`); return args[i + 1]; };
const WWW = opt('www'), SHIP = opt('ship-wasm'), CHROMIUM = opt('chromium'), OUT = opt('out');
const HERE = dirname(fileURLToPath(import.meta.url));
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const server = createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, 'http://x').pathname)).replace(/^(\.\.[/\\])+/, '');
  const file = path.startsWith('/node_modules/') ? join(HERE, path) : join(WWW, path);
  try { const body = await readFile(file); res.writeHead(200, { 'content-type': TYPES[extname(path)] || 'application/octet-stream' }); res.end(body); } catch { res.writeHead(404); res.end(); }
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const wasm = await readFile(SHIP);
const size = { wasmBytes: wasm.length, gzipBytes: gzipSync(wasm, { level: 9 }).length };
const browser = await puppeteer.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
const page = await browser.newPage();
page.on('pageerror', (e) => console.error('pageerror:', e.message));
await page.goto(`http://127.0.0.1:${server.address().port}/bench.html`);
await page.waitForFunction(() => typeof window.runBench === 'function');
const r = await page.evaluate(() => window.runBench());
const version = await browser.version();
await browser.close(); server.close();
const f = (x) => x.toFixed(1);
console.log(`browser: ${version}`);
console.log(`wasm module (shipping build): ${size.wasmBytes} bytes, ${(size.gzipBytes / 1024).toFixed(1)} KiB gzipped (gzip -9)`);
console.log(`session init (client side): sealwire ${f(r.initWasm)} µs, noble ${f(r.initNoble)} µs, ratio ${(r.initWasm / r.initNoble).toFixed(2)}x`);
console.log(`  noble with the client's public key cached (the SDK recomputes it): ${f(r.initNobleCachedPub)} µs, ratio ${(r.initWasm / r.initNobleCachedPub).toFixed(2)}x`);
console.log(`64-byte chunk open:         sealwire ${f(r.chunkWasm)} µs, noble ${f(r.chunkNoble)} µs, ratio ${(r.chunkWasm / r.chunkNoble).toFixed(2)}x`);
await writeFile(join(OUT, 'bench.json'), JSON.stringify({ browser: version, ...size, ...r }, null, 2) + '\n');
