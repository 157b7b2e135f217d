// What every browser script of tests/browser.rs shares: secrets kept out of
// everything it prints, one JSON result line on stdout, diagnostics on
// stderr, a whole-run watchdog, and the exit status that tells the test.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const started = Date.now();

// Everything that leaves the process goes through redact().
export const secrets = [];

export function redact(text) {
  let s = String(text);
  for (const secret of secrets) s = s.split(secret).join("<redacted>");
  return s.replace(/([?&]token=)[^&\s'"`]*/g, "$1<redacted>");
}

export function logger(tag) {
  return (...parts) => process.stderr.write(redact(`[${tag} ${Date.now() - started}ms] ${parts.join(" ")}`) + "\n");
}

export function emit(result) {
  process.stdout.write(redact(JSON.stringify(result)) + "\n");
}

export function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

export function need(name) {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is required`);
  return v;
}

// Runs main(), bounded by `deadlineMs` whatever hangs (the browser is killed
// by playwright's exit handler), and exits 0 with its result or 1 with the error.
export async function run(main, deadlineMs, log) {
  const watchdog = setTimeout(() => {
    emit({ ok: false, error: `did not finish within ${deadlineMs} ms` });
    process.exit(1);
  }, deadlineMs);
  try {
    const result = await main();
    clearTimeout(watchdog);
    emit(result);
    process.exit(0);
  } catch (e) {
    clearTimeout(watchdog);
    log("FAILED:", e && e.stack ? e.stack : e);
    emit({ ok: false, error: e && e.message ? e.message : String(e) });
    process.exit(1);
  }
}

// Runs use(context) in headless Chromium with a fresh profile, and closes
// both whatever happens. The flags keep a browser on a closed network quiet
// and fast.
export async function withBrowser({ executablePath, waitMs, viewport, log }, use) {
  const profile = mkdtempSync(join(tmpdir(), "realtime-e2e-chromium-"));
  let context;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath,
      headless: true,
      timeout: waitMs,
      viewport,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    return await use(context);
  } finally {
    if (context) await context.close().catch((e) => log("closing the browser:", e.message));
    rmSync(profile, { recursive: true, force: true });
  }
}
