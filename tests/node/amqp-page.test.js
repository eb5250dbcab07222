'use strict';
// The work-queue demo page (/amqp.html: gateway/static/amqp.js on the vendored browser
// build of @cloudamqp/amqp-client, served by the gateway from its embedded files) in
// headless Chromium: connect with a user and password, publish jobs (confirmed), get them
// delivered with manual ack, nack one and see it come back marked redelivered, ack it, and
// a wrong password shows the broker's refusal. Against the gateway's amqp bridge (the page's
// own /amqp) and, with ?url=, against RabbitMQ through the byte relay. Afterwards amqplib,
// straight on RabbitMQ's TCP port, finds the queue empty. Saves tests/artifacts/amqp.png.

const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');

const { Gateway, ROOT } = require('./lib/gateway');
const { startRabbitMQ } = require('./lib/brokers');
const { amqplibDirect } = require('./lib/amqp');
const { gatewayTarget, relayTarget, names } = require('./lib/amqp-targets');
const { Browser, browserMissing } = require('./lib/xmpp-browser');

const ARTIFACTS = path.join(ROOT, 'tests', 'artifacts');
const T = { timeout: 60000 };

describe('work-queue page in Chromium', { skip: browserMissing() }, () => {
  const targets = [gatewayTarget(), relayTarget()];
  let browser;
  let rabbit;
  let pageGw; // serves /amqp.html for the relay target

  before(async () => {
    rabbit = await startRabbitMQ();
    browser = await new Browser().start();
    pageGw = await new Gateway({}).start();
    for (const t of targets) await t.start(rabbit);
  }, { timeout: 180000 });

  after(async () => {
    if (browser) await browser.stop();
    for (const t of targets) await t.stop();
    if (pageGw) await pageGw.stop();
    if (rabbit) await rabbit.stop();
  }, { timeout: 60000 });

  for (const target of targets) {
    describe(target.name, () => {
      // The gateway target uses the page's default URL (its own /amqp); the relay's is passed in.
      const openPage = async (queue) => {
        const page = await browser.page();
        const q = `queue=${encodeURIComponent(queue)}`;
        const url = target.kind === 'gateway'
          ? target.gw.httpUrl(`/amqp.html?${q}`)
          : pageGw.httpUrl(`/amqp.html?${q}&url=${encodeURIComponent(target.url())}`);
        const res = await page.goto(url);
        assert.equal(res.status(), 200, 'the gateway serves /amqp.html');
        assert.equal(await page.inputValue('#url'), target.url(), 'the WebSocket URL field');
        assert.equal(await page.getAttribute('#conn-state', 'data-state'), 'closed');
        return page;
      };

      const connect = async (page, creds) => {
        await page.fill('#username', creds.username);
        await page.fill('#password', creds.password);
        await page.click('#connect');
      };

      const job = (page, body, redelivered) =>
        page.locator(`#jobs li[data-body="${body}"][data-redelivered="${redelivered}"]`);

      it('publishes jobs, acks one, nacks one and gets it back redelivered, then acks it', T, async (t) => {
        if (target.unavailable) return t.skip(target.unavailable);
        const queue = names(target, { name: 'page' }, 'jobs');
        const page = await openPage(queue);
        await connect(page, target.creds);
        await page.waitForSelector('#conn-state[data-state=online]', { timeout: 10000 });
        assert.equal(await page.isVisible('#work'), true);

        for (const body of ['resize image 1', 'resize image 2']) {
          await page.fill('#job', body);
          await page.click('#publish-button');
        }
        await page.waitForFunction(() => document.getElementById('publish-status').textContent === '2 published, confirmed');
        await job(page, 'resize image 1', false).waitFor({ timeout: 10000 });
        await job(page, 'resize image 2', false).waitFor({ timeout: 10000 });
        assert.equal(await page.locator('#jobs .badge.redelivered').count(), 0, 'first deliveries are not redelivered');

        // Ack the first: it moves to Done.
        await job(page, 'resize image 1', false).locator('button.ack').click();
        await page.locator('#done li[data-body="resize image 1"]').waitFor({ timeout: 10000 });
        assert.equal(await page.textContent('#done-count'), '1 acked');

        // Nack the second with requeue: the broker delivers it again, marked redelivered.
        await job(page, 'resize image 2', false).locator('button.nack').click();
        const again = job(page, 'resize image 2', true);
        await again.waitFor({ timeout: 10000 });
        assert.equal(await again.locator('.badge.redelivered').textContent(), 'redelivered');
        assert.equal(await job(page, 'resize image 2', false).count(), 0, 'the first delivery is gone from the list');
        await again.locator('button.ack').click();
        await page.locator('#done li[data-body="resize image 2"]').waitFor({ timeout: 10000 });
        assert.equal(await page.textContent('#done-count'), '2 acked');
        assert.equal(await page.locator('#jobs li[data-tag]').count(), 0, 'nothing waits for an ack');

        fs.mkdirSync(ARTIFACTS, { recursive: true });
        if (target.kind === 'gateway') await page.screenshot({ path: path.join(ARTIFACTS, 'amqp.png'), fullPage: true });

        await page.click('#disconnect');
        await page.waitForSelector('#conn-state[data-state=closed]', { timeout: 10000 });
        assert.deepEqual(page.problems, []);
        await page.close();

        // Both acks reached RabbitMQ: the queue is empty, nothing unacked held back.
        const direct = await amqplibDirect(rabbit.url);
        try {
          const ch = await direct.createChannel();
          assert.equal((await ch.checkQueue(queue)).messageCount, 0);
          assert.equal(await ch.get(queue, { noAck: true }), false);
          await ch.deleteQueue(queue);
        } finally {
          await direct.close();
        }
      });

      it('shows the refusal of a wrong password', T, async (t) => {
        if (target.unavailable) return t.skip(target.unavailable);
        const page = await openPage(names(target, { name: 'page' }, 'refused'));
        await connect(page, target.badCreds);
        await page.waitForSelector('#conn-state[data-state=error]', { timeout: 10000 });
        assert.match(await page.textContent('#login-error'), /ACCESS_REFUSED.*\(403\)/);
        assert.equal(await page.isVisible('#login'), true);
        assert.deepEqual(page.problems, []);
        await page.close();
      });
    });
  }
});
