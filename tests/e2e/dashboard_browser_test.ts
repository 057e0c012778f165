/**
 * The dashboard page in a real browser: headless Chromium (Debian's
 * `chromium` package, driven by playwright-core) opens the page of a server
 * with a live tunnel, sees the group and its app, watches the byte counter
 * grow as bytes go through the tunnel, and is turned away with a wrong
 * password. Screenshots (laptop and phone width) go to `tests/artifacts/`.
 * Without Chromium the test is registered as ignored, with the reason.
 */

import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { startClient, startServer } from "../../mod.ts";
import { echoApp, echoThrough, portBlock, randomBytes, sha256, until } from "../helpers/harness.ts";
import { udpEcho, UdpUser } from "../helpers/udp.ts";

const CHROMIUM = "/usr/bin/chromium";
const ARTIFACTS = new URL("../artifacts/", import.meta.url).pathname;

const missing = await Deno.stat(CHROMIUM).then(() => undefined, () => "chromium is not installed");
const skipNote = missing ? ` (skipped: ${missing}; apt-get install chromium)` : "";

/** Flags that keep Chromium off the network (this machine refuses any outside connection). */
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** What the page's root element tells about its size (typed here: no DOM library in tests). */
interface Measured {
  scrollWidth: number;
  clientWidth: number;
}

Deno.test({
  name: `the dashboard page shows a live tunnel in Chromium and counts its bytes${skipNote}`,
  ignore: missing !== undefined,
  // playwright-core keeps its own timers and pipes past close; they are its, not burrow's.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const app = echoApp();
    const udp = await udpEcho();
    const server = await startServer({
      bind: "127.0.0.1:0",
      token: "browser-token",
      ports: portBlock().spec,
      publicHost: "127.0.0.1",
      dashboard: { bind: "127.0.0.1:0", user: "ops", password: "browser-pass" },
    });
    const url = `http://127.0.0.1:${server.dashboardAddr?.port}/`;
    const lab = await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "browser-token",
      group: "home-lab",
    });
    const edge = await startClient({
      server: `127.0.0.1:${server.addr.port}`,
      token: "browser-token",
      group: "edge-01",
    });
    // playwright makes a fresh temporary profile (user data dir) for every launch.
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ARGS,
      timeout: 30_000,
    });
    try {
      const web = await lab.expose({
        name: "web",
        local: app.addr,
        description: 'Intranet <img src=x onerror="alert(1)">',
      });
      await lab.expose({ name: "ssh", local: app.addr });
      const dns = await lab.expose({ name: "dns", type: "udp", local: udp.addr });
      await edge.expose({ name: "metrics", local: app.addr });
      await edge.close(); // an offline group for the offline view

      // A wrong password gets 401 and no page.
      const wrong = await browser.newContext({
        httpCredentials: { username: "ops", password: "wrong" },
      });
      const denied = await (await wrong.newPage()).goto(url);
      assert.equal(denied?.status(), 401);
      await wrong.close();

      const context = await browser.newContext({
        httpCredentials: { username: "ops", password: "browser-pass" },
        viewport: { width: 1280, height: 860 },
      });
      const page = await context.newPage();
      const errors: string[] = [];
      page.on("pageerror", (err) => errors.push(err.message));
      page.on("console", (m) => m.type() === "error" && errors.push(m.text()));
      const res = await page.goto(url);
      assert.equal(res?.status(), 200);

      const row = page.locator('[data-group="home-lab"] tr[data-app="web"]');
      await row.waitFor({ timeout: 10_000 });
      assert.equal(await row.locator("td.port").getAttribute("data-value"), String(web.remotePort));
      const bytesIn = async () =>
        Number(await row.locator("td.bytes-in").getAttribute("data-value"));
      assert.equal(await bytesIn(), 0);
      await page.locator('[data-offline-group="edge-01"]').waitFor({ timeout: 10_000 });
      await page.locator("#link[data-state=live]").waitFor({ timeout: 10_000 });

      // Bytes through the tunnel: the page's counter grows without a reload.
      const data = randomBytes(2_000_000);
      assert.equal(await echoThrough(web.remotePort, data), await sha256(data));
      await until(bytesIn, (n) => n === 2_000_000, 10_000, "the byte counter reaches 2000000");
      assert.equal(await bytesIn(), 2_000_000);
      assert.match(await row.locator("td.bytes-in").innerText(), /1\.9\d? MiB/);
      // Text from clients is shown as text, never run as markup.
      assert.equal(
        await row.locator(".desc").innerText(),
        'Intranet <img src=x onerror="alert(1)">',
      );
      assert.equal(await page.locator("img").count(), 0);
      // A udp app's row says udp/PORT and counts its datagrams (two sent, two echoed).
      const dnsRow = page.locator('[data-group="home-lab"] tr[data-app="dns"]');
      assert.equal(await dnsRow.locator("td.port").innerText(), `udp/${dns.remotePort}`);
      using user = await UdpUser.open();
      for (let i = 0; i < 2; i++) {
        await user.send(new TextEncoder().encode(`ping ${i}`), dns.remotePort);
        await user.receive();
      }
      await until(
        () => dnsRow.locator(".udp").innerText(),
        (t) => t === "datagrams 2 in · 2 out · 0 dropped",
        10_000,
        "the datagram figures",
      );
      await page.locator("#events li[data-kind=disconnect]").waitFor({ timeout: 10_000 });
      // Let the sparkline pick the burst up before the picture is taken.
      const lines = page.locator('tr[data-app="web"] svg.spark polyline');
      await until(() => lines.count(), (n) => n === 2, 10_000, "the sparkline is drawn");
      await echoThrough(web.remotePort, randomBytes(500_000));
      await page.waitForTimeout(1500); // a settled picture only; every assertion above awaited its event
      await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true });
      await page.setViewportSize({ width: 390, height: 844 });
      await page.screenshot({ path: `${ARTIFACTS}dashboard-phone.png`, fullPage: true });
      const overflow = await page.locator("html").evaluate((root: Measured) =>
        root.scrollWidth - root.clientWidth
      );
      assert.ok(overflow <= 0, `the phone layout scrolls sideways by ${overflow}px`);
      assert.deepEqual(errors, [], "the page logged no errors");
      await context.close();
    } finally {
      await browser.close();
      await lab.close();
      await edge.close();
      await server.close();
      app.close();
      udp.close();
    }
  },
});
