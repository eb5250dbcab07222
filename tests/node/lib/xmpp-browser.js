'use strict';
// Headless Chromium for the XMPP browser checks (Debian's /usr/bin/chromium driven by
// playwright-core, never a downloaded browser), with a fresh profile per run and a list
// of page problems (console errors, uncaught exceptions) a test can assert empty.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
];

/** Why the browser checks cannot run here, or false. */
function browserMissing() {
  return fs.existsSync(CHROMIUM) ? false : `${CHROMIUM} missing`;
}

class Browser {
  async start() {
    this.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1100, height: 720 },
      deviceScaleFactor: 1,
      timeout: 30000,
    });
    return this;
  }

  /** A new page; its console errors and uncaught exceptions land in `page.problems`. */
  async page() {
    const page = await this.context.newPage();
    page.problems = [];
    page.on('console', (m) => { if (m.type() === 'error') page.problems.push(`console: ${m.text()}`); });
    page.on('pageerror', (e) => page.problems.push(`page error: ${e.message}`));
    return page;
  }

  async stop() {
    if (this.context) await this.context.close().catch(() => {});
    if (this.profile) fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

/** A directory with an empty HTML page, for a gateway's server.static_dir. */
function blankSite() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xmpp-site-'));
  fs.writeFileSync(path.join(dir, 'index.html'),
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>XMPP test page</title>' +
    '<link rel="icon" href="data:,"></head><body><h1>XMPP test page</h1></body></html>\n');
  return dir;
}

module.exports = { Browser, browserMissing, blankSite, CHROMIUM };
