// The operator page (README, Operator page) in a real browser, run by
// tests/browser.rs against a running `realtime` server:
//
//   1. headless Chromium opens http://127.0.0.1:<port>/admin, enters the API
//      key and waits for the page to show 0 connections;
//   2. a second page of the same origin opens one real WebSocket per client
//      token and subscribes each to `orders`; the operator page must show the
//      count and `orders` among the busiest rooms;
//   3. the operator page publishes a test event to `orders`: every client
//      must receive it; it reads the room's history and a user's presence;
//   4. it disconnects the first client's user (accepting the confirmation):
//      that client must be closed with 4003, the others stay;
//   5. a screenshot of the page goes to REALTIME_E2E_SCREENSHOT.
// Every request the page makes is recorded: none may leave the server's
// origin, and none may carry the key in its URL.
//
// Input (environment):
//   REALTIME_E2E_SERVER_PORT  port of the realtime server on 127.0.0.1
//   REALTIME_E2E_API_KEY      the server's API_KEY (never printed)
//   REALTIME_E2E_CLIENTS      JSON [{"userId":"...","token":"..."}] (tokens never printed)
//   REALTIME_E2E_SCREENSHOT   where to write the PNG
//   REALTIME_E2E_CHROMIUM     browser binary, default /usr/bin/chromium
//   REALTIME_E2E_WAIT_MS      bound of each wait, default 15000
//
// Output: one JSON line on stdout, {"ok":true,...} or {"ok":false,"error":...};
// exit 0 only when every check passed. Diagnostics go to stderr.

import { randomUUID } from "node:crypto";
import { check, emit, logger, need, run, secrets, withBrowser } from "./harness.mjs";

const log = logger("admin");

let config;
try {
  config = {
    port: Number(need("REALTIME_E2E_SERVER_PORT")),
    apiKey: need("REALTIME_E2E_API_KEY"),
    clients: JSON.parse(need("REALTIME_E2E_CLIENTS")),
    screenshot: need("REALTIME_E2E_SCREENSHOT"),
    executablePath: process.env.REALTIME_E2E_CHROMIUM || "/usr/bin/chromium",
    waitMs: Number(process.env.REALTIME_E2E_WAIT_MS || 15000),
  };
  check(Array.isArray(config.clients) && config.clients.length >= 2, "REALTIME_E2E_CLIENTS lists at least two clients");
} catch (e) {
  emit({ ok: false, error: e.message });
  process.exit(2);
}
const { port, apiKey, clients, screenshot, executablePath, waitMs } = config;
secrets.push(apiKey, ...clients.map((c) => c.token));
const origin = `http://127.0.0.1:${port}`;

// The figure the page shows in #total, once it equals `n`.
async function waitTotal(page, n) {
  await page.waitForFunction((n) => document.querySelector("#total").dataset.value === String(n), n, { timeout: waitMs });
}

async function main() {
  return withBrowser({ executablePath, waitMs, viewport: { width: 1280, height: 1100 }, log }, operate);
}

