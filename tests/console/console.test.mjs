// The web console in a real browser (Debian's chromium, headless, driven by playwright-core),
// against a running `sluice dev --token`. Run by tests/tests/console.rs, which starts Sluice
// with one Trigger (TRIGGER) of the tester handler: `data.fatal: true` dead-letters an event.
// Every check throws on failure; the exit status says whether all passed.
import assert from "node:assert/strict";
import { createRequire } from "node:module";

// playwright-core lives in the prefix scripts/toolchains.sh installs (PLAYWRIGHT_MODULES), not
// beside this file; ESM imports ignore NODE_PATH, so it is required from there.
const require = createRequire(import.meta.url);
const { chromium } = require(require.resolve("playwright-core", { paths: [process.env.PLAYWRIGHT_MODULES || ""] }));

const url = process.env.SLUICE_URL;
const token = process.env.SLUICE_TOKEN;
const trigger = process.env.TRIGGER;
const shots = process.env.SHOTS_DIR;
const type = process.env.EVENT_TYPE;
assert.ok(url && token && trigger && shots && type, "SLUICE_URL, SLUICE_TOKEN, TRIGGER, SHOTS_DIR, EVENT_TYPE");

const stamp = Date.now();
async function publish(id, eventType, data) {
  const r = await fetch(`${url}/buses/default/events`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/cloudevents+json" },
    body: JSON.stringify({ specversion: "1.0", id, source: "/console-test", type: eventType, datacontenttype: "application/json", data }),
  });
  assert.equal(r.status, 202, `publishing ${id}: ${r.status} ${await r.text()}`);
}

const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
const step = (what) => console.log(`console test: ${what}`);
try {
  await page.goto(`${url}/console`);
  assert.equal(await page.title(), "Sluice console");

  // Without the token nothing is shown and the page says why.
  await page.waitForFunction(() => document.getElementById("status").textContent.includes("token"), null, { timeout: 5000 });
  assert.equal(await page.locator("#triggers tr").count(), 0, "triggers listed without the token");
  step("without the token: nothing listed, asks for it");

  await page.fill("#token", token);
  await page.click("#unlock");
  await page.waitForFunction(() => document.getElementById("mode").textContent === "actions enabled", null, { timeout: 5000 });
  await page.waitForSelector(`#triggers tr[data-trigger="${trigger}"]`, { timeout: 5000 });
  assert.match(await page.locator("#functions").innerText(), /ready/);
  step("with the token: Functions and Triggers listed, actions enabled");

  // The live tail, filtered by a pattern: a matching event shows within 2 s, another does not.
  await page.fill("#tail-form input[name=pattern]", JSON.stringify({ type: [type] }));
  await page.click("#tail-form button");
  await page.waitForFunction(() => document.getElementById("tail-status").textContent.startsWith("following"), null, { timeout: 5000 });
  const ok = `ok-${stamp}`, other = `other-${stamp}`;
  await publish(other, "com.example.unrelated", { n: 0 });
  const published = Date.now();
  await publish(ok, type, { n: 1 });
  await page.waitForSelector(`#tail-rows tr[data-event="${ok}"]`, { timeout: 2000 });
  step(`published event shown in the tail after ${Date.now() - published} ms`);
  assert.equal(await page.locator(`#tail-rows tr[data-event="${other}"]`).count(), 0, "the pattern filter let another type through");
  await page.waitForSelector(`#deliveries tr[data-event="${ok}"]`, { timeout: 5000 });
  assert.match(await page.locator(`#deliveries tr[data-event="${ok}"]`).first().innerText(), /ok, 1 reply/);
  step("its delivery listed with its outcome");

  // A dead letter, redriven by clicking: the event is delivered a second time.
  const bad = `bad-${stamp}`;
  await publish(bad, type, { fatal: true });
  const row = page.locator(`#triggers tr[data-trigger="${trigger}"]`);
  await page.waitForFunction((t) => {
    const r = document.querySelector(`#triggers tr[data-trigger="${t}"] td.dead`);
    return r && r.textContent === "1";
  }, trigger, { timeout: 10000 });
  await page.waitForSelector(`#deliveries tr[data-event="${bad}"]`, { timeout: 5000 });
  assert.match(await page.locator(`#deliveries tr[data-event="${bad}"]`).first().innerText(), /dead-lettered \(fatal\)/);
  step("the fatal event is a dead letter");
  await row.locator("button").click();
  await page.waitForFunction(() => document.getElementById("status").textContent.startsWith("redriven 1"), null, { timeout: 5000 });
  await page.waitForFunction((id) => document.querySelectorAll(`#deliveries tr[data-event="${id}"]`).length >= 2, bad, { timeout: 10000 });
  step("redrive clicked: the dead letter was delivered again");

  // Its trace: routed, then each attempt.
  await page.locator(`#deliveries tr[data-event="${bad}"] a.event`).first().click();
  await page.waitForFunction(() => document.querySelectorAll("#trace tr").length >= 3, null, { timeout: 5000 });
  const traced = await page.locator("#trace").innerText();
  assert.match(traced, new RegExp(`routed to ${trigger}`));
  assert.match(traced, /attempt 1 on .*dead-lettered \(fatal\)/);
  step("the trace shows the routing and every attempt");

  // The send form publishes with the token.
  await page.fill("#send input[name=type]", type);
  await page.fill("#send textarea[name=data]", JSON.stringify({ n: 2 }));
  await page.click("#send-button");
  await page.waitForFunction(() => document.getElementById("send-result").textContent.startsWith("accepted "), null, { timeout: 5000 });
  const sent = (await page.locator("#send-result").innerText()).slice("accepted ".length);
  await page.waitForSelector(`#tail-rows tr[data-event="${sent}"]`, { timeout: 2000 });
  step("an event sent from the form reached the tail");

  await page.screenshot({ path: `${shots}/console.png`, fullPage: true });
  step(`screenshot: ${shots}/console.png`);
} catch (e) {
  await page.screenshot({ path: `${shots}/console-failed.png`, fullPage: true }).catch(() => {});
  throw e;
} finally {
  await browser.close();
}
