// Echo demo: connects to /echo on the same server, reconnecting with backoff.
(function () {
  const stateEl = document.getElementById('state');
  const logEl = document.getElementById('log');
  const input = document.getElementById('text');
  let ws = null;
  let delay = 500;

  function log(line) {
    const div = document.createElement('div');
    div.textContent = line;
    logEl.appendChild(div);
    logEl.scrollTop = logEl.scrollHeight;
  }

  function setState(up, text) {
    stateEl.textContent = text;
    stateEl.className = 'state ' + (up ? 'up' : 'down');
  }

  function connect() {
    const url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/echo';
    ws = new WebSocket(url, ['echo']);
    setState(false, 'connecting');
    ws.onopen = () => { delay = 500; setState(true, 'connected'); };
    ws.onmessage = (ev) => log('< ' + ev.data);
    ws.onclose = (ev) => {
      setState(false, 'disconnected (' + ev.code + ')');
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 10000);
    };
  }

  document.getElementById('send').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(input.value);
      log('> ' + input.value);
    }
  });
  connect();
})();
