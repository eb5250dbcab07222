// Live prices dashboard: STOMP 1.2 to this gateway's /ws through gateway-client.js, which
// reconnects with backoff, falls back to HTTP when WebSocket is blocked, and resumes the
// subscription where it left off. /topic/prices.* is asked with a snapshot, so the table
// fills at once with the last price of every symbol instead of waiting for the next tick.
// `?transport=http` (or `?nows=1`) skips WebSocket, for proxies that block it.
import { StompSession } from './gateway-client.js';

const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
const params = new URLSearchParams(location.search);
const httpOnly = params.get('transport') === 'http' || params.get('nows') === '1';
const linkEl = document.getElementById('link');
const stateEl = document.getElementById('conn-state');
const stateText = stateEl.querySelector('.label');
const detailEl = document.getElementById('conn-detail');
const tbody = document.querySelector('#prices tbody');
const emptyRow = document.getElementById('empty-row');
const statMsgs = document.getElementById('stat-messages');
const statRate = document.getElementById('stat-rate');
const statSymbols = document.getElementById('stat-symbols');
const statSession = document.getElementById('stat-session');
document.getElementById('endpoint').textContent = url;

const SPARK_POINTS = 48;

const rows = new Map(); // symbol -> { tr, cells, first, high, low, history }
let received = 0;
let rateWindow = [];
let rateSince = 0; // when the current connection's first message arrived

const priceFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const changeFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: 'exceptZero' });
const pctFmt = new Intl.NumberFormat(undefined, { style: 'percent', minimumFractionDigits: 2, maximumFractionDigits: 2, signDisplay: 'exceptZero' });

function setState(state, detail) {
  stateEl.dataset.state = state;
  stateText.textContent = state;
  detailEl.textContent = detail || '';
  document.body.dataset.conn = state;
}

function timeOf(ts) {
  const d = new Date(ts);
  const pad = (n, w) => String(n).padStart(w || 2, '0');
  return pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds()) + '.' + pad(d.getMilliseconds(), 3);
}

function cell(tr, cls) {
  const td = document.createElement('td');
  td.className = cls;
  tr.appendChild(td);
  return td;
}

function rowFor(symbol) {
  let r = rows.get(symbol);
  if (r) return r;
  const tr = document.createElement('tr');
  tr.dataset.symbol = symbol;
  const sym = cell(tr, 'symbol');
  sym.textContent = symbol;
  const cells = {
    price: cell(tr, 'price num'),
    change: cell(tr, 'change num'),
    session: cell(tr, 'session num'),
    range: cell(tr, 'range num'),
    spark: cell(tr, 'spark'),
    time: cell(tr, 'time num'),
  };
  cells.spark.innerHTML = '<svg viewBox="0 0 120 28" preserveAspectRatio="none" aria-hidden="true"><polyline points=""/></svg>';
  r = { tr: tr, cells: cells, first: null, high: -Infinity, low: Infinity, history: [] };
  rows.set(symbol, r);
  // Keep rows sorted by symbol.
  const after = Array.from(tbody.querySelectorAll('tr[data-symbol]')).find((x) => x.dataset.symbol > symbol);
  tbody.insertBefore(tr, after || null);
  if (emptyRow) emptyRow.hidden = true;
  statSymbols.textContent = String(rows.size);
  return r;
}

function flash(el, up) {
  el.classList.remove('flash-up', 'flash-down');
  void el.offsetWidth; // restart the animation
  el.classList.add(up ? 'flash-up' : 'flash-down');
}

function drawSpark(r) {
  const h = r.history;
  const poly = r.cells.spark.querySelector('polyline');
  if (h.length < 2) return;
  const lo = Math.min.apply(null, h);
  const hi = Math.max.apply(null, h);
  const span = hi - lo || 1;
  const step = 120 / (SPARK_POINTS - 1);
  const offset = SPARK_POINTS - h.length;
  poly.setAttribute('points', h.map((v, i) =>
    ((offset + i) * step).toFixed(1) + ',' + (26 - ((v - lo) / span) * 24).toFixed(1)).join(' '));
  r.cells.spark.dataset.trend = h[h.length - 1] >= h[0] ? 'up' : 'down';
}

