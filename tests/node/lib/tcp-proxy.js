'use strict';
// A TCP relay in front of a gateway that a test can break on purpose: cut() drops every
// connection (a network outage, as the client sees it), refuse makes new connections fail,
// and blockUpgrades answers WebSocket upgrades with 403 the way a filtering proxy does, while
// plain HTTP requests pass.

const net = require('node:net');

const HOST = '127.0.0.1';

class TcpProxy {
  constructor(targetPort, opts = {}) {
    this.targetPort = targetPort;
    this.refuse = false;
    this.blockUpgrades = Boolean(opts.blockUpgrades);
    this.sockets = new Set();
    this.accepted = 0;
    this.upgradesBlocked = 0;
  }

  start(port = 0) {
    this.server = net.createServer((client) => this._relay(client));
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, HOST, () => {
        this.port = this.server.address().port;
        resolve(this);
      });
    });
  }

  url(p = '/ws') { return `ws://${HOST}:${this.port}${p}`; }
  httpUrl(p = '/') { return `http://${HOST}:${this.port}${p}`; }

  _relay(client) {
    this.accepted++;
    if (this.refuse) { client.destroy(); return; }
    this.sockets.add(client);
    client.on('close', () => this.sockets.delete(client));
    client.on('error', () => {});
    client.once('data', (first) => {
      client.pause();
      if (this.blockUpgrades && /^upgrade:\s*websocket/im.test(first.toString('latin1'))) {
        this.upgradesBlocked++;
        client.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
        return;
      }
      const up = net.connect(this.targetPort, HOST);
      this.sockets.add(up);
      up.on('close', () => { this.sockets.delete(up); client.destroy(); });
      up.on('error', () => client.destroy());
      client.on('close', () => up.destroy());
      up.write(first);
      client.pipe(up);
      up.pipe(client);
      client.resume();
    });
  }

  /** Every open connection dropped at once, both sides. */
  cut() {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  async stop() {
    this.cut();
    await new Promise((r) => this.server.close(() => r()));
  }
}

module.exports = { TcpProxy };
