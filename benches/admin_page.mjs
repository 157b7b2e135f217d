// Holds the operator page open in headless Chromium for HOLD_S seconds, for
// benches/admin_page.sh: opens http://127.0.0.1:PORT/admin, enters the key,
// and counts the stats answers the page gets. Creates READY_FILE when the
// held time begins (the page is live); prints one JSON line at its end.
// Environment: PORT, API_KEY, HOLD_S, READY_FILE, CHROMIUM (default /usr/bin/chromium).
import { writeFileSync } from "node:fs";

import { chromium } from "../tests/browser/node_modules/playwright-core/index.mjs";

const { PORT, API_KEY, HOLD_S = "60", READY_FILE, CHROMIUM = "/usr/bin/chromium" } = process.env;
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox", "--disable-gpu"] });
try {
  const page = await browser.newPage();
  let polls = 0;
  page.on("response", (r) => {
    if (r.url().endsWith("/api/admin/stats") && r.status() === 200) polls += 1;
  });
  await page.goto(`http://127.0.0.1:${PORT}/admin`, { timeout: 15000 });
  await page.fill("#key", API_KEY);
  await page.click("#login button[type=submit]");
  await page.waitForFunction(() => document.querySelector("#total").dataset.value !== undefined, null, { timeout: 15000 });
  const from = polls;
  writeFileSync(READY_FILE, "");
  await page.waitForTimeout(Number(HOLD_S) * 1000);
  const held = polls - from;
  const shown = await page.textContent("#total");
  process.stdout.write(JSON.stringify({ ok: true, polls: held, shown: Number(shown) }) + "\n");
} finally {
  await browser.close();
}
