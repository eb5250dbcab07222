'use strict';
// The STOMP bridge through @stomp/stompjs (over `ws`): versions, topics, wildcards, queues
// with acks and redelivery, receipts, transactions, binary and large bodies, header
// escaping, temp queues. One gateway (no demo feed) serves every test of this file; each
// test uses its own destinations.
//
// Side by side: when RABBITMQ_WS_URL is set (tests/run.sh starts RabbitMQ with
// tests/scripts/rabbitmq.sh), the same plain-STOMP checks also run against RabbitMQ
// Web-STOMP. `gatewayOnly` checks use gateway features (configured heart-beats, ERROR texts,
// subprotocol version caps, temp-queue rewriting, WebSocket frame types); where the two
// servers legitimately differ a shared check reads `target.expect` (lib/targets.js).

const { describe, it, before, after, afterEach } = require('node:test');
const assert = require('node:assert/strict');

const { stompService, sleep } = require('./lib/gateway');
const { connect, subscribe, publish, withReceipt, withTimeout, RawPeer, Collector } = require('./lib/stomp');
const { stompTargets } = require('./lib/targets');

const T = { timeout: 20000 };

/** Frames are handled in order: once a later SEND's RECEIPT is back, earlier frames were too. */
const sync = (client) => publish(client, { destination: '/topic/sync.nobody', body: '' });

