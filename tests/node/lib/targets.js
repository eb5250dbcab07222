'use strict';
// The servers the plain-STOMP checks run against, side by side: the gateway's STOMP bridge
// (always; started here) and RabbitMQ Web-STOMP when RABBITMQ_WS_URL is set (tests/run.sh
// starts a private node with tests/scripts/rabbitmq.sh). A test written against a target
// uses its url(), connect headers and queue names, and reads `expect` where the two servers
// differ (each difference is listed in README.md, "Compared with RabbitMQ Web-STOMP").

const assert = require('node:assert/strict');
const { Gateway } = require('./gateway');
const { RawPeer, withTimeout } = require('./stomp');

// RabbitMQ queues outlive a test run (SEND and SUBSCRIBE declare durable queues): give each
// run its own queue names so a rerun against the same node starts empty.
const RUN = `${process.pid}.${Date.now().toString(36)}`;

/** The gateway: `gatewayOpts` as for `new Gateway(...)`; `target.gw` is the Gateway. */
function gatewayTarget(gatewayOpts) {
  return {
    name: 'the gateway STOMP bridge',
    kind: 'gateway',
    gateway: true,
    gw: null,
    async start() {
      this.gw = await new Gateway(gatewayOpts).start();
    },
    async stop() {
      const rc = await this.gw.stop();
      assert.equal(rc, 0, `gateway exit code ${rc}\n${this.gw.log()}`);
    },
    url() { return this.gw.url('/ws'); },
    connectHeaders: {},
    rawConnectHeaders: { host: 'localhost' },
    q: (name) => `/queue/${name}`,
    expect: {
      server: /^gateway\//,
      subprotocolCapsVersion: true,  // v11.stomp allows 1.0 and 1.1 only
      heartBeatHeaderIn10: false,    // CONNECTED of a 1.0 session has no heart-beat header
      disconnectReceipt: true,       // RECEIPT for DISCONNECT, then close
      terminator: '\0',              // frames end with NUL, nothing after it
      wsFrames: 'per-frame',         // text when the frame is UTF-8, else binary
      forwardsSendHeaders: false,    // a SEND's receipt and transaction headers stay with the server
      unsubscribeRequeues: true,     // UNSUBSCRIBE redelivers the subscription's unacked messages
      closesAfterError: true,        // every ERROR is followed by a close
      errorReceiptId: true,          // ERROR for a frame with a receipt carries its receipt-id
      subscribeNeedsId: true,        // 1.1+ SUBSCRIBE without id: ERROR
      redeliveredOnFirst: undefined, // no redelivered header on a first delivery
      silentClient: { error: 'heart-beat timeout', code: 1008 },
    },
  };
}

/** RabbitMQ Web-STOMP at `url` (guest/guest unless RABBITMQ_USER/RABBITMQ_PASS), vhost "/". */
function rabbitTarget(url) {
  const login = process.env.RABBITMQ_USER || 'guest';
  const passcode = process.env.RABBITMQ_PASS || 'guest';
  return {
    name: 'RabbitMQ Web-STOMP',
    kind: 'rabbitmq',
    gateway: false,
    async start() {
      // Fail every test of the block (not skip them) when the broker is not there.
      const peer = new RawPeer(url);
      try {
        await withTimeout(peer.opened, 5000, `WebSocket to ${url}`);
        peer.frame('CONNECT', { 'accept-version': '1.2', ...this.rawConnectHeaders });
        const f = await withTimeout(Promise.race([peer.waitFrame('CONNECTED', 5000), peer.waitFrame('ERROR', 5000)]),
          5000, 'CONNECTED from RabbitMQ');
        assert.equal(f.command, 'CONNECTED', `RabbitMQ refused CONNECT: ${f.headers.message}`);
      } finally {
        peer.ws.terminate(); // an open socket would keep the test file running
      }
    },
    async stop() {},
    url() { return url; },
    connectHeaders: { login, passcode, host: '/' },
    rawConnectHeaders: { login, passcode, host: '/' },
    q: (name) => `/queue/${name}.${RUN}`,
    expect: {
      server: /^RabbitMQ\//,
      subprotocolCapsVersion: false, // the highest common accept-version, whatever the subprotocol
      heartBeatHeaderIn10: true,     // heart-beat header also in a 1.0 CONNECTED
      disconnectReceipt: false,      // closes (1000 "STOMP died") without the RECEIPT
      terminator: '\0\n',            // NUL then an EOL after every frame
      wsFrames: 'binary',            // rabbitmq.sh sets web_stomp.ws_frame = binary (default: text)
      forwardsSendHeaders: true,     // MESSAGE carries the SEND's receipt and transaction headers
      unsubscribeRequeues: false,    // unacked messages stay with the session until it closes
      closesAfterError: false,       // ERROR for a bad SEND/ACK/command, connection stays open
      errorReceiptId: false,         // no receipt-id in ERROR
      subscribeNeedsId: false,       // SUBSCRIBE without id is accepted
      redeliveredOnFirst: 'false',   // redelivered:false on every first delivery
      silentClient: { error: null, code: 1000 },
    },
  };
}

/** Every target of this run: the gateway first, then RabbitMQ if RABBITMQ_WS_URL is set. */
function stompTargets(gatewayOpts) {
  const targets = [gatewayTarget(gatewayOpts)];
  if (process.env.RABBITMQ_WS_URL) targets.push(rabbitTarget(process.env.RABBITMQ_WS_URL));
  return targets;
}

module.exports = { stompTargets, gatewayTarget, rabbitTarget, RUN };
