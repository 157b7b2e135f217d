// End-to-end check with a real browser and a real publisher, run by
// tests/browser.rs against a running `realtime` server:
//
//   1. serve page.html over node's http on 127.0.0.1:<page port> (the origin the
//      server's ALLOWED_ORIGINS lists) and on 127.0.0.1:<foreign port> (an origin
//      it does not list);
//   2. headless Chromium (playwright-core driving /usr/bin/chromium) loads the
//      page, which connects with `new WebSocket(url)` and a token, and subscribes;
//   3. axios publishes to the HTTP API, as the seed's REST service does;
//   4. the page must show each event, with its payload unchanged;
//   5. the same page from the foreign origin must not get a socket: the browser
//      sees an error and close 1006, and the DevTools protocol shows the
//      server's answer to the handshake, 403.
//
// Input (environment):
//   REALTIME_E2E_SERVER_PORT   port of the realtime server on 127.0.0.1
//   REALTIME_E2E_PAGE_PORT     port to serve the page on (listed origin)
//   REALTIME_E2E_FOREIGN_PORT  port to serve the page on (unlisted origin)
//   REALTIME_E2E_TOKEN         client JWT (never printed)
//   REALTIME_E2E_USER_ID       the token's userId
//   REALTIME_E2E_API_KEY       the server's API_KEY, if it has one (never printed)
//   REALTIME_E2E_CHROMIUM      browser binary, default /usr/bin/chromium
//   REALTIME_E2E_WAIT_MS       bound of each wait, default 15000
//
// Output: one JSON line on stdout, {"ok":true,...} or {"ok":false,"error":...};
// exit 0 only when every check passed. Diagnostics go to stderr. Neither ever
// contains the token, the API key, or a URL with `?token=`.

import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";

import axios from "axios";

import { check, emit, logger, need, redact, run, secrets, withBrowser } from "./harness.mjs";

const started = Date.now();
const here = dirname(fileURLToPath(import.meta.url));
const log = logger("e2e");

function port(name) {
  const n = Number(need(name));
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`${name} is not a port`);
  return n;
}

// ---------------------------------------------------------------------------

let config;
try {
  config = {
    serverPort: port("REALTIME_E2E_SERVER_PORT"),
    pagePort: port("REALTIME_E2E_PAGE_PORT"),
    foreignPort: port("REALTIME_E2E_FOREIGN_PORT"),
    token: need("REALTIME_E2E_TOKEN"),
    userId: need("REALTIME_E2E_USER_ID"),
    apiKey: process.env.REALTIME_E2E_API_KEY || "",
    executablePath: process.env.REALTIME_E2E_CHROMIUM || "/usr/bin/chromium",
    waitMs: Number(process.env.REALTIME_E2E_WAIT_MS || 15000),
  };
  check(Number.isFinite(config.waitMs) && config.waitMs > 0, "REALTIME_E2E_WAIT_MS is a positive number");
} catch (e) {
  emit({ ok: false, error: e.message });
  process.exit(2);
}
const { serverPort, pagePort, foreignPort, token, userId, apiKey, executablePath, waitMs } = config;
secrets.push(token);
if (apiKey) secrets.push(apiKey);

const wsBase = `ws://127.0.0.1:${serverPort}/ws`;
const apiBase = `http://127.0.0.1:${serverPort}`;
const pageHtml = readFileSync(join(here, "page.html"));

function servePage(listenPort) {
  const server = createServer((req, res) => {
    const path = new URL(req.url, "http://x").pathname;
    if (req.method === "GET" && (path === "/" || path === "/page.html")) {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
      res.end(pageHtml);
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found\n");
    }
  });
  return new Promise((resolve, reject) => {
    server.once("error", (e) => reject(new Error(`cannot serve the page on 127.0.0.1:${listenPort}: ${e.message}`)));
    server.listen(listenPort, "127.0.0.1", () => resolve(server));
  });
}

// What the DevTools protocol says about the page's WebSocket handshakes.
async function watchHandshakes(context, page) {
  const seen = { created: 0, statuses: [], errors: [] };
  const cdp = await context.newCDPSession(page);
  cdp.on("Network.webSocketCreated", () => {
    seen.created += 1;
  });
  cdp.on("Network.webSocketHandshakeResponseReceived", (e) => {
    seen.statuses.push(e.response.status);
  });
  cdp.on("Network.webSocketFrameError", (e) => {
    seen.errors.push(redact(e.errorMessage));
  });
  await cdp.send("Network.enable");
  return seen;
}

async function openPage(context, origin) {
  const page = await context.newPage();
  page.on("pageerror", (e) => log(`page error (${origin}):`, e.message));
  const handshakes = await watchHandshakes(context, page);
  await page.addInitScript((cfg) => {
    window.REALTIME = cfg;
  }, { url: wsBase, token, rooms: ["orders"] });
  const response = await page.goto(`${origin}/page.html`, { waitUntil: "load", timeout: waitMs });
  check(response && response.status() === 200, `page from ${origin} loads`);
  return { page, handshakes };
}

async function publish(path, body) {
  const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
  let r;
  try {
    r = await axios.post(`${apiBase}${path}`, body, { headers, timeout: waitMs, validateStatus: () => true });
  } catch (e) {
    throw new Error(`POST ${path} failed: ${e.code || ""} ${e.message}`);
  }
  check(r.status === 202, `POST ${path} answers 202 (got ${r.status} ${JSON.stringify(r.data)})`);
  check(r.data && r.data.status === "accepted" && typeof r.data.id === "string" && r.data.id, `POST ${path} body ${JSON.stringify(r.data)}`);
  return r.data.id;
}

