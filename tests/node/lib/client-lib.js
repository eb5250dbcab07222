'use strict';
// Loads gateway/static/gateway-client.mjs (an ES module) from the CommonJS tests, and the
// probes that tell whether this gateway already has the server side of the client's
// features (spec: STOMP streams with snapshot/resume, the HTTP fallback transport).

const path = require('node:path');
const { pathToFileURL } = require('node:url');
const { ROOT, HOST, httpGet } = require('./gateway');
const http = require('node:http');

const MODULE = path.join(ROOT, 'gateway', 'static', 'gateway-client.mjs');

let loaded;
function loadClient() {
  loaded = loaded || import(pathToFileURL(MODULE).href);
  return loaded;
}

function httpRequest(port, method, urlPath, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: HOST, port, method, path: urlPath, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * false if the gateway on `port` speaks the HTTP fallback at `servicePath`, else why not
 * (a skip reason). Opens a session and deletes it again.
 */
async function fallbackMissing(port, servicePath = '/ws', protocol = 'v12.stomp') {
  const r = await httpRequest(port, 'POST', `${servicePath}/sessions?protocol=${protocol}`);
  if (r.status !== 201) {
    return `HTTP fallback not in this gateway yet (POST ${servicePath}/sessions answered ${r.status}); ` +
      'un-guard once spec section 2 lands';
  }
  try {
    const info = JSON.parse(r.body);
    await httpRequest(port, 'DELETE', `${servicePath}/sessions/${info.session}`).catch(() => {});
  } catch (_) { /* a 201 is enough to say it exists */ }
  return false;
}

/** The stream the snapshot/resume checks give the STOMP service (its `stream` list). */
const PRICE_STREAM = {
  destination: '/topic/prices.', history: 10000, history_age: '5m', snapshot_keys: 10000,
  conflate_key: 'destination',
};

/** A skip reason if the gateway refused to start because its STOMP settings have no `stream` yet. */
function streamsMissing(startError) {
  if (startError && /unknown field/.test(String(startError.message))) {
    return 'STOMP streams (snapshot/resume) not in this gateway yet (settings.stream refused); ' +
      'un-guard once spec section 1 lands';
  }
  return false;
}

module.exports = { loadClient, fallbackMissing, streamsMissing, PRICE_STREAM, httpRequest, httpGet };
