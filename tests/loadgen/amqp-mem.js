'use strict';
// Gateway RSS per AMQP-over-WebSocket client at three depths: connected only (`conn`), with
// a channel (`channel`), with a channel, a server-named exclusive queue and a consumer
// (`consume`). Usage: node tests/loadgen/amqp-mem.js WS_URL N MODE GATEWAY_PID
// (logs in as guest/guest; tests/node's npm ci provides amqplib and ws).
const L = require('../node/lib/amqp.js');
const fs = require('fs');
const [,, url, n, mode, pid] = process.argv;
const rss = () => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);
(async () => {
  const before = rss();
  const conns = [];
  for (let i = 0; i < Number(n); i++) {
    const c = await L.amqplibOverWebSocket(url, { username: 'guest', password: 'guest' });
    if (mode !== 'conn') {
      const ch = await c.createChannel();
      if (mode === 'consume') { const q = await ch.assertQueue('', { exclusive: true }); await ch.consume(q.queue, () => {}); }
    }
    conns.push(c);
  }
  await new Promise(r => setTimeout(r, 3000));
  const after = rss();
  console.log(mode, n, 'KiB/client', ((after - before) / Number(n)).toFixed(1));
  process.exit(0);
})().catch(e => { console.log('ERR', e.message); process.exit(1); });