function onPrice(msg) {
  let q;
  try {
    q = JSON.parse(msg.body);
  } catch (e) {
    return;
  }
  const symbol = q.symbol || msg.headers.symbol || msg.headers.destination.replace(/^.*\./, '');
  const price = Number(q.price);
  if (!symbol || !isFinite(price)) return;
  const change = Number(q.change) || 0;
  const r = rowFor(symbol);
  if (r.first === null) r.first = price - change;
  r.high = Math.max(r.high, price);
  r.low = Math.min(r.low, price);
  r.history.push(price);
  if (r.history.length > SPARK_POINTS) r.history.shift();

  const c = r.cells;
  const prev = c.price.dataset.value ? Number(c.price.dataset.value) : null;
  c.price.dataset.value = String(price);
  c.price.textContent = priceFmt.format(price);
  if (prev !== null && prev !== price && msg.kind !== 'snapshot') flash(c.price, price > prev);
  c.change.textContent = changeFmt.format(change);
  c.change.dataset.dir = change > 0 ? 'up' : change < 0 ? 'down' : 'flat';
  const sess = (price - r.first) / r.first;
  c.session.textContent = pctFmt.format(sess);
  c.session.dataset.dir = sess > 0 ? 'up' : sess < 0 ? 'down' : 'flat';
  c.range.textContent = priceFmt.format(r.low) + ' – ' + priceFmt.format(r.high);
  c.time.textContent = timeOf(q.ts || Date.now());
  c.time.title = new Date(q.ts || Date.now()).toString();
  drawSpark(r);
  r.tr.dataset.source = msg.kind; // snapshot, resumed or live: the tests read where a row came from

  received++;
  showLink();
  if (!rateSince) rateSince = Date.now();
  rateWindow.push(Date.now());
}

function updateStats() {
  const now = Date.now();
  rateWindow = rateWindow.filter((t) => now - t < 5000);
  statMsgs.textContent = received.toLocaleString();
  const span = Math.min(5000, now - rateSince) / 1000;
  statRate.textContent = (rateSince && span >= 0.5 ? rateWindow.length / span : 0).toFixed(1) + '/s';
}
setInterval(updateStats, 1000);

// What the link is doing, for people (the line under the table's title) and for tests (data
// attributes on <body>: transport, reconnects, gaps, position).
function showLink() {
  const b = document.body.dataset;
  b.transport = stomp.transport || '';
  b.reconnects = String(stomp.reconnects);
  b.gaps = String(prices.gaps);
  b.position = prices.position || '';
  linkEl.textContent = [
    stomp.transport || '–',
    stomp.reconnects + (stomp.reconnects === 1 ? ' reconnect' : ' reconnects'),
    prices.gaps + (prices.gaps === 1 ? ' gap' : ' gaps'),
    prices.position ? 'at ' + prices.position : '',
  ].filter(Boolean).join(' · ');
}

const stomp = new StompSession({
  url,
  protocols: ['v12.stomp'],
  acceptVersion: '1.2',
  transports: httpOnly ? ['http'] : ['websocket', 'http'],
  heartBeat: [10000, 10000],
  backoff: { initial: 500, max: 15000 },
});

const prices = stomp.subscribe('/topic/prices.*', onPrice, { snapshot: true });

stomp.on('state', (state, detail) => {
  if (state === 'connected') {
    const f = detail.frame;
    setState('connected', 'STOMP ' + f.headers.version + ' · ' + (f.headers.server || 'server') + ' · ' + detail.transport);
    statSession.textContent = f.headers.session || '–';
    document.body.classList.remove('stale');
  } else if (state === 'reconnecting' || state === 'closed') {
    document.body.classList.add('stale');
    rateSince = 0;
    rateWindow = [];
    statSession.textContent = '–';
    const why = detail.code ? 'closed (' + detail.code + ')' : 'closed';
    setState('disconnected', state === 'closed' ? why : why + ' — retrying in ' + ((detail.delay || 0) / 1000).toFixed(1) + ' s');
  } else {
    setState('connecting', url);
  }
  document.body.dataset.session = state;
  showLink();
});
stomp.on('error', (err, frame) => {
  detailEl.textContent = frame ? 'ERROR: ' + (frame.headers.message || '') + ' ' + frame.body : String(err.message || err);
});
stomp.on('reset', (sub, info) => {
  // History was lost (a gateway restart): the snapshot that follows brings every price back.
  detailEl.textContent = 'resumed from a snapshot (' + (info.reason || 'history lost') + ')';
});
stomp.on('gap', showLink);

window.addEventListener('beforeunload', () => { stomp.close(); });
