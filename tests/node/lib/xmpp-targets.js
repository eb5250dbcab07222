'use strict';
// The servers the XMPP checks run against, side by side, each on its own private Prosody:
//   - the gateway's xmpp bridge (RFC 7395 at the gateway's /ws, subprotocol "xmpp") in
//     front of a Prosody that has no WebSocket support at all (c2s with STARTTLS only);
//   - Prosody's own mod_websocket (the reference implementation of RFC 7395).
// A test uses target.url() and reads target.unavailable: set (with the reason) only when
// this gateway build has no xmpp bridge, the one case where a gateway check is skipped.

const assert = require('node:assert/strict');
const { Gateway } = require('./gateway');
const { Prosody } = require('./prosody');

/** The [[service]] table of an xmpp bridge in front of `prosody`. */
function xmppService(prosody, over = {}) {
  return {
    name: 'xmpp',
    path: '/ws',
    bridge: 'xmpp',
    allow_missing_origin: true, // Node clients send no Origin; browsers come from the gateway's own pages
    ...over,
    settings: {
      server: prosody.c2s,
      domains: [prosody.domain],
      ca_file: prosody.ca,
    },
  };
}

function gatewayTarget(opts = {}) {
  return {
    name: 'the gateway xmpp bridge',
    kind: 'gateway',
    prosody: null,
    gw: null,
    unavailable: null,
    async start() {
      this.prosody = await new Prosody({ extraUsers: opts.extraUsers }).start();
      try {
        this.gw = await new Gateway({ services: [xmppService(this.prosody)], sections: opts.sections }).start();
      } catch (e) {
        if (/unknown bridge `xmpp`/.test(e.message)) {
          this.unavailable = 'this gateway build has no xmpp bridge (bridges/xmpp not wired in yet)';
          return;
        }
        throw e;
      }
    },
    async stop() {
      if (this.gw) {
        const rc = await this.gw.stop();
        assert.equal(rc, 0, `gateway exit code ${rc}\n${this.gw.log()}`);
      }
      if (this.prosody) await this.prosody.destroy();
    },
    url() { return this.gw.url('/ws'); },
    /** A page on the same origin as the WebSocket. */
    pageUrl(p) { return this.gw.httpUrl(p); },
    log() { return (this.gw ? this.gw.log() : '') + this.prosody.log(); },
  };
}

function prosodyTarget(opts = {}) {
  return {
    name: 'Prosody mod_websocket',
    kind: 'prosody',
    prosody: null,
    unavailable: null,
    async start() {
      this.prosody = await new Prosody({ websocket: true, extraUsers: opts.extraUsers }).start();
    },
    async stop() {
      if (this.prosody) await this.prosody.destroy();
    },
    url() { return this.prosody.wsUrl; },
    log() { return this.prosody.log(); },
  };
}

/**
 * Both targets: the gateway first, then Prosody's own WebSocket. opts: extraUsers
 * ({ name: pass }), sections (more gateway config, e.g. { server: { static_dir } }).
 */
function xmppTargets(opts) {
  return [gatewayTarget(opts), prosodyTarget(opts)];
}

module.exports = { xmppTargets, gatewayTarget, prosodyTarget, xmppService };
