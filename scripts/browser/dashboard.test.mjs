// The dashboard browser test (issue 8): headless Debian Chromium driven by playwright-core
// against a running `concord demo`.
//
// 1. starts `concord demo --seconds N --keep-serving` and waits for its final check (it must say
//    `result: OK`); the demo's credit-hold customer leaves one order dead-lettered at the ERP;
// 2. loads the dashboard, is sent to the login page, logs in with the keyboard only (operator
//    token), and sees every flow on the overview (status label and sparkline each) and the
//    `dead-letters` alert firing; opens the first flow's page with `j` Enter;
// 3. goes to the dead-letter page with the `g d` shortcut, finds the credit-hold letter, lifts the
//    hold in the sandbox ERP (its control API: the fix an operator would make), clicks Replay and
//    waits until the page reports the order delivered to the ERP;
// 4. opens the order page (a delivered attempt to the ERP in its history), the stock pool of a SKU
//    through the `/` search, the alerts page (the alert resolved) and the orders by state;
// 4b. renames a product in web1 behind the hub's back to a name that is HTML markup, goes to the
//    Drift page with `g c`, clicks Run now and sees the run: every check of the stored report, the
//    product's `name` difference with the markup shown as text (no element made of it, its
//    handler never run), and the run listed with its flow → destination; logs out and in again
//    as a viewer, who sees the Replay and Run now buttons disabled;
// 5. checks through the admin API that the letter is replayed and the ERP accepted the order, and
//    that the browser logged no error (a CSP violation would be one).
// Screenshots of every step go to $SCREENSHOT_DIR (target/screenshots). Every wait is a condition
// with a deadline; nothing sleeps and hopes.
//
// Env: CONCORD_BIN (the concord binary), CHROMIUM (default /usr/bin/chromium), SCREENSHOT_DIR,
// DEMO_SECONDS (default 8).

import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN = process.env.CONCORD_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = process.env.SCREENSHOT_DIR || "target/screenshots";
const SECONDS = process.env.DEMO_SECONDS || "8";
const OPERATOR = "concord-demo-operator";
const VIEWER = "concord-demo-viewer";
const HELD = "held@example.com";
const T = 30_000; // deadline of each browser wait

if (!BIN) throw new Error("CONCORD_BIN must name the concord binary");
mkdirSync(SHOTS, { recursive: true });
const log = (...a) => console.error("[browser-test]", ...a);

// ---------- the demo ----------
const demo = spawn(BIN, ["demo", "--seconds", SECONDS, "--keep-serving", "--listen", "127.0.0.1:0"], {
  stdio: ["ignore", "pipe", "pipe"],
  env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
});
let out = "";
let demoExit = null;
const exited = new Promise((resolve) => demo.on("exit", (code, sig) => resolve((demoExit = { code, sig }))));
demo.stdout.on("data", (d) => (out += d));
demo.stderr.on("data", () => {});

