'use strict';
// The two servers the AMQP checks run against, on the same RabbitMQ: the gateway's `amqp`
// bridge at /amqp (clients log in as a gateway realm user) and a plain byte relay from a
// WebSocket to RabbitMQ's TCP port (RabbitMQ's own users), so a check shows what RabbitMQ
// itself does. A target reads `expect` where the two legitimately differ, and sets
// `unavailable` (with the reason) only when this gateway build has no amqp bridge.

const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const { Gateway, gatewayBin, httpGet, sleep } = require('./gateway');
const { amqpService, startRelay, withTimeout } = require('./amqp');

const RUN = `${process.pid}.${Date.now().toString(36)}`;
const POOL_SIZE = 2;
const REALM_USER = { username: 'amqp-alice', password: 'alice-pass' };

/** The gateway's amqp bridge on `rabbit`, clients checked against a realm file. */
/** `over`: more [service.settings] for the bridge (the pool size is POOL_SIZE). */
function gatewayTarget(over = {}) {
  return {
    name: 'the gateway amqp bridge',
    kind: 'gateway',
    gw: null,
    unavailable: null,
    creds: REALM_USER,
    badCreds: { username: REALM_USER.username, password: 'not-the-password' },
    expect: {
      channelMax: 64,          // the bridge's max_channels default, offered in Tune
      badHeaderClose: [1002],  // a header that is not 0-9-1: the 0-9-1 header, then close 1002
      // The bridge tracks the tags a client must settle and answers as RabbitMQ does.
      unknownTagIdle: { close: 406 },
      channelAboveMax: 530,    // channel.open above the offered channel-max: Connection.Close 530
      hardErrorClose: [1002],  // after a connection-level error's Close-Ok: close 1002 (protocol error)
    },
    async start(rabbit) {
      this.rabbit = rabbit;
      const hash = execFileSync(gatewayBin(), ['hash-password', REALM_USER.password]).toString().trim();
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'amqp-realm-'));
      this.realmDir = dir;
      const realm = path.join(dir, 'users.toml');
      fs.writeFileSync(realm, `[[user]]\nname = "${REALM_USER.username}"\npassword_hash = '${hash}'\nroles = []\n`);
      try {
        this.gw = await new Gateway({
          services: [amqpService({ backend: rabbit.url, pool_size: POOL_SIZE, ...over })],
          sections: { auth: { realm_file: realm } },
        }).start();
      } catch (e) {
        if (/unknown bridge `amqp`/.test(e.message)) {
          this.unavailable = 'this gateway build has no amqp bridge (bridges/amqp not wired in yet)';
          return;
        }
        throw e;
      }
      // The pool connects in the background; until then the service refuses upgrades (503).
      const deadline = Date.now() + 20000;
      for (;;) {
        const r = await httpGet(this.gw.port, '/readyz').catch((err) => ({ status: err.message }));
        if (r.status === 200) break;
        assert.ok(Date.now() < deadline, `/readyz is ${r.status} after 20 s\n${this.gw.log()}`);
        await sleep(50);
      }
    },
    async stop() {
      if (this.gw) {
        const rc = await this.gw.stop();
        assert.equal(rc, 0, `gateway exit code ${rc}\n${this.gw.log()}`);
      }
      if (this.realmDir) fs.rmSync(this.realmDir, { recursive: true, force: true });
    },
    url() { return this.gw.url('/amqp'); },
    log() { return this.gw ? this.gw.log() : ''; },
  };
}

/** RabbitMQ itself, through a WebSocket-to-TCP byte relay; RabbitMQ's own users. */
function relayTarget() {
  return {
    name: 'RabbitMQ through a byte relay',
    kind: 'relay',
    relay: null,
    unavailable: null,
    creds: null,
    badCreds: null,
    expect: {
      channelMax: 2047,        // RabbitMQ's channel_max default
      badHeaderClose: [1000, 1011], // RabbitMQ ends the TCP connection, with a reset when unread bytes remain
      unknownTagIdle: { close: 406 }, // Channel.Close 406 PRECONDITION_FAILED at once
      channelAboveMax: null,   // RabbitMQ 3.10 opens channel channel_max + 1 (2048) all the same
      hardErrorClose: [1000, 1011], // RabbitMQ ends (or resets) the TCP connection after Close-Ok
    },
    async start(rabbit) {
      this.rabbit = rabbit;
      const u = new URL(rabbit.url);
      this.creds = { username: decodeURIComponent(u.username), password: decodeURIComponent(u.password) };
      this.badCreds = { username: this.creds.username, password: 'not-the-password' };
      this.relay = await startRelay(rabbit.url);
    },
    async stop() { if (this.relay) await this.relay.close(); },
    url() { return this.relay.url('/amqp'); },
    log() { return ''; },
  };
}

const names = (target, client, what) => `amqp-node.${RUN}.${target.kind}.${client.name.replace(/\W/g, '')}.${what}`;

/** Deliveries as they arrive; `wait(n)` resolves to the first `n`, or fails after `ms`. */
function collector() {
  const seen = [];
  let waiter = null;
  return {
    seen,
    push(m) {
      seen.push(m);
      if (waiter && seen.length >= waiter.n) { waiter.resolve(seen.slice(0, waiter.n)); waiter = null; }
    },
    wait(n, ms = 5000) {
      if (seen.length >= n) return Promise.resolve(seen.slice(0, n));
      return withTimeout(new Promise((resolve) => { waiter = { n, resolve }; }), ms, `${n} deliveries (have ${seen.length})`);
    },
  };
}

module.exports = { gatewayTarget, relayTarget, names, collector, RUN, POOL_SIZE, REALM_USER };