async function main() {
  const servers = [await servePage(pagePort), await servePage(foreignPort)];
  const pageOrigin = `http://127.0.0.1:${pagePort}`;
  const foreignOrigin = `http://127.0.0.1:${foreignPort}`;
  try {
    return await withBrowser({ executablePath, waitMs, log }, (context) => browse(context, pageOrigin, foreignOrigin));
  } finally {
    for (const s of servers) s.close();
  }
}

async function browse(context, pageOrigin, foreignOrigin) {
    const browserVersion = context.browser() ? context.browser().version() : null;
    log("browser up");

    // 1. the listed origin: connect, subscribe
    const ok = await openPage(context, pageOrigin);
    await ok.page.waitForFunction(() => window.state === "subscribed" || window.state === "closed", null, {
      timeout: waitMs,
    });
    const first = await ok.page.evaluate(() => ({ state: window.state, received: window.received, closeInfo: window.closeInfo }));
    check(first.state === "subscribed", `page from ${pageOrigin} subscribes (state ${first.state}, close ${JSON.stringify(first.closeInfo)}, frames ${JSON.stringify(first.received)}, handshake ${JSON.stringify(ok.handshakes)})`);
    const hello = first.received[0];
    check(hello && hello.type === "connected", `first frame is connected: ${JSON.stringify(hello)}`);
    check(hello.payload.userId === userId, `connected.userId ${JSON.stringify(hello.payload.userId)} is ${userId}`);
    check(ok.handshakes.statuses.includes(101), `DevTools saw the 101 upgrade (${JSON.stringify(ok.handshakes.statuses)})`);
    log("page subscribed");

    // 2. publish like the REST service does, with axios
    const marker = randomUUID();
    const sent = [
      {
        path: "/api/notifications/broadcast",
        body: { room: "orders", type: "order_update", payload: { orderId: `e2e-${marker}`, status: "shipped", items: [1, 2] } },
      },
      {
        path: "/api/notifications/send",
        body: { userId, type: "notification", payload: { title: "Browser e2e", message: `hello ${marker}`, priority: "high" } },
      },
    ];
    for (const s of sent) s.id = await publish(s.path, s.body);
    const ids = sent.map((s) => s.id);
    check(new Set(ids).size === ids.length, `event ids are unique: ${ids}`);
    log("published", ids.join(","));

    // 3. the page shows them
    await ok.page.waitForFunction(
      (wanted) => wanted.every((id) => document.querySelector(`#events li[data-id="${id}"]`)),
      ids,
      { timeout: waitMs },
    );
    const frames = await ok.page.evaluate(() => window.received);
    const events = [];
    for (const s of sent) {
      const got = frames.filter((f) => f.id === s.id);
      check(got.length === 1, `event ${s.id} arrives once (got ${got.length})`);
      const e = got[0];
      check(e.type === s.body.type, `event ${s.id} type ${e.type}`);
      check(isDeepStrictEqual(e.payload, s.body.payload), `event ${s.id} payload ${JSON.stringify(e.payload)} equals ${JSON.stringify(s.body.payload)}`);
      if (s.body.room) check(e.room === s.body.room, `event ${s.id} room ${e.room}`);
      if (s.body.userId) check(e.userId === s.body.userId, `event ${s.id} userId ${e.userId}`);
      check(typeof e.timestamp === "string" && !Number.isNaN(Date.parse(e.timestamp)), `event ${s.id} timestamp ${e.timestamp}`);
      events.push({ id: e.id, type: e.type, room: e.room ?? null, userId: e.userId ?? null, payload: e.payload });
    }
    const shown = await ok.page.locator("#events li[data-id]").count();
    log("page shows", shown, "events");

    // 4. an origin the server does not list: no socket
    const bad = await openPage(context, foreignOrigin);
    await bad.page.waitForFunction(() => window.state === "closed" || window.state === "subscribed", null, {
      timeout: waitMs,
    });
    const refused = await bad.page.evaluate(() => ({ state: window.state, received: window.received, closeInfo: window.closeInfo }));
    check(refused.state === "closed", `page from ${foreignOrigin} gets no socket (state ${refused.state})`);
    check(refused.received.length === 0, `page from ${foreignOrigin} receives nothing (${JSON.stringify(refused.received)})`);
    check(refused.closeInfo.code === 1006 && refused.closeInfo.sawError, `browser reports error + close 1006 (${JSON.stringify(refused.closeInfo)})`);
    // The DevTools protocol reports the HTTP status the server answered.
    const deadline = Date.now() + waitMs;
    while (!bad.handshakes.statuses.length && !bad.handshakes.errors.length && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // Chromium reports a refused upgrade as a frame error, "Error during
    // WebSocket handshake: Unexpected response code: 403".
    const refusalText = bad.handshakes.errors.join("; ");
    const coded = /response code: (\d{3})/.exec(refusalText);
    const refusal = bad.handshakes.statuses[0] ?? (coded ? Number(coded[1]) : null);
    check(
      refusal === 403,
      `server refuses the handshake from ${foreignOrigin} with 403 (statuses ${JSON.stringify(bad.handshakes.statuses)}, errors ${JSON.stringify(refusalText)})`,
    );
    log("foreign origin refused");

    // the listed page kept its socket through all of it
    const still = await ok.page.evaluate(() => window.state);
    check(still === "subscribed", `page from ${pageOrigin} is still subscribed (${still})`);

    return {
      ok: true,
      browser: browserVersion,
      userId,
      origin: pageOrigin,
      events,
      shown,
      foreign: {
        origin: foreignOrigin,
        closeCode: refused.closeInfo.code,
        handshakeStatus: refusal,
        handshakeError: refusalText || null,
      },
      elapsedMs: Date.now() - started,
    };
}

await run(main, 3 * waitMs, log);