/** Every check, against one target (lib/targets.js). */
function checks(target) {
  const X = target.expect;
  const Q = target.q; // a queue destination of this run
  /** Checks of gateway features that RabbitMQ has no counterpart for. */
  const gatewayOnly = (...args) => { if (target.gateway) it(...args); };
  let clients = [];
  let peers = [];

  const open = async (opts = {}) => {
    const c = await connect(target.url(), {
      ...opts,
      connectHeaders: { ...target.connectHeaders, ...(opts.connectHeaders || {}) },
    });
    clients.push(c);
    return c;
  };

  /** A raw WebSocket peer, connected (STOMP 1.2 unless `headers` say otherwise). */
  const rawPeer = async (headers = {}, protocols = undefined) => {
    const peer = new RawPeer(target.url(), protocols);
    peers.push(peer);
    await peer.opened;
    peer.frame('CONNECT', { 'accept-version': '1.2', ...target.rawConnectHeaders, ...headers });
    await peer.waitFrame('CONNECTED');
    return peer;
  };

  before(async () => {
    await target.start();
  });

  afterEach(async () => {
    await Promise.all(clients.map((c) => c.deactivate({ force: !c.connected }).catch(() => {})));
    for (const p of peers) p.close();
    clients = [];
    peers = [];
  });

  after(async () => {
    await target.stop();
  });

  describe('version negotiation', () => {
    for (const [subprotocol, version] of [['v12.stomp', '1.2'], ['v11.stomp', '1.1'], ['v10.stomp', '1.0']]) {
      // RabbitMQ ignores the subprotocol: the highest common accept-version wins.
      const want = X.subprotocolCapsVersion ? version : '1.2';
      it(`subprotocol ${subprotocol} offering every version negotiates STOMP ${want}`, T, async () => {
        const c = await open({ subprotocols: [subprotocol] });
        const version = want;
        assert.equal(c.connectedFrame.headers.version, version);
        assert.match(c.connectedFrame.headers.server, X.server);
        assert.ok(c.connectedFrame.headers.session, 'CONNECTED carries a session header');
        // A round trip works in that version.
        const dest = `/topic/ver.${version.replace('.', '_')}`;
        const got = await subscribe(c, dest);
        await publish(c, { destination: dest, body: `hello ${version}` });
        const m = await got.next();
        assert.equal(m.body, `hello ${version}`);
        assert.equal(m.headers.destination, dest);
      });
    }

    for (const version of ['1.0', '1.1', '1.2']) {
      it(`accept-version:${version} alone on v12.stomp gets ${version}`, T, async () => {
        const c = await open({ versions: [version] });
        assert.equal(c.connectedFrame.headers.version, version);
        if (version === '1.0' && !X.heartBeatHeaderIn10) {
          assert.equal(c.connectedFrame.headers['heart-beat'], undefined, '1.0 has no heart-beating');
        } else {
          assert.equal(c.connectedFrame.headers['heart-beat'], '0,0');
        }
      });
    }

    gatewayOnly('a version the subprotocol does not allow is refused with an ERROR', T, async () => {
      const peer = new RawPeer(target.url(), ['v10.stomp']);
      peers.push(peer);
      await peer.opened;
      peer.frame('CONNECT', { 'accept-version': '1.2', host: 'localhost' });
      const err = await peer.waitFrame('ERROR');
      assert.match(err.headers.message, /version/i);
      assert.match(err.body.toString(), /1\.0/);
      const { code } = await withTimeout(peer.closed, 3000, 'close');
      assert.equal(code, 1002);
    });

    gatewayOnly('heart-beat negotiation follows the spec (max of both sides, 0 disables)', T, async () => {
      const c = await open({ heartbeat: [20000, 15000] });
      // Gateway default [10000, 10000]: it sends every max(10000, 15000), expects every max(20000, 10000).
      assert.equal(c.connectedFrame.headers['heart-beat'], '15000,20000');
    });

    it('frames end with NUL, optionally followed by EOLs', T, async () => {
      const peer = await rawPeer();
      const raw = peer.messages[0].data.toString('latin1');
      assert.ok(raw.startsWith('CONNECTED\n'), JSON.stringify(raw));
      assert.ok(raw.endsWith('\n\n' + X.terminator), `terminator ${JSON.stringify(raw.slice(-3))}`);
    });
  });

  describe('topics', () => {
    it('fans out to three subscribers, in order', T, async () => {
      const subs = [];
      for (let i = 0; i < 3; i++) {
        const c = await open();
        subs.push(await subscribe(c, '/topic/fan.out'));
      }
      const pub = await open();
      for (let i = 0; i < 5; i++) {
        pub.publish({ destination: '/topic/fan.out', body: `m${i}`, headers: { 'content-type': 'text/plain', seq: String(i) } });
      }
      for (const s of subs) {
        const ms = await s.take(5);
        assert.deepEqual(ms.map((m) => m.body), ['m0', 'm1', 'm2', 'm3', 'm4']);
        assert.deepEqual(ms.map((m) => m.headers.seq), ['0', '1', '2', '3', '4']);
        for (const m of ms) {
          assert.equal(m.headers['content-type'], 'text/plain');
          assert.equal(m.headers.subscription, s.sub.id);
          assert.ok(m.headers['message-id'], 'MESSAGE has a message-id');
          assert.equal(m.headers['content-length'], String(Buffer.byteLength(m.body)));
        }
        await s.quiet(100);
      }
    });

    it('wildcards: * is one word, # is zero or more', T, async () => {
      const c = await open();
      const star = await subscribe(c, '/topic/wild.*.z');
      const hash = await subscribe(c, '/topic/wild.#');
      const hashMid = await subscribe(c, '/topic/wild.#.z');
      const exact = await subscribe(c, '/topic/wild.a.z');
      for (const k of ['wild.a.z', 'wild.a.b.z', 'wild', 'wild.q', 'wild.z', 'other.a.z']) {
        await publish(c, { destination: `/topic/${k}`, body: k });
      }
      await publish(c, { destination: '/topic/wild.end', body: 'end' });
      const bodies = async (s, n) => (await s.take(n)).map((m) => m.body);
      assert.deepEqual(await bodies(star, 1), ['wild.a.z']);
      assert.deepEqual(await bodies(hash, 6), ['wild.a.z', 'wild.a.b.z', 'wild', 'wild.q', 'wild.z', 'end']);
      assert.deepEqual(await bodies(hashMid, 3), ['wild.a.z', 'wild.a.b.z', 'wild.z']);
      assert.deepEqual(await bodies(exact, 1), ['wild.a.z']);
      // The MESSAGE names the concrete destination, not the pattern.
      assert.equal(star.messages[0].headers.destination, '/topic/wild.a.z');
      await Promise.all([star.quiet(150), hashMid.quiet(0), exact.quiet(0)]);
    });

    it('UNSUBSCRIBE stops deliveries', T, async () => {
      const c = await open();
      const s = await subscribe(c, '/topic/unsub');
      await publish(c, { destination: '/topic/unsub', body: 'one' });
      assert.equal((await s.next()).body, 'one');
      await withReceipt(c, (receipt) => s.sub.unsubscribe({ receipt }));
      await publish(c, { destination: '/topic/unsub', body: 'two' });
      await s.quiet(200);
    });
  });

  describe('queues', () => {
    it('competing consumers share the messages round-robin, each once', T, async () => {
      const a = await subscribe(await open(), Q('rr'));
      const b = await subscribe(await open(), Q('rr'));
      const pub = await open();
      for (let i = 0; i < 6; i++) await publish(pub, { destination: Q('rr'), body: `q${i}` });
      await sleep(200);
      const all = [...a.messages, ...b.messages].map((m) => m.body).sort();
      assert.deepEqual(all, ['q0', 'q1', 'q2', 'q3', 'q4', 'q5']);
      assert.ok(a.messages.length >= 2 && b.messages.length >= 2,
        `round-robin split, got ${a.messages.length}/${b.messages.length}`);
    });

    it('a queue keeps messages sent before anyone subscribed', T, async () => {
      const pub = await open();
      await publish(pub, { destination: Q('early'), body: 'waiting' });
      const s = await subscribe(await open(), Q('early'));
      assert.equal((await s.next()).body, 'waiting');
    });

    it('client-individual: NACK redelivers with redelivered:true, ACKed ones are gone', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('nack'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('nack'), body: 'keep' });
      await publish(pub, { destination: Q('nack'), body: 'retry' });
      const [m1, m2] = await s1.take(2);
      assert.equal(m1.body, 'keep');
      assert.ok(m1.headers.ack, 'client-individual MESSAGE carries an ack header (1.2)');
      assert.notEqual(m1.headers.redelivered, 'true');
      await withReceipt(c1, (receipt) => m1.ack({ receipt }));
      // A second consumer joins; the NACKed message goes to one of them, marked redelivered.
      const c2 = await open();
      const s2 = await subscribe(c2, Q('nack'), { ack: 'client-individual' });
      await withReceipt(c1, (receipt) => m2.nack({ receipt }));
      const pick = await withTimeout(Promise.race([s1.next(), s2.next()]), 3000, 'redelivery');
      assert.equal(pick.body, 'retry');
      assert.equal(pick.headers.redelivered, 'true');
      pick.ack();
      await Promise.all([s1.quiet(200), s2.quiet(0)]);
    });

    it('unacked messages go to another consumer when their consumer disconnects', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('leave'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('leave'), body: 'acked' });
      await publish(pub, { destination: Q('leave'), body: 'orphan' });
      const [m1, m2] = await s1.take(2);
      assert.equal(m2.body, 'orphan');
      await withReceipt(c1, (receipt) => m1.ack({ receipt }));
      const c2 = await open();
      const s2 = await subscribe(c2, Q('leave'), { ack: 'client-individual' });
      await s2.quiet(150); // nothing for it while c1 holds the message
      await c1.deactivate();
      const m = await s2.next();
      assert.equal(m.body, 'orphan');
      assert.equal(m.headers.redelivered, 'true');
      await s2.quiet(200); // the acked one is not redelivered
    });

    it(`UNSUBSCRIBE with unacked messages hands them to another consumer${X.unsubscribeRequeues ? '' : ' (at disconnect)'}`, T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('unsub'), { ack: 'client' });
      const pub = await open();
      await publish(pub, { destination: Q('unsub'), body: 'held' });
      await s1.next();
      const s2 = await subscribe(await open(), Q('unsub'), { ack: 'auto' });
      await withReceipt(c1, (receipt) => s1.sub.unsubscribe({ receipt }));
      if (!X.unsubscribeRequeues) {
        // RabbitMQ keeps a cancelled subscription's unacked messages with the session.
        await s2.quiet(300);
        await c1.deactivate();
      }
      const m = await s2.next();
      assert.equal(m.body, 'held');
      assert.equal(m.headers.redelivered, 'true');
    });

    for (const [version, mode] of [['1.1', 'client-individual'], ['1.0', 'client']]) {
      it(`STOMP ${version} acknowledges by message-id (${mode})`, T, async () => {
        const dest = Q(`ack${version.replace('.', '')}`);
        const c1 = await open({ versions: [version] });
        assert.equal(c1.connectedFrame.headers.version, version);
        const s1 = await subscribe(c1, dest, { ack: mode });
        const pub = await open();
        await publish(pub, { destination: dest, body: 'first' });
        await publish(pub, { destination: dest, body: 'second' });
        const [m1, m2] = await s1.take(2);
        assert.equal(m1.headers.ack, undefined, `no ack header before 1.2`);
        assert.ok(m1.headers['message-id']);
        await withReceipt(c1, (receipt) => m1.ack({ receipt })); // stompjs sends message-id (+ subscription in 1.1)
        if (version === '1.1') {
          await withReceipt(c1, (receipt) => m2.nack({ receipt }));
          const again = await s1.next();
          assert.equal(again.body, 'second');
          assert.equal(again.headers.redelivered, 'true');
        }
        const s2 = await subscribe(await open(), dest);
        await c1.deactivate();
        const m = await s2.next();
        assert.equal(m.body, 'second');
        assert.equal(m.headers.redelivered, 'true');
        await s2.quiet(200);
      });
    }

    it('prefetch-count bounds unacked messages per consumer', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('prefetch'), { ack: 'client-individual', 'prefetch-count': '1' });
      const pub = await open();
      for (let i = 0; i < 3; i++) await publish(pub, { destination: Q('prefetch'), body: `p${i}` });
      const first = await s1.next();
      await s1.quiet(200);
      assert.equal(s1.messages.length, 1, 'only one message outstanding with prefetch-count:1');
      first.ack();
      assert.equal((await s1.next()).body, 'p1');
    });

    it('cumulative client ack settles every earlier message', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('cumulative'), { ack: 'client' });
      const pub = await open();
      for (let i = 0; i < 3; i++) await publish(pub, { destination: Q('cumulative'), body: `c${i}` });
      const ms = await s1.take(3);
      await withReceipt(c1, (receipt) => ms[1].ack({ receipt })); // settles c0 and c1
      const s2 = await subscribe(await open(), Q('cumulative'));
      await c1.deactivate();
      const m = await s2.next();
      assert.equal(m.body, 'c2');
      await s2.quiet(200);
    });
  });

  describe('receipts and transactions', () => {
    it(`RECEIPT for SEND, SUBSCRIBE, UNSUBSCRIBE, BEGIN, COMMIT${X.disconnectReceipt ? ' and DISCONNECT' : ', none for DISCONNECT'}`, T, async () => {
      const peer = await rawPeer();
      const steps = [
        ['SUBSCRIBE', { id: 's1', destination: '/topic/rcpt' }],
        ['SEND', { destination: '/topic/rcpt' }, 'x'],
        ['BEGIN', { transaction: 't1' }],
        ['COMMIT', { transaction: 't1' }],
        ['UNSUBSCRIBE', { id: 's1' }],
        ...(X.disconnectReceipt ? [['DISCONNECT', {}]] : []),
      ];
      for (const [i, [cmd, headers, body]] of steps.entries()) {
        peer.frame(cmd, { ...headers, receipt: `rc-${i}` }, body || '');
        const ids = () => peer.frames.filter((f) => f.command === 'RECEIPT').map((f) => f.headers['receipt-id']);
        const deadline = Date.now() + 3000;
        while (!ids().includes(`rc-${i}`)) {
          assert.ok(Date.now() < deadline, `no RECEIPT for ${cmd}; got ${JSON.stringify(peer.frames.map((f) => f.command))}`);
          await sleep(10);
        }
      }
      if (!X.disconnectReceipt) {
        // RabbitMQ: DISCONNECT closes the connection and its receipt is never answered.
        peer.frame('DISCONNECT', { receipt: 'rc-bye' });
      }
      const { code } = await withTimeout(peer.closed, 3000, 'close after DISCONNECT');
      assert.ok(code === 1000 || code === 1005, `normal close after DISCONNECT, got ${code}`);
      const bye = peer.frames.filter((f) => f.command === 'RECEIPT' && f.headers['receipt-id'] === 'rc-bye');
      if (!X.disconnectReceipt) assert.equal(bye.length, 0, 'RabbitMQ sends no RECEIPT for DISCONNECT');
    });

    it('MESSAGE keeps user headers; receipt and redelivered headers as each server does', T, async () => {
      const peer = await rawPeer();
      peer.frame('SUBSCRIBE', { id: 'h', destination: '/topic/hdrs', receipt: 'sub' });
      await peer.waitFrame('RECEIPT');
      peer.frame('SEND', { destination: '/topic/hdrs', 'x-user': 'u1', receipt: 'pub-1' }, 'one');
      peer.frame('SEND', { destination: '/topic/hdrs', 'x-user': 'u2' }, 'two');
      const m1 = await peer.waitFrame('MESSAGE');
      const m2 = await peer.waitFrame('MESSAGE', 3000, peer.frames.indexOf(m1) + 1);
      assert.deepEqual([m1.headers['x-user'], m2.headers['x-user']], ['u1', 'u2']);
      assert.equal(m1.headers.subscription, 'h');
      assert.equal(m1.headers.destination, '/topic/hdrs');
      assert.ok(m1.headers['message-id'] && m2.headers['message-id'] !== m1.headers['message-id'], 'unique message-ids');
      assert.equal(m1.headers.receipt, X.forwardsSendHeaders ? 'pub-1' : undefined, 'receipt header of the SEND');
      assert.equal(m1.headers.redelivered, X.redeliveredOnFirst, 'redelivered header on a first delivery');
    });

    it('transaction: sends take effect only on COMMIT, never after ABORT', T, async () => {
      const sub = await open();
      const got = await subscribe(sub, '/topic/tx');
      const c = await open();
      const tx = c.begin();
      c.publish({ destination: '/topic/tx', body: 'tx-1', headers: { transaction: tx.id } });
      c.publish({ destination: '/topic/tx', body: 'tx-2', headers: { transaction: tx.id } });
      await publish(c, { destination: '/topic/tx', body: 'outside' });
      assert.deepEqual((await got.take(1)).map((m) => m.body), ['outside']);
      await got.quiet(150);
      tx.commit(); // stompjs sends COMMIT without extra headers
      await sync(c);
      assert.deepEqual((await got.take(3)).map((m) => m.body), ['outside', 'tx-1', 'tx-2']);
      assert.equal(got.messages[1].headers.transaction, X.forwardsSendHeaders ? tx.id : undefined,
        'transaction header of the SEND');

      const tx2 = c.begin();
      c.publish({ destination: '/topic/tx', body: 'aborted', headers: { transaction: tx2.id } });
      tx2.abort();
      await sync(c);
      await publish(c, { destination: '/topic/tx', body: 'after-abort' });
      assert.equal((await got.next()).body, 'after-abort');
      await got.quiet(150);
    });

    it('transaction: an ACK inside an aborted transaction does not take effect', T, async () => {
      const c1 = await open();
      const s1 = await subscribe(c1, Q('txack'), { ack: 'client-individual' });
      const pub = await open();
      await publish(pub, { destination: Q('txack'), body: 'a' });
      const m = await s1.next();
      const tx = c1.begin();
      m.ack({ transaction: tx.id });
      tx.abort();
      await sync(c1);
      const s2 = await subscribe(await open(), Q('txack'), { ack: 'auto' });
      await c1.deactivate();
      const again = await s2.next();
      assert.equal(again.body, 'a');
      assert.equal(again.headers.redelivered, 'true');

      // ... while one inside a committed transaction does.
      const c3 = await open();
      const s3 = await subscribe(c3, Q('txack2'), { ack: 'client-individual' });
      await publish(pub, { destination: Q('txack2'), body: 'b' });
      const mb = await s3.next();
      const tx3 = c3.begin();
      mb.ack({ transaction: tx3.id });
      tx3.commit();
      await sync(c3);
      const s4 = await subscribe(await open(), Q('txack2'));
      await c3.deactivate();
      await s4.quiet(250);
    });
  });

  describe('errors', () => {
    it(`an ERROR (SEND in a transaction never begun) ${X.closesAfterError ? 'then a close' : 'and the session goes on'}`, T, async () => {
      const peer = await rawPeer();
      peer.frame('SEND', { destination: '/topic/err', transaction: 'never-begun', receipt: 'bad-send' }, 'x');
      const err = await peer.waitFrame('ERROR');
      assert.ok(err.headers.message, 'ERROR has a message header');
      assert.equal(err.headers['receipt-id'], X.errorReceiptId ? 'bad-send' : undefined, 'receipt-id of the failed frame');
      if (X.closesAfterError) {
        const { code } = await withTimeout(peer.closed, 3000, 'close after ERROR');
        assert.equal(code, 1002);
      } else {
        // RabbitMQ keeps the connection after most ERRORs: it still answers.
        peer.frame('SUBSCRIBE', { id: 'after', destination: '/topic/err', receipt: 'still-here' });
        const r = await peer.waitFrame('RECEIPT');
        assert.equal(r.headers['receipt-id'], 'still-here');
      }
    });

    it(`SUBSCRIBE without the id header (1.2) is ${X.subscribeNeedsId ? 'refused' : 'accepted'}`, T, async () => {
      const peer = await rawPeer();
      peer.frame('SUBSCRIBE', { destination: '/topic/noid', receipt: 'noid' });
      const f = await withTimeout(Promise.race([peer.waitFrame('ERROR'), peer.waitFrame('RECEIPT')]), 3000, 'an answer');
      assert.equal(f.command, X.subscribeNeedsId ? 'ERROR' : 'RECEIPT', JSON.stringify(f.headers));
    });
  });

  describe('bodies and headers', () => {
    it('binary body with NUL bytes round-trips with content-length, as a binary WS message', T, async () => {
      const c = await open();
      const s = await subscribe(c, '/topic/bin');
      const peer = await rawPeer();
      peer.frame('SUBSCRIBE', { id: 'raw', destination: '/topic/bin', receipt: 'sub' });
      await peer.waitFrame('RECEIPT');

      const body = new Uint8Array([0, 1, 2, 0, 255, 0x0a, 0, 0x7f, 0xfe, 0]);
      await publish(c, { destination: '/topic/bin', binaryBody: body, headers: { 'content-type': 'application/octet-stream' } });
      const m = await s.next();
      assert.equal(m.isBinaryBody, true);
      assert.deepEqual(Buffer.from(m.binaryBody), Buffer.from(body));
      assert.equal(m.headers['content-length'], String(body.length));
      assert.equal(m.headers['content-type'], 'application/octet-stream');

      const rf = await peer.waitFrame('MESSAGE');
      assert.deepEqual(rf.body, Buffer.from(body));
      const wsMsg = peer.messages.find((x) => x.data.includes(Buffer.from('MESSAGE')));
      assert.equal(wsMsg.isBinary, true, 'a frame that is not UTF-8 goes out as a binary WebSocket message');
      const textMsg = peer.messages.find((x) => x.data.includes(Buffer.from('RECEIPT')));
      if (X.wsFrames === 'per-frame') assert.equal(textMsg.isBinary, false, 'UTF-8 frames go out as text');
      else assert.equal(textMsg.isBinary, true, 'web_stomp.ws_frame = binary: every frame is binary');
      peer.close();
    });

    it('a 1 MiB body arrives intact', T, async () => {
      const c = await open();
      const s = await subscribe(c, Q('big'));
      const chunk = 'abcdefghijklmnopqrstuvwxyz012345';
      const body = chunk.repeat((1024 * 1024) / chunk.length);
      await publish(c, { destination: Q('big'), body });
      const m = await s.next(5000);
      assert.equal(m.body.length, body.length);
      assert.equal(m.body, body);
      assert.equal(m.headers['content-length'], String(1024 * 1024));
    });

    it('STOMP 1.2 header escaping round-trips : \\n \\\\ \\r', T, async () => {
      const c = await open();
      assert.equal(c.connectedFrame.headers.version, '1.2');
      const s = await subscribe(c, '/topic/escape');
      const headers = {
        colon: 'a:b:c',
        newline: 'line1\nline2',
        backslash: 'C:\\path\\x',
        cr: 'before\rafter',
        all: 'x:\r\n\\y',
      };
      await publish(c, { destination: '/topic/escape', body: 'e', headers });
      const m = await s.next();
      for (const [k, v] of Object.entries(headers)) assert.equal(m.headers[k], v, `header ${k}`);
    });

    it('STOMP 1.2 escapes on the wire, both ways (raw frames)', T, async () => {
      // stompjs 7.5 unescapes with sequential replaces, so a value holding a backslash
      // followed by "n" does not survive its decoder: check that case on raw frames.
      const peer = await rawPeer();
      peer.frame('SUBSCRIBE', { id: 'e', destination: '/topic/escape.raw', receipt: 'sub' });
      await peer.waitFrame('RECEIPT');
      const wire = 'k\\cv\\\\n\\n\\r\\c';            // k:v\n<LF><CR>:
      peer.frame('SEND', { destination: '/topic/escape.raw', mixed: wire }, 'b');
      const msg = await peer.waitFrame('MESSAGE');
      assert.equal(msg.headers.mixed, wire, 'the server re-escapes the decoded value identically');
      const raw = peer.messages.map((x) => x.data.toString()).find((t) => t.startsWith('MESSAGE'));
      assert.ok(raw.includes('\nmixed:' + wire + '\n'), raw);
      peer.close();
    });

    gatewayOnly('temp-queue reply-to: the reply comes back on the requester session', T, async () => {
      const server = await open();
      const requests = await subscribe(server, '/queue/rpc');
      const requester = await open();
      const replies = new Collector();
      requester.onUnhandledMessage = (m) => replies.push(m);
      await publish(requester, { destination: '/queue/rpc', body: 'ping', headers: { 'reply-to': '/temp-queue/answers' } });
      const req = await requests.next();
      assert.match(req.headers['reply-to'], /^\/queue\/tmp\..+\.answers$/);
      await publish(server, { destination: req.headers['reply-to'], body: 'pong' });
      const reply = await replies.next();
      assert.equal(reply.body, 'pong');
      assert.equal(reply.headers.subscription, '/temp-queue/answers');
    });
  });
}

// The targets' blocks run concurrently (each on its own server, tests inside a block one
// after the other): RabbitMQ adds little to the wall time.
const targets = stompTargets({ services: [stompService({})] });
describe(`stompjs side by side: ${targets.map((t) => t.kind).join(', ')}`, { concurrency: true }, () => {
  // (concurrency is inherited: a block's own tests run one at a time)
  for (const target of targets) describe(`stompjs against ${target.name}`, { concurrency: 1 }, () => checks(target));
});