async function operate(context) {
    const admin = await context.newPage();
    const requests = [];
    admin.on("request", (r) => requests.push(r.url()));
    admin.on("pageerror", (e) => log("page error:", e.message));
    const dialogs = [];
    admin.on("dialog", async (d) => {
      dialogs.push(d.message());
      await d.accept();
    });

    // 1. the key, then the live figures
    const response = await admin.goto(`${origin}/admin`, { waitUntil: "load", timeout: waitMs });
    check(response && response.status() === 200, "GET /admin answers 200");
    check(await admin.locator("#board").isHidden(), "nothing is shown before the key");
    await admin.fill("#key", apiKey);
    await admin.click("#login button[type=submit]");
    await waitTotal(admin, 0);
    check((await admin.evaluate(() => sessionStorage.length)) === 1, "the key is kept in sessionStorage");
    check((await admin.evaluate(() => localStorage.length)) === 0, "nothing is kept in localStorage");
    log("page live");

    // 2. real WebSocket clients, from a page of the same origin
    const peers = await context.newPage();
    await peers.goto(`${origin}/health`, { waitUntil: "load", timeout: waitMs });
    await peers.evaluate(({ clients, port }) => {
      window.clients = clients.map(({ userId, token }) => {
        const c = { userId, frames: [], close: null, subscribed: false };
        c.ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}`);
        c.ws.onmessage = ({ data }) => {
          const frame = JSON.parse(data);
          c.frames.push(frame);
          if (frame.type === "connected") c.ws.send(JSON.stringify({ type: "subscribe", room: "orders" }));
          if (frame.type === "subscribed") c.subscribed = true;
        };
        c.ws.onclose = (e) => (c.close = { code: e.code, reason: e.reason });
        return c;
      });
    }, { clients, port });
    await peers.waitForFunction(() => window.clients.every((c) => c.subscribed), null, { timeout: waitMs });
    await waitTotal(admin, clients.length);
    await admin.waitForFunction(
      (n) => [...document.querySelectorAll("#rooms tbody tr")].some((tr) => tr.dataset.room === "orders" && tr.cells[1].textContent === String(n)),
      clients.length,
      { timeout: waitMs },
    );
    log("page shows", clients.length, "connections");

    // 3. publish from the page; every client gets it; history and presence
    const marker = `operator-${randomUUID()}`;
    await admin.fill("#publish-room", "orders");
    await admin.fill("#publish-type", "broadcast");
    await admin.fill("#publish-payload", JSON.stringify({ message: marker }));
    await admin.click("#publish-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelector("#publish-out").textContent.startsWith("202"), null, { timeout: waitMs });
    const published = JSON.parse((await admin.textContent("#publish-out")).split("\n").slice(1).join("\n"));
    await peers.waitForFunction((id) => window.clients.every((c) => c.frames.some((f) => f.id === id)), published.id, { timeout: waitMs });
    log("every client got", published.id);

    await admin.fill("#history-room", "orders");
    await admin.click("#history-form button[type=submit]");
    await admin.waitForFunction((id) => document.querySelector("#history-out").textContent.includes(id), published.id, { timeout: waitMs });
    await admin.fill("#presence-user", clients[1].userId);
    await admin.click("#presence-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelector("#presence-out").textContent.includes('"online": true'), null, { timeout: waitMs });

    // 4. disconnect the first client's user, confirming the dialog
    const target = clients[0].userId;
    await admin.fill("#disconnect-user", target);
    await admin.fill("#disconnect-reason", "operator test");
    await admin.click("#disconnect-form button[type=submit]");
    await admin.waitForFunction(() => document.querySelector("#disconnect-out").textContent.startsWith("202"), null, { timeout: waitMs });
    check(dialogs.length === 1 && dialogs[0].includes(target), `one confirmation naming the user (${JSON.stringify(dialogs)})`);
    await peers.waitForFunction(() => window.clients[0].close !== null, null, { timeout: waitMs });
    const closes = await peers.evaluate(() => window.clients.map((c) => c.close));
    check(closes[0].code === 4003 && closes[0].reason === "operator test", `the user's client closed with 4003 (${JSON.stringify(closes[0])})`);
    check(closes.slice(1).every((c) => c === null), `the other clients stay (${JSON.stringify(closes)})`);
    await waitTotal(admin, clients.length - 1);
    log("disconnected", target);

    // 5. the screenshot, with a few seconds of chart
    await admin.waitForFunction(() => document.querySelector("#rate-out").textContent !== "–", null, { timeout: waitMs });
    await admin.screenshot({ path: screenshot, fullPage: true });
    const shown = await admin.evaluate(() => ({
      total: document.querySelector("#total").textContent,
      rooms: [...document.querySelectorAll("#rooms tbody tr")].map((tr) => `${tr.cells[0].textContent} ${tr.cells[1].textContent}`),
      shards: document.querySelectorAll("#shards tbody tr").length,
      status: document.querySelector("#status").textContent,
    }));

    const foreign = requests.filter((url) => !url.startsWith(`${origin}/`));
    check(foreign.length === 0, `every request stays on the server's origin (${JSON.stringify(foreign)})`);
    check(!requests.some((url) => url.includes(apiKey)), "no URL carries the key");
    await peers.evaluate(() => window.clients.forEach((c) => c.ws.close()));
    return {
      ok: true,
      browser: context.browser() ? context.browser().version() : null,
      requests: requests.length,
      published: published.id,
      disconnected: target,
      close: closes[0],
      dialog: dialogs[0],
      shown,
      screenshot,
    };
}

await run(main, 4 * waitMs, log);