async function until(what, cond, ms) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (demoExit) throw new Error(`${what}: the demo exited (${JSON.stringify(demoExit)})\n${out}`);
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let browser = null;
let failed = false;
const userData = mkdtempSync(join(tmpdir(), "concord-chromium-"));
try {
  await until("the demo's final check", () => out.includes("keep-serving:"), 240_000);
  if (!/result: OK/.test(out)) throw new Error(`the demo's final check failed:\n${out}`);
  const hub = out.match(/dashboard (http:\/\/\S+?)\/\s/)?.[1];
  const erp = out.match(/^\s+ERP\s+(http:\/\/\S+)/m)?.[1];
  const web1 = out.match(/^\s+web1\s+(http:\/\/\S+)/m)?.[1];
  if (!hub || !erp || !web1) throw new Error(`could not read the hub, ERP and web1 URLs from:\n${out}`);
  log(`demo done; dashboard ${hub}/, ERP ${erp}`);
  const apiGet = async (path) => {
    const r = await fetch(`${hub}/api/v1${path}`, { headers: { Authorization: `Bearer ${OPERATOR}` } });
    if (!r.ok) throw new Error(`GET ${path}: HTTP ${r.status}`);
    return r.json();
  };
  const flows = await apiGet("/flows");
  const open = await apiGet("/dead-letters?state=open");
  const letter = open.find((d) => d.kind === "order" && d.reason.includes("credit hold"));
  if (!letter) throw new Error(`no credit-hold dead letter among ${JSON.stringify(open)}`);

  // ---------- the browser ----------
  browser = await chromium.launchPersistentContext(userData, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const page = browser.pages()[0] || (await browser.newPage());
  page.setDefaultTimeout(T);
  const problems = [];
  page.on("console", (m) => {
    // The one expected failure: asking /api/v1/me before logging in answers 401.
    const expected = /status of 401/.test(m.text()) && (m.location().url || "").endsWith("/api/v1/me");
    if (m.type() === "error" && !expected) problems.push(`console: ${m.text()} (${m.location().url})`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const shot = async (name) => {
    await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
    log(`screenshot ${name}.png`);
  };

  // Login, keyboard only: the token field has focus; type and press Enter.
  await page.goto(`${hub}/`);
  await page.waitForURL(/#\/login$/);
  await page.waitForSelector("#token:focus");
  await shot("01-login");
  await page.keyboard.type(OPERATOR);
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => location.hash === "#/");
  await page.waitForSelector("#who:has-text('demo-operator')");

  // Overview: every flow, each with a status label and a sparkline; the alert firing.
  await page.waitForFunction((n) => document.querySelectorAll("#flows-table tbody tr").length === n, flows.length);
  for (const f of flows) {
    const row = page.locator(`#flows-table tr[data-flow="${f.name}"]`);
    await row.locator(".status").waitFor();
    await row.locator("svg.spark").waitFor();
  }
  await page.waitForSelector(`#flows-table tr[data-flow="${letter.flow}"] .status.bad:has-text('dead letter')`);
  await page.waitForSelector("#alerts-table tr:has-text('dead-letters'):has-text('firing')");
  await page.waitForSelector("#endpoints-table tr[data-endpoint='erp']");
  await shot("02-overview");
  log(`overview shows ${flows.length} flows and the dead-letters alert`);

  // A flow's page from the keyboard: `j` focuses the first flow row, Enter opens it.
  await page.locator("main").focus();
  await page.keyboard.press("j");
  await page.keyboard.press("Enter");
  await page.waitForFunction((name) => location.hash === `#/flows/${encodeURIComponent(name)}`, flows[0].name);
  await page.waitForSelector(`h1:has-text('Flow ${flows[0].name}')`);
  await page.waitForSelector("#flow-pause:not([disabled]), #flow-resume:not([disabled])");
  await shot("02b-flow");

  // Dead letters via the `g d` shortcut.
  await page.locator("main").focus();
  await page.keyboard.press("g");
  await page.keyboard.press("d");
  await page.waitForFunction(() => location.hash === "#/dead-letters");
  const row = page.locator(`#dead-letters-table tr[data-dead-letter="${letter.id}"]`);
  await row.waitFor();
  await row.locator("td.reason:has-text('credit hold')").waitFor();
  // Its payload, expanded, stays expanded through a live refresh.
  await row.locator("summary").click();
  const stamp = await page.locator("#updated").textContent();
  await page.waitForFunction((t) => document.querySelector("#updated").textContent !== t, stamp);
  await page.waitForSelector(`#dead-letters-table tr[data-dead-letter="${letter.id}"] details[open] pre`);
  await shot("03-dead-letters");

  // The operator's fix: lift the customer's credit hold in the ERP; then replay from the page.
  const lifted = await fetch(`${erp}/_control/credit-hold/${encodeURIComponent(HELD)}`, { method: "DELETE" });
  if (lifted.status !== 204) throw new Error(`lifting the credit hold: HTTP ${lifted.status}`);
  await row.locator("button[data-action='replay']").click();
  const followed = page.locator(`#replays-table tr[data-replayed="${letter.id}"] td.delivery`);
  await followed.waitFor();
  await page.waitForFunction(
    (id) => document.querySelector(`#replays-table tr[data-replayed="${id}"] td.delivery`)?.textContent.includes("delivered"),
    letter.id,
  );
  await page.waitForSelector(`#dead-letters-table tr[data-dead-letter="${letter.id}"]`, { state: "detached" });
  await shot("04-replayed-delivered");
  log(`dead letter #${letter.id} (${letter.key}) replayed and delivered`);

  // The order's page: a delivered attempt to the ERP in its history.
  await page.locator(`#replays-table tr[data-replayed="${letter.id}"] a`).click();
  await page.waitForSelector("#h-attempts-table tr[data-outcome='delivered'][data-dest='erp']");
  await shot("05-order");

  // The stock pool of a SKU through the `/` search.
  await page.locator("main").focus();
  await page.keyboard.press("/");
  await page.waitForSelector("#q:focus");
  await page.keyboard.type("SKU-0001");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => location.hash === "#/stock/SKU-0001");
  await page.waitForSelector("#positions-table tbody tr");
  await page.waitForSelector("#channels-table tbody tr:has-text('web1')");
  await shot("06-stock");

  // Alerts: the dead-letters episode resolved once the letter was replayed.
  await page.locator("main").focus();
  await page.keyboard.press("g");
  await page.keyboard.press("a");
  await page.waitForSelector("#alerts-table tr:has-text('dead-letters'):has-text('resolved')");
  await shot("07-alerts");

  // Orders by state (`g r`): the counts and the list.
  await page.locator("main").focus();
  await page.keyboard.press("g");
  await page.keyboard.press("r");
  await page.waitForSelector("#order-counts a:has-text('all')");
  await page.waitForSelector(`#orders-table tr[data-href="#/orders/${encodeURIComponent(letter.key)}"]`);
  await shot("08-orders");

  // Drift: a product renamed in web1 behind the hub's back, to markup that would run if it were
  // ever inserted as HTML. Run now (operator) from the Drift page (`g c`) finds it.
  const HOSTILE = `<img src=x onerror="window.__concordPwned=1">Renamed & <b>bold</b>`;
  const shopProduct = await fetch(`${web1}/api/products/SKU-0002`);
  if (!shopProduct.ok) throw new Error(`web1 GET product SKU-0002: HTTP ${shopProduct.status}`);
  const renamed = await fetch(`${web1}/api/products/SKU-0002`, {
    method: "PUT",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...(await shopProduct.json()), name: HOSTILE }),
  });
  if (!renamed.ok) throw new Error(`web1 PUT product SKU-0002: HTTP ${renamed.status} ${await renamed.text()}`);
  await page.locator("main").focus();
  await page.keyboard.press("g");
  await page.keyboard.press("c");
  await page.waitForFunction(() => location.hash === "#/drift");
  await page.locator("#reconcile-run:not([disabled])").click();
  await page.waitForFunction(() => /^#\/drift\/\d+$/.test(location.hash), null, { timeout: 120_000 });
  const runId = Number(await page.evaluate(() => location.hash.split("/")[2]));
  const stored = await apiGet(`/reconcile/${runId}`);
  if (stored.trigger !== "api" || stored.heal) throw new Error(`run ${runId}: ${JSON.stringify({ trigger: stored.trigger, heal: stored.heal })}`);
  const checks = stored.report.results;
  await page.waitForFunction((n) => document.querySelectorAll("#checks-table tbody tr").length === n, checks.length);
  const nameCell = page.locator(`table.drift-keys[data-flow="catalog-migration"][data-dest="web1"] tr[data-key="SKU-0002"][data-field="name"] td.value`);
  await nameCell.nth(1).waitFor();
  const [expected, actual] = [await nameCell.nth(0).textContent(), await nameCell.nth(1).textContent()];
  if (actual !== JSON.stringify(HOSTILE)) throw new Error(`the actual name is shown as ${JSON.stringify(actual)}`);
  if (expected === "—" || expected === actual) throw new Error(`the expected name is shown as ${JSON.stringify(expected)}`);
  const made = await page.evaluate(() => ({ elements: document.querySelectorAll("main img, main td.value b").length, ran: window.__concordPwned === 1 }));
  if (made.elements || made.ran) throw new Error(`a value from the store became HTML: ${JSON.stringify(made)}`);
  // Each check with drifted keys has its table, one row per key (or per differing field).
  for (const c of checks.filter((c) => c.comparison.drifted.length)) {
    const rows = c.comparison.drifted.slice(0, 500).reduce((n, d) => n + (d.drift === "different" ? Math.max(1, d.fields.length) : 1), 0);
    await page.waitForFunction(
      ([flow, dest, check, n]) => document.querySelectorAll(`table.drift-keys[data-flow="${flow}"][data-dest="${dest}"][data-check="${check}"] tbody tr`).length === n,
      [c.flow, c.dest, c.check, rows],
    );
  }
  await shot("08b-drift-run");
  await page.locator("a:has-text('all runs')").click();
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"] [data-check="catalog-migration>web1"]`);
  await shot("08c-drift-runs");
  log(`drift run #${runId}: ${checks.length} checks, ${stored.drifted} drifted keys, the renamed product shown as text`);

  // Log out; a viewer sees the same pages with the actions disabled.
  await page.locator("#logout").click();
  await page.waitForURL(/#\/login$/);
  await page.waitForSelector("#token:focus");
  await page.keyboard.type(VIEWER);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#who:has-text('demo-viewer')");
  await page.evaluate((id) => (location.hash = `#/dead-letters/${id}`), letter.id);
  await page.waitForSelector(`#dead-letters-table tr[data-dead-letter="${letter.id}"] button[data-action='replay'][disabled]`);
  await shot("09-viewer");
  await page.evaluate(() => (location.hash = "#/drift"));
  await page.waitForSelector(`#runs-table tr[data-run="${runId}"]`);
  await page.waitForSelector("#reconcile-run[disabled]");

  // Through the API: the letter is replayed, the ERP accepted the order.
  const after = await apiGet(`/dead-letters/${letter.id}`);
  if (after.state !== "replayed") throw new Error(`dead letter state ${after.state}`);
  const order = await apiGet(`/orders/${encodeURIComponent(letter.key)}`);
  if (!order.order.accepted_at) throw new Error(`order ${letter.key} not accepted: ${JSON.stringify(order.order)}`);
  if (problems.length) throw new Error(`the browser reported errors:\n${problems.join("\n")}`);
  log("PASS: logged in, saw the flows, replayed a dead letter and saw it delivered, ran a reconciliation and saw its drift");
} catch (e) {
  failed = true;
  console.error(`[browser-test] FAIL: ${e.stack || e}`);
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(userData, { recursive: true, force: true });
  if (!demoExit) {
    demo.kill("SIGTERM");
    const r = await Promise.race([exited, new Promise((res) => setTimeout(() => res(null), 20_000))]);
    if (!r) {
      demo.kill("SIGKILL");
      failed = true;
      console.error("[browser-test] the demo did not stop on SIGTERM");
    } else if (r.code !== 0) {
      failed = true;
      console.error(`[browser-test] the demo exited with ${JSON.stringify(r)}`);
    }
  }
}
process.exit(failed ? 1 : 0);
