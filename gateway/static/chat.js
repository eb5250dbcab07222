// Chat demo: log in over XMPP (xmpp-client.js), show the roster with presence, and chat
// one to one. Every piece of user or server text reaches the page through textContent.
// The transport is gateway-client.js's Connection: WebSocket, or the HTTP fallback when
// WebSocket is blocked (?transport=http forces it); when the link drops while online, the
// page stays on the chat, reconnects with backoff and logs in again.
import { Connection } from './gateway-client.js';

(function () {
  'use strict';

  const $ = (id) => document.getElementById(id);
  const stateEl = $('conn-state');
  const loginForm = $('login');
  const loginError = $('login-error');
  const chatEl = $('chat');
  const rosterEl = $('roster');
  const messagesEl = $('messages');
  const input = $('message');
  const sendButton = $('send');

  const params = new URLSearchParams(location.search);
  const defaultUrl = params.get('url') || (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws';
  $('url').value = defaultUrl;
  $('jid').value = params.get('jid') || localStorage.getItem('chat.jid') || '';
  $('endpoint').textContent = defaultUrl;

  let client = null;
  let conn = null;
  let login = null; // { url, jid, password } of the session to restore after a reconnect
  const httpOnly = params.get('transport') === 'http' || params.get('nows') === '1';
  let contacts = new Map(); // bare JID -> { jid, name, subscription, resources: Map(full -> show), unread }
  let conversations = new Map(); // bare JID -> [{ dir, body, time }]
  let selected = null;
  let wasOnline = false;

  const LABELS = {
    connecting: 'connecting', authenticating: 'authenticating', online: 'online', error: 'error', closed: 'closed',
    reconnecting: 'reconnecting',
  };

  function setState(state, detail) {
    stateEl.dataset.state = state;
    const text = LABELS[state] || state;
    stateEl.querySelector('.label').textContent = (state === 'error' || state === 'closed') && detail ? text + ': ' + detail : text;
    stateEl.title = detail || '';
  }

  function contact(bare) {
    let c = contacts.get(bare);
    if (!c) {
      c = { jid: bare, name: '', subscription: 'none', resources: new Map(), unread: 0, listed: false };
      contacts.set(bare, c);
    }
    return c;
  }

  // The best of a contact's resources: online beats away beats busy; none is offline.
  function presenceOf(c) {
    const shows = Array.from(c.resources.values());
    if (!shows.length) return { presence: 'offline', status: 'offline' };
    if (shows.some((s) => s === '' || s === 'chat')) return { presence: 'online', status: 'online' };
    if (shows.some((s) => s === 'away' || s === 'xa')) return { presence: 'away', status: 'away' };
    return { presence: 'busy', status: 'do not disturb' };
  }

  function node(tag, className, text) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function renderRoster() {
    rosterEl.replaceChildren();
    const list = Array.from(contacts.values()).filter((c) => c.listed || conversations.has(c.jid));
    list.sort((a, b) => (a.name || a.jid).localeCompare(b.name || b.jid));
    if (!list.length) rosterEl.appendChild(node('li', 'empty', 'No contacts yet'));
    for (const c of list) {
      const p = presenceOf(c);
      const li = node('li');
      li.dataset.jid = c.jid;
      li.dataset.presence = p.presence;
      li.setAttribute('role', 'option');
      li.setAttribute('aria-selected', String(c.jid === selected));
      li.appendChild(node('span', 'dot'));
      const who = node('span', 'who');
      who.appendChild(node('div', 'name', c.name || c.jid));
      who.appendChild(node('div', 'status', c.name ? c.jid + ' · ' + p.status : p.status));
      li.appendChild(who);
      if (c.unread) li.appendChild(node('span', 'unread', String(c.unread)));
      li.addEventListener('click', () => select(c.jid));
      rosterEl.appendChild(li);
    }
    renderHead();
  }

  function renderHead() {
    const c = selected && contacts.get(selected);
    $('peer-name').textContent = c ? (c.name || c.jid) : 'No conversation';
    $('peer-status').textContent = c ? presenceOf(c).status : '';
    $('conv-head').dataset.presence = c ? presenceOf(c).presence : '';
  }

  function timeOf(d) {
    return d.toTimeString().slice(0, 5);
  }

  function renderMessages() {
    messagesEl.replaceChildren();
    const log = selected ? conversations.get(selected) || [] : [];
    if (!selected) messagesEl.appendChild(node('p', 'hint', 'Pick a contact to start chatting.'));
    else if (!log.length) messagesEl.appendChild(node('p', 'hint', 'No messages yet.'));
    for (const m of log) {
      const div = node('div', 'msg ' + m.dir, m.body);
      div.appendChild(node('span', 'time', timeOf(m.time)));
      messagesEl.appendChild(div);
    }
    messagesEl.scrollTop = messagesEl.scrollHeight;
  }

  function record(bare, dir, body) {
    if (!conversations.has(bare)) conversations.set(bare, []);
    conversations.get(bare).push({ dir, body, time: new Date() });
    const c = contact(bare);
    if (bare !== selected && dir === 'in') c.unread++;
    renderRoster();
    if (bare === selected) renderMessages();
  }

  function select(bare) {
    selected = bare;
    contact(bare).unread = 0;
    input.disabled = sendButton.disabled = !(client && client.state === 'online');
    renderRoster();
    renderMessages();
    input.focus();
  }

  function showLogin(error) {
    chatEl.hidden = true;
    loginForm.hidden = false;
    $('login-button').disabled = false;
    loginError.hidden = !error;
    loginError.textContent = error || '';
  }

  function showChat() {
    loginForm.hidden = true;
    chatEl.hidden = false;
    $('me-jid').textContent = client.jid.split('/')[0];
    $('me-jid').title = client.jid;
    $('me-dot').parentElement.dataset.presence = 'online';
    input.disabled = sendButton.disabled = !selected;
    renderRoster();
    renderMessages();
  }

  function onState(state, detail) {
    // The link dropped under an online session: keep the chat, the Connection is retrying.
    if (state === 'closed' && wasOnline && conn && conn.state === 'reconnecting') {
      setState('reconnecting', detail);
      input.disabled = sendButton.disabled = true;
      for (const c of contacts.values()) c.resources.clear(); // presence comes again after login
      renderRoster();
      return;
    }
    if (state === 'error' || state === 'closed') {
      if (conn) conn.close();
      conn = null;
    }
    setState(state, detail);
    if (state === 'online') {
      wasOnline = true;
      showChat();
    } else if (state === 'error' || state === 'closed') {
      input.disabled = sendButton.disabled = true;
      showLogin(state === 'error' ? detail : wasOnline && detail !== 'logged out' ? detail : '');
    }
  }

  function onRoster(items) {
    for (const c of contacts.values()) c.listed = false;
    for (const item of items) {
      const c = contact(item.jid);
      c.name = item.name;
      c.subscription = item.subscription;
      c.listed = true;
    }
    renderRoster();
  }

  function onPresence(p) {
    if (!p.bare || p.bare === client.jid.split('/')[0]) return; // our own resources
    if (p.type !== 'available' && p.type !== 'unavailable') return; // subscription handshakes
    const c = contact(p.bare);
    if (p.type === 'unavailable') c.resources.delete(p.from);
    else c.resources.set(p.from, p.show);
    renderRoster();
  }

  function onMessage(m) {
    if (m.type === 'error') {
      record(m.bare, 'error', 'Not delivered: ' + m.error);
      return;
    }
    record(m.bare, 'in', m.body);
  }

  loginForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const jid = $('jid').value.trim();
    if (!/^[^@/\s]+@[^@/\s]+$/.test(jid)) {
      showLogin('A JID looks like name@domain');
      return;
    }
    localStorage.setItem('chat.jid', jid);
    contacts = new Map();
    conversations = new Map();
    selected = null;
    wasOnline = false;
    loginError.hidden = true;
    $('login-button').disabled = true;
    if (conn) conn.close();
    login = { url: $('url').value.trim(), jid, password: $('password').value };
    // One round of attempts for the first login (a wrong URL is reported, not retried);
    // reconnects without end once the session was up.
    conn = new Connection({
      url: login.url, protocols: ['xmpp'], initialRounds: 1,
      transports: httpOnly ? ['http'] : ['websocket', 'http'],
      backoff: { initial: 500, max: 10000 },
    });
    const mine = conn;
    conn.on('open', () => { if (mine === conn && mine.reconnects > 0) start(); });
    start();
  });

  function start() {
    const link = conn;
    client = new XmppClient({
      url: login.url, jid: login.jid, password: login.password,
      WebSocket: function () { return link.asWebSocket(); },
      onState, onRoster, onPresence, onMessage,
    });
    client.connect();
  }

  $('logout').addEventListener('click', () => { if (client) client.logout(); });

  $('compose').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const body = input.value;
    if (!selected || !body.trim() || !client) return;
    if (client.sendMessage(selected, body)) {
      record(selected, 'out', body);
      input.value = '';
    }
  });

  window.addEventListener('beforeunload', () => { if (client && client.state === 'online') client.logout(); });
})();
