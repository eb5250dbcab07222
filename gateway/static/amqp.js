// Work-queue demo: AMQP 0-9-1 over WebSocket with @cloudamqp/amqp-client's browser build.
// Publish jobs to a queue (with publisher confirms), consume them with manual acks, and
// ack or nack (requeue) each one; a requeued job comes back marked redelivered. Every piece
// of user or broker text reaches the page through textContent.
import { AMQPWebSocketClient } from './vendor/amqp-websocket-client.mjs';

const $ = (id) => document.getElementById(id);
const stateEl = $('conn-state');
const loginForm = $('login');
const loginError = $('login-error');
const workEl = $('work');
const jobsEl = $('jobs');
const doneEl = $('done');
const logEl = $('log');

const params = new URLSearchParams(location.search);
const defaultUrl = params.get('url') || (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/amqp';
$('url').value = defaultUrl;
$('endpoint').textContent = defaultUrl;
$('username').value = params.get('user') || localStorage.getItem('amqp.user') || '';
$('queue').value = params.get('queue') || 'jobs';
$('queue-name').textContent = $('queue').value;

let client = null;
let channel = null;
let queueName = '';
let doneCount = 0;
let published = 0;
const pending = new Map(); // delivery tag -> { msg, li }

function node(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

function setState(state, detail) {
  stateEl.dataset.state = state;
  stateEl.querySelector('.label').textContent = detail ? `${state}: ${detail}` : state;
  stateEl.title = detail || '';
}

function log(text) {
  const li = node('li', '', `${new Date().toTimeString().slice(0, 8)} ${text}`);
  logEl.prepend(li);
  while (logEl.children.length > 50) logEl.lastChild.remove();
}

function renderEmpty() {
  const empty = jobsEl.querySelector('.empty');
  if (pending.size === 0 && !empty) jobsEl.appendChild(node('li', 'empty', 'No jobs waiting'));
  if (pending.size > 0 && empty) empty.remove();
}

function onDelivery(msg) {
  const body = msg.bodyToString() || '';
  const li = node('li');
  li.dataset.tag = String(msg.deliveryTag);
  li.dataset.body = body;
  li.dataset.redelivered = String(msg.redelivered);
  li.appendChild(node('span', 'body', body));
  if (msg.redelivered) li.appendChild(node('span', 'badge redelivered', 'redelivered'));
  li.appendChild(node('span', 'tag', `#${msg.deliveryTag}`));
  const ack = node('button', 'small ack', 'Ack');
  ack.type = 'button';
  const nack = node('button', 'small nack', 'Nack (requeue)');
  nack.type = 'button';
  ack.addEventListener('click', () => settle(msg, li, true));
  nack.addEventListener('click', () => settle(msg, li, false));
  li.append(ack, nack);
  pending.set(msg.deliveryTag, { msg, li });
  jobsEl.appendChild(li);
  renderEmpty();
  log(`delivered #${msg.deliveryTag} "${body}"${msg.redelivered ? ' (redelivered)' : ''}`);
}

async function settle(msg, li, ok) {
  for (const b of li.querySelectorAll('button')) b.disabled = true;
  const body = li.dataset.body;
  try {
    if (ok) await msg.ack();
    else await msg.nack(true);
  } catch (e) {
    log(`${ok ? 'ack' : 'nack'} #${msg.deliveryTag} failed: ${e.message}`);
    return;
  }
  pending.delete(msg.deliveryTag);
  li.remove();
  renderEmpty();
  if (ok) {
    doneCount += 1;
    $('done-count').textContent = `${doneCount} acked`;
    const d = node('li');
    d.dataset.body = body;
    d.appendChild(node('span', 'body', body));
    d.appendChild(node('span', 'badge acked', 'acked'));
    doneEl.prepend(d);
    log(`acked #${msg.deliveryTag} "${body}"`);
  } else {
    log(`nacked #${msg.deliveryTag} "${body}": back to the queue`);
  }
}

function showLogin(error) {
  workEl.hidden = true;
  loginForm.hidden = false;
  $('connect').disabled = false;
  loginError.hidden = !error;
  loginError.textContent = error || '';
}

function reset() {
  pending.clear();
  jobsEl.replaceChildren(node('li', 'empty', 'No jobs delivered yet'));
  doneEl.replaceChildren();
  logEl.replaceChildren();
  doneCount = 0;
  $('done-count').textContent = '0 acked';
}

async function connect(url, username, password, queue) {
  setState('connecting');
  const c = new AMQPWebSocketClient({ url, vhost: '/', username, password });
  // The gateway (or broker) ended the connection: back to the login form with its reason.
  c.onerror = (err) => {
    if (client !== c) return;
    client = channel = null;
    setState('error', err.message);
    showLogin(err.message);
  };
  await c.connect();
  client = c;
  channel = await c.channel();
  // The page works on this one channel: if the broker closes it (a refused declare, say),
  // end the connection too and show why.
  channel.onerror = (reason) => {
    if (client !== c) return;
    client = channel = null;
    c.close().catch(() => {});
    setState('error', reason);
    showLogin(reason);
  };
  await channel.confirmSelect();
  await channel.basicQos(10);
  const q = await channel.queueDeclare(queue, { durable: true, autoDelete: false, exclusive: false });
  queueName = q.name;
  await channel.basicConsume(queueName, { noAck: false }, onDelivery);
  return q;
}

loginForm.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const username = $('username').value.trim();
  const queue = $('queue').value.trim();
  localStorage.setItem('amqp.user', username);
  loginError.hidden = true;
  $('connect').disabled = true;
  reset();
  try {
    const q = await connect($('url').value.trim(), username, $('password').value, queue);
    $('queue-name').textContent = queueName;
    $('who').textContent = `${username} · queue ${queueName} · ${q.messageCount} waiting at connect`;
    setState('online');
    loginForm.hidden = true;
    workEl.hidden = false;
    log(`connected; consuming from ${queueName}`);
    $('job').focus();
  } catch (e) {
    const c = client;
    client = channel = null;
    if (c) c.close().catch(() => {});
    setState('error', e.message);
    showLogin(e.message);
  }
});

$('publish').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('job');
  const body = input.value.trim() || `job ${published + 1}`;
  if (!channel) return;
  input.value = '';
  const status = $('publish-status');
  try {
    // Resolves once the broker has confirmed the message.
    await channel.basicPublish('', queueName, body, { deliveryMode: 2, contentType: 'text/plain' });
    published += 1;
    status.textContent = `${published} published, confirmed`;
    log(`published "${body}" (confirmed)`);
  } catch (e) {
    status.textContent = `publish failed: ${e.message}`;
    log(`publish "${body}" failed: ${e.message}`);
  }
});

$('disconnect').addEventListener('click', async () => {
  const c = client;
  client = channel = null;
  if (c) await c.close().catch(() => {});
  setState('closed');
  showLogin('');
});

window.addEventListener('beforeunload', () => { if (client) client.close().catch(() => {}); });
