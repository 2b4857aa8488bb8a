// Opens tests/js/page/index.html in headless Chromium (Debian's, through
// playwright-core) and waits until the page lists `expect` messages.
// Driven by tests/e2e/test_mqttjs.py. One argument, a JSON object:
//   {"pageUrl": "http://127.0.0.1:PORT/page/index.html?broker=...&topic=...",
//    "expect": 2, "timeoutMs": 30000, "screenshot": "/path.png" (optional)}
// Prints one JSON line: {"ok", "status", "messages": [...], "text", "console": [...], "error"?}.
import { chromium } from 'playwright-core';

const opts = JSON.parse(process.argv[2]);
const timeoutMs = opts.timeoutMs ?? 30000;
const executablePath = process.env.CHROMIUM_BIN || '/usr/bin/chromium';

const browser = await chromium.launch({
  executablePath,
  headless: true,
  // Root in a container has no user namespaces for Chromium's sandbox.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const consoleLines = [];
let result;
try {
  const page = await browser.newPage();
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(opts.pageUrl, { timeout: timeoutMs });
  let error;
  try {
    await page.waitForFunction(
      (n) => document.querySelectorAll('#messages li').length >= n
        || document.getElementById('status').textContent.startsWith('error'),
      opts.expect ?? 1, { timeout: timeoutMs });
  } catch (e) {
    error = String(e.message || e).split('\n')[0];
  }
  if (opts.screenshot) {
    await page.screenshot({ path: opts.screenshot });
  }
  const status = await page.textContent('#status');
  const messages = await page.$$eval('#messages li', (els) => els.map((e) => e.textContent));
  const text = await page.innerText('body');
  result = {
    ok: !error && !status.startsWith('error') && messages.length >= (opts.expect ?? 1),
    status, messages, text, console: consoleLines, error,
  };
} catch (e) {
  result = { ok: false, error: String(e.message || e), console: consoleLines };
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
process.exit(result.ok ? 0 : 1);
