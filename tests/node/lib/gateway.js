'use strict';
// Start, probe and stop the gateway binary under test from Node (the counterpart of
// tests/e2e/gwproc.py): a config on free loopback ports written to a temp dir, stderr
// kept in a log file (and echoed when GATEWAY_TEST_VERBOSE is set), SIGTERM at the end.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..', '..', '..');
const HOST = '127.0.0.1';

function gatewayBin() {
  const env = process.env.GATEWAY_BIN;
  if (env) return path.isAbsolute(env) ? env : path.join(ROOT, env);
  return path.join(ROOT, 'target', 'debug', 'gateway');
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

// --- TOML (just enough for gateway configs) -----------------------------------------

function tomlValue(v) {
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(v);
  if (typeof v === 'string') return JSON.stringify(v); // TOML basic strings accept JSON escapes
  if (Array.isArray(v)) return '[' + v.map(tomlValue).join(', ') + ']';
  throw new TypeError('no TOML for ' + JSON.stringify(v));
}

const isTable = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isTableArray = (v) => Array.isArray(v) && v.length > 0 && v.every(isTable);

function emitTable(name, table, out, array) {
  out.push(array ? `[[${name}]]` : `[${name}]`);
  for (const [k, v] of Object.entries(table)) {
    if (!isTable(v) && !isTableArray(v)) out.push(`${k} = ${tomlValue(v)}`);
  }
  out.push('');
  for (const [k, v] of Object.entries(table)) {
    if (isTable(v)) emitTable(`${name}.${k}`, v, out, false);
    else if (isTableArray(v)) for (const item of v) emitTable(`${name}.${k}`, item, out, true);
  }
}

function toToml(cfg) {
  const out = [];
  for (const [k, v] of Object.entries(cfg)) {
    if (isTable(v)) emitTable(k, v, out, false);
    else if (isTableArray(v)) for (const item of v) emitTable(k, item, out, true);
    else out.push(`${k} = ${tomlValue(v)}`);
  }
  return out.join('\n') + '\n';
}

// --- config ------------------------------------------------------------------------

/** A STOMP service at /ws for non-browser clients; `settings` are its [service.settings]. */
function stompService(settings = {}, over = {}) {
  return {
    name: 'stomp',
    path: '/ws',
    bridge: 'stomp',
    allow_missing_origin: true,
    ...over,
    settings,
  };
}

function baseConfig(port, adminPort) {
  return {
    server: { listen: `${HOST}:${port}` },
    admin: { listen: `${HOST}:${adminPort}` },
    limits: {
      max_connections: 19000,
      max_connections_per_ip: 19000,
      handshake_timeout: '5s',
      max_message_size: 4194304,
      max_frame_size: 4194304,
      idle_timeout: '60s',
      outgoing_queue: 256,
      drain_timeout: '3s',
    },
  };
}

function httpGet(port, urlPath, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: HOST, port, path: urlPath, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const running = new Set();
process.on('exit', () => {
  for (const g of running) {
    try { g.proc.kill('SIGKILL'); } catch (_) { /* already gone */ }
  }
});

class Gateway {
  /**
   * @param {object} opts  services: list of [[service]] tables (default: none, i.e. the
   *   built-in defaults), config: false to run without --config (env overrides only),
   *   env: extra environment, sections: other top-level config sections to merge.
   */
  constructor(opts = {}) {
    this.opts = opts;
    this.host = HOST;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gw-node-'));
    this.logPath = path.join(this.dir, 'gateway.stderr.log');
    this.proc = null;
  }

  async start(timeoutMs = 15000) {
    const fixed = Boolean(this.port || this.opts.port);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this._start(timeoutMs);
      } catch (e) {
        // A port found free can be taken before the gateway binds it: retry elsewhere,
        // unless the ports are meant to stay (a restart).
        if (fixed || attempt === 2 || !/Address already in use/.test(e.message)) throw e;
        this.port = this.adminPort = undefined;
        fs.renameSync(this.logPath, `${this.logPath}.bind-failed-${attempt}`);
      }
    }
  }

  async _start(timeoutMs) {
    // Ports are kept across restarts of the same Gateway (a client can reconnect to it).
    this.port = this.port || this.opts.port || await freePort();
    this.adminPort = this.adminPort || await freePort();
    fs.mkdirSync(this.dir, { recursive: true });
    const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || 'info', NO_COLOR: '1', ...(this.opts.env || {}) };
    const args = [];
    // GATEWAY_STATIC_DIR serves the pages from a directory (the source tree's gateway/static)
    // instead of the copy embedded at build time: page changes without a rebuild.
    const staticDir = this.opts.staticDir || process.env.GATEWAY_STATIC_DIR;
    if (this.opts.config === false) {
      env.GATEWAY__SERVER__LISTEN = `${HOST}:${this.port}`;
      env.GATEWAY__ADMIN__LISTEN = `${HOST}:${this.adminPort}`;
      if (staticDir) env.GATEWAY__SERVER__STATIC_DIR = staticDir;
    } else {
      const cfg = baseConfig(this.port, this.adminPort);
      if (staticDir) cfg.server.static_dir = staticDir;
      for (const [k, v] of Object.entries(this.opts.sections || {})) {
        cfg[k] = isTable(v) && isTable(cfg[k]) ? { ...cfg[k], ...v } : v;
      }
      if (this.opts.services) cfg.service = this.opts.services;
      this.configPath = path.join(this.dir, 'gateway.toml');
      fs.writeFileSync(this.configPath, toToml(cfg));
      args.push('--config', this.configPath);
    }
    const log = fs.openSync(this.logPath, 'a');
    this.proc = spawn(gatewayBin(), args, { cwd: this.dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    running.add(this);
    this.proc.stderr.on('data', (chunk) => {
      fs.writeSync(log, chunk);
      if (process.env.GATEWAY_TEST_VERBOSE) process.stderr.write(chunk);
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code, signal) => {
      running.delete(this);
      fs.closeSync(log);
      resolve({ code, signal });
    }));
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) {
        throw new Error(`gateway exited with ${this.proc.exitCode} during startup:\n${this.log()}`);
      }
      try {
        const r = await httpGet(this.port, '/healthz', 1000);
        if (r.status === 200) return this;
        last = r.status;
      } catch (e) {
        last = e.message;
      }
      await sleep(50);
    }
    throw new Error(`gateway not healthy after ${timeoutMs} ms (last: ${last}):\n${this.log()}`);
  }

  url(p = '/ws') {
    return `ws://${this.host}:${this.port}${p}`;
  }

  httpUrl(p = '/') {
    return `http://${this.host}:${this.port}${p}`;
  }

  log() {
    try { return fs.readFileSync(this.logPath, 'utf8'); } catch (_) { return ''; }
  }

  async metrics() {
    const r = await httpGet(this.adminPort, '/metrics');
    return r.body;
  }

  /** SIGTERM and wait; SIGKILL after `timeoutMs`. Resolves to the exit code (null if killed). */
  async stop(timeoutMs = 10000) {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return this.proc && this.proc.exitCode;
    this.proc.kill('SIGTERM');
    let timer;
    const killed = new Promise((resolve) => {
      timer = setTimeout(() => { this.proc.kill('SIGKILL'); resolve(null); }, timeoutMs);
    });
    const r = await Promise.race([this.exited.then((e) => e.code), killed]);
    clearTimeout(timer);
    await this.exited;
    // Keep the directory (config and log) of a gateway that did not exit cleanly.
    if (r === 0) fs.rmSync(this.dir, { recursive: true, force: true });
    return r;
  }
}

module.exports = { Gateway, gatewayBin, stompService, freePort, sleep, httpGet, toToml, ROOT, HOST };
