'use strict';
// A private Prosody for one test file: tests/scripts/prosody.sh in a temp dir on free
// loopback ports. Accounts alice/bob/carol (password <name>-pass); alice and bob have each
// other in their rosters with subscription "both".

const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { freePort, ROOT } = require('./gateway');

const SCRIPT = path.join(ROOT, 'tests', 'scripts', 'prosody.sh');

function run(args, env) {
  return new Promise((resolve) => {
    execFile('bash', [SCRIPT, ...args], { env: { ...process.env, ...env }, timeout: 60000 },
      (err, stdout, stderr) => resolve({ code: err ? (err.code ?? 1) : 0, stdout, stderr }));
  });
}

function parseEnv(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    // Values are shell-quoted (printf %q): unquote the simple forms a temp path produces.
    if (m) out[m[1]] = m[2].replace(/^'(.*)'$/, '$1').replace(/\\(.)/g, '$1');
  }
  return out;
}

class Prosody {
  /** websocket: also serve RFC 7395 itself (mod_websocket); extraUsers: { name: pass }. */
  constructor(opts = {}) {
    this.opts = opts;
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prosody-node-'));
    this.env = {};
  }

  get domain() { return 'localhost'; }
  get c2s() { return `127.0.0.1:${this.env.PROSODY_C2S_PORT}`; }
  get ca() { return this.env.PROSODY_CA; }
  get wsUrl() { return this.env.PROSODY_WS_URL; }

  async start() {
    const fixed = Boolean(this.ports);
    for (let attempt = 0; ; attempt++) {
      if (!this.ports) this.ports = { c2s: await freePort(), http: await freePort() };
      const env = {
        PROSODY_C2S_PORT: String(this.ports.c2s),
        PROSODY_HTTP_PORT: String(this.ports.http),
        PROSODY_WEBSOCKET: this.opts.websocket ? '1' : '0',
        PROSODY_EXTRA_USERS: Object.entries(this.opts.extraUsers || {}).map(([u, p]) => `${u}:${p}`).join(' '),
      };
      const r = await run(['start', this.dir], env);
      if (r.code === 0) {
        this.env = parseEnv(r.stdout);
        this.startEnv = env;
        return this;
      }
      // A free port can be taken before Prosody binds it: retry on others, unless restarting.
      if (fixed || attempt === 2 || !/already in use|Address already in use|no listener/.test(r.stderr)) {
        throw new Error(`prosody.sh start failed (${r.code}):\n${r.stderr}`);
      }
      this.ports = null;
    }
  }

  async stop() {
    const r = await run(['stop', this.dir], this.startEnv || {});
    if (r.code !== 0) throw new Error(`prosody.sh stop failed (${r.code}):\n${r.stderr}`);
  }

  /** Stops and removes the state directory. */
  async destroy() {
    await this.stop();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  log() {
    try { return fs.readFileSync(path.join(this.dir, 'prosody', 'prosody.log'), 'utf8'); } catch (_) { return ''; }
  }
}

module.exports = { Prosody };
