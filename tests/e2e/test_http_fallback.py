"""HTTP fallback transport: server-sent events down, POST up (P/sessions...)."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import subprocess
import threading
import time

import pytest

import stomp_util
from gwproc import echo_service

HS_SECRET = "e2e-hs256-secret-0123456789abcdef"


# --- client helpers ------------------------------------------------------------------

def request(g, method, path, body=None, headers=None, timeout=5.0):
    """(status, body bytes, lower-cased headers) of one request on a fresh connection."""
    c = http.client.HTTPConnection(g.host, g.port, timeout=timeout)
    try:
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            headers = {"Content-Type": "application/json", **(headers or {})}
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, data, {k.lower(): v for k, v in r.getheaders()}
    finally:
        c.close()


class Events:
    """One open `GET .../events` response, read event by event."""

    def __init__(self, g, path, headers=None, timeout=5.0):
        self.conn = http.client.HTTPConnection(g.host, g.port, timeout=timeout)
        self.conn.request("GET", path, headers=headers or {})
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.headers = {k.lower(): v for k, v in self.resp.getheaders()}
        self.comments = 0
        self.retry = None
        self.eof = False

    def event(self, timeout=5.0):
        """The next event as a dict (id, event, data), or None at the end of the stream."""
        self.conn.sock.settimeout(timeout)
        ev = {"id": None, "event": "message", "data": []}
        while True:
            line = self.resp.readline()
            if not line:
                self.eof = True
                return None
            line = line.rstrip(b"\n")
            if line == b"":
                if ev["data"]:
                    ev["data"] = b"\n".join(ev["data"])
                    return ev
                ev = {"id": None, "event": "message", "data": []}
                continue
            if line.startswith(b":"):
                self.comments += 1
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"id":
                ev["id"] = int(value)
            elif field == b"event":
                ev["event"] = value.decode()
            elif field == b"data":
                ev["data"].append(value)
            elif field == b"retry":
                self.retry = int(value)

    def message(self, timeout=5.0):
        """(id, str | bytes) of the next message event; ('close', {code, reason}) at the end."""
        ev = self.event(timeout)
        assert ev is not None, "the stream ended"
        return decode(ev)

    def close(self):
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()


def decode(ev):
    kind = ev["event"]
    if kind == "message":
        return ev["id"], ev["data"].decode()
    if kind == "text64":
        return ev["id"], base64.b64decode(ev["data"]).decode()
    if kind == "binary":
        return ev["id"], base64.b64decode(ev["data"])
    if kind == "close":
        return "close", json.loads(ev["data"])
    raise AssertionError(f"unexpected event {ev}")


def up(m):
    return {"binary": base64.b64encode(m).decode()} if isinstance(m, bytes) else {"text": m}


class Fb:
    """One fallback session opened with POST P/sessions."""

    def __init__(self, g, path="/echo", protocol=None, headers=None):
        self.g, self.path = g, path
        q = f"?protocol={protocol}" if protocol else ""
        status, body, _ = request(g, "POST", f"{path}/sessions{q}", headers=headers)
        assert status == 201, (status, body)
        self.info = json.loads(body)
        self.id = self.info["session"]
        self.base = f"{path}/sessions/{self.id}"
        self.seq = 1

    def post(self, messages, seq=None, ack=None, headers=None, raw=None):
        body = {"messages": [up(m) for m in messages]}
        if seq is not None:
            body["seq"] = seq
        if ack is not None:
            body["ack"] = ack
        status, data, hdrs = request(self.g, "POST", f"{self.base}/messages",
                                     body=raw if raw is not None else body, headers=headers)
        return status, (json.loads(data) if data.startswith(b"{") else data)

    def send(self, *messages, **kw):
        status, body = self.post(list(messages), seq=self.seq, **kw)
        assert status == 200, (status, body)
        self.seq += len(messages)
        return body

    def events(self, last_id=None, headers=None):
        h = dict(headers or {})
        if last_id is not None:
            h["Last-Event-ID"] = str(last_id)
        return Events(self.g, f"{self.base}/events", h)

    def delete(self, headers=None):
        return request(self.g, "DELETE", self.base, headers=headers)[0]


@pytest.fixture
def fg(gateway_factory):
    return gateway_factory(http_fallback={"grace": "3s", "keepalive": "1s"})


# --- round trips ----------------------------------------------------------------------

def test_echo_text_and_binary_round_trip(fg):
    s = Fb(fg)
    assert s.id.count(".") >= 1 and len(s.id.rsplit(".", 1)[1]) == 22
    assert s.info["events"] == f"/echo/sessions/{s.id}/events"
    assert s.info["messages"] == f"/echo/sessions/{s.id}/messages"
    assert s.info["grace_ms"] == 3000 and s.info["max_message_size"] == 4194304
    ev = s.events()
    assert ev.status == 200
    assert ev.headers["content-type"] == "text/event-stream"
    assert ev.headers["cache-control"] == "no-store"
    assert ev.headers["x-accel-buffering"] == "no"
    msgs = ["hello", "", "two\nlines\n", "nul\0inside", "cr\r\nlf", "héllo ✓ 🚀",
            b"\x00\x01\xff", b"", "x" * 70000, bytes(range(256)) * 100]
    assert s.send(*msgs) == {"ack": len(msgs)}
    got = [ev.message() for _ in msgs]
    assert got == list(enumerate(msgs, start=1))
    assert ev.retry == 500
    ev.close()
    assert s.delete() == 204


def test_keepalive_comments_and_delete_closes_1000(fg):
    s = Fb(fg)
    ev = s.events()
    time.sleep(2.5)
    assert s.delete() == 204
    assert ev.message() == ("close", {"code": 1000, "reason": ""})
    assert ev.event() is None
    assert ev.comments >= 2, "keepalive comments every second"
    assert request(fg, "GET", f"{s.base}/events")[0] == 404


def test_stomp_over_fallback(gateway_factory):
    g = gateway_factory(services=[])  # the built-in defaults: STOMP at /ws
    s = Fb(g, "/ws", protocol="v12.stomp,v11.stomp")
    assert s.info["protocol"] == "v12.stomp"
    ev = s.events()

    def frame():
        _, data = ev.message()
        assert isinstance(data, str)
        (f,) = stomp_util.parse(data.encode())
        return f

    s.send(stomp_util.encode("CONNECT", {"accept-version": "1.2", "host": "x"}).decode())
    assert frame().command == "CONNECTED"
    s.send(stomp_util.encode("SUBSCRIBE", {"id": "s1", "destination": "/topic/fb.test",
                                           "receipt": "r1"}).decode())
    r = frame()
    assert (r.command, r.headers["receipt-id"]) == ("RECEIPT", "r1")
    s.send(stomp_util.encode("SEND", {"destination": "/topic/fb.test"}, "over http").decode())
    m = frame()
    assert m.command == "MESSAGE"
    assert m.headers["destination"] == "/topic/fb.test"
    assert m.body == b"over http"
    ev.close()
    s.delete()


def test_curl_reads_the_event_stream(fg):
    s = Fb(fg)
    s.send("one", "two\nlines", b"\x00bin")
    url = f"http://{fg.host}:{fg.port}{s.base}/events"
    p = subprocess.Popen(["curl", "-sN", url], stdout=subprocess.PIPE)
    try:
        lines = []
        deadline = time.monotonic() + 5
        while lines.count(b"") < 4 and time.monotonic() < deadline:
            lines.append(p.stdout.readline().rstrip(b"\n"))
    finally:
        p.kill()
        p.wait()
    text = b"\n".join(lines)
    assert text.startswith(b"retry: 500\n\nid: 1\ndata: one\n\nid: 2\ndata: two\ndata: lines\n\n"), text
    assert b"id: 3\nevent: binary\ndata: AGJpbg==" in text


# --- resume and rollover -------------------------------------------------------------

def test_resume_after_the_stream_is_killed_loses_nothing_and_repeats_nothing(fg):
    s = Fb(fg)
    ev = s.events()
    s.send(*[f"m{i}" for i in range(1, 11)])
    seen = [ev.message() for _ in range(4)]
    ev.close()  # mid-way: events 5..10 may be in flight, unread
    s.send(*[f"m{i}" for i in range(11, 21)])
    last = seen[-1][0]
    ev2 = s.events(last_id=last)
    seen += [ev2.message() for _ in range(20 - last)]
    assert seen == [(i, f"m{i}") for i in range(1, 21)]
    s.send("after")
    assert ev2.message() == (21, "after"), "nothing repeated before new messages"
    ev2.close()
    # The query parameter works as well as the header.
    ev3 = Events(fg, f"{s.base}/events?last_event_id=20")
    assert ev3.message() == (21, "after")
    ev3.close()


def test_stream_bytes_rollover_then_reconnect(gateway_factory):
    g = gateway_factory(http_fallback={"stream_bytes": "2 KiB"})
    s = Fb(g)
    want = [f"{i:04d}" + "x" * 200 for i in range(1, 41)]
    s.send(*want)
    got, last, streams = [], None, 0
    while len(got) < len(want):
        ev = s.events(last_id=last)
        streams += 1
        while True:
            e = ev.event()
            if e is None:
                break
            i, m = decode(e)
            assert i != "close", m
            got.append(m)
            last = i
        ev.close()
        assert streams < 20
    assert got == want
    assert streams >= 3, "the stream ended after about 2 KiB each time"


def test_last_event_id_older_than_the_buffer_ends_the_session(gateway_factory):
    g = gateway_factory(http_fallback={"replay_bytes": "1 KiB"})
    s = Fb(g)
    ev = s.events()
    for i in range(1, 31):
        s.send("y" * 100)
        assert ev.message()[0] == i
    ev.close()
    ev2 = s.events(last_id=1)
    assert ev2.status == 200
    assert ev2.message() == ("close", {"code": 1008, "reason": "events lost"})
    assert ev2.event() is None
    assert g.wait_metric("gateway_http_fallback_sessions_reaped_total", lambda v: v == 1,
                         reason="events_lost") == 1
    deadline = time.monotonic() + 5
    while request(g, "GET", f"{s.base}/events", timeout=2)[0] != 404:
        assert time.monotonic() < deadline


def test_acks_trim_the_buffer(gateway_factory):
    g = gateway_factory(http_fallback={"replay_bytes": "1 KiB"})
    s = Fb(g)
    ev = s.events()
    s.send("a", "b")
    assert [ev.message() for _ in range(2)] == [(1, "a"), (2, "b")]
    st, body = s.post([], ack=2)
    assert (st, body) == (200, {"ack": 2})
    ev.close()
    ev2 = s.events(last_id=1)  # acknowledged 2: 1 is gone
    assert ev2.message() == ("close", {"code": 1008, "reason": "events lost"})


# --- up direction -----------------------------------------------------------------------

def test_duplicate_seq_is_applied_once(fg):
    s = Fb(fg)
    ev = s.events()
    assert s.post(["a"], seq=1) == (200, {"ack": 1})
    assert s.post(["a"], seq=1) == (200, {"ack": 1})  # a retry: skipped
    assert s.post(["a", "b"], seq=1) == (200, {"ack": 2})  # only b is new
    assert [ev.message() for _ in range(2)] == [(1, "a"), (2, "b")]
    s.post(["c"], seq=3)
    assert ev.message() == (3, "c"), "the duplicates were not echoed"
    ev.close()


def test_seq_gap_is_409_with_the_expected_seq(fg):
    s = Fb(fg)
    s.send("a", "b")
    st, body = s.post(["x"], seq=5)
    assert st == 409 and body["expected"] == 3, body
    assert "error" in body


def test_bad_json_400_and_oversized_413(gateway_factory):
    g = gateway_factory(http_fallback={"max_post_bytes": 4096},
                        limits={"max_message_size": 1000, "max_frame_size": 1000})
    s = Fb(g)
    assert s.info["max_post_bytes"] == 4096
    for raw in [b"{", b"[1,2]", b'{"seq": 1, "messages": [{"text": 1}]}',
                b'{"seq": 1, "messages": [{"binary": "!!"}]}', b'{"messages": [{"text": "x"}]}']:
        st, body = s.post([], raw=raw)
        assert st == 400, (raw, st, body)
    st, _ = s.post(["x" * 5000], seq=1)
    assert st == 413
    assert s.send("still fine") == {"ack": 1}
    ev = s.events()
    assert ev.message() == (1, "still fine")
    # A message over max_message_size ends the session like the WebSocket limit.
    st, body = s.post(["z" * 1001], seq=2)
    assert st == 413, body
    assert ev.message() == ("close", {"code": 1009, "reason": "message of 1001 bytes over the limit of 1000"})
    assert g.wait_metric("gateway_limit_trips_total", lambda v: (v or 0) >= 1, limit="message_size") == 1


def test_concurrent_posts_409(fg):
    s = Fb(fg)
    body = json.dumps({"seq": 1, "messages": [{"text": "slow"}]}).encode()
    slow = socket.create_connection((fg.host, fg.port), timeout=5)
    slow.sendall(f"POST {s.base}/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:5])
    time.sleep(0.3)
    st, second = s.post(["fast"], seq=1)
    assert st == 409, second
    slow.sendall(body[5:])
    head = slow.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    slow.close()
    ev = s.events()
    assert ev.message() == (1, "slow")
    ev.close()


# --- routing, origins, principals --------------------------------------------------------

def test_unknown_and_misdirected_ids(fg):
    s = Fb(fg)
    node, rand = s.id.rsplit(".", 1)
    unknown = f"{node}.{'A' * 22}"
    for method, tail in [("GET", "/events"), ("POST", "/messages"), ("DELETE", "")]:
        st, _, _ = request(fg, method, f"/echo/sessions/{unknown}{tail}", body=b"{}")
        assert st == 404, (method, st)
    st, body, hdrs = request(fg, "GET", f"/echo/sessions/other-node.{rand}/events")
    assert st == 421, body
    assert hdrs["gateway-node"] == "other-node"
    # The session exists only under the path it was opened on.
    assert request(fg, "GET", f"/nope/sessions/{s.id}/events")[0] == 404


@pytest.fixture
def og(gateway_factory):
    return gateway_factory(services=[echo_service(
        name="guarded", path="/guarded",
        allowed_origins=["https://a.example.com", "https://b.example.com"],
        allow_missing_origin=False)])


def test_another_origin_403(og):
    s = Fb(og, "/guarded", headers={"Origin": "https://a.example.com"})
    st, body = s.post(["x"], seq=1, headers={"Origin": "https://b.example.com"})
    assert st == 403, body
    ev = s.events(headers={"Origin": "https://b.example.com"})
    assert ev.status == 403
    ev.close()
    assert s.post(["x"], seq=1, headers={"Origin": "https://a.example.com"})[0] == 200
    assert s.post(["y"], seq=2)[0] == 200, "no Origin (same-origin GET, curl): the id suffices"
    st, _, _ = request(og, "POST", "/guarded/sessions", headers={"Origin": "https://evil.example"})
    assert st == 403


def test_cors_preflight_and_headers(og):
    ok = {"Origin": "https://a.example.com", "Access-Control-Request-Method": "POST",
          "Access-Control-Request-Headers": "content-type"}
    st, _, h = request(og, "OPTIONS", "/guarded/sessions", headers=ok)
    assert st == 204
    assert h["access-control-allow-origin"] == "https://a.example.com"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-methods"] == "GET, POST, DELETE"
    assert h["access-control-allow-headers"] == "Content-Type, Authorization, Last-Event-ID"
    assert "Origin" in h["vary"]
    s = Fb(og, "/guarded", headers={"Origin": "https://a.example.com"})
    st, _, h = request(og, "OPTIONS", f"{s.base}/messages", headers=ok)
    assert st == 204 and h["access-control-allow-origin"] == "https://a.example.com"
    st, _, h = request(og, "POST", f"{s.base}/messages", body={"seq": 1, "messages": [{"text": "c"}]},
                       headers={"Origin": "https://a.example.com"})
    assert st == 200
    assert h["access-control-allow-origin"] == "https://a.example.com"
    assert h["access-control-allow-credentials"] == "true"
    bad = dict(ok, Origin="https://evil.example")
    for path in ["/guarded/sessions", f"{s.base}/messages"]:
        st, _, h = request(og, "OPTIONS", path, headers=bad)
        assert st == 403
        assert not any(k.startswith("access-control-") for k in h), h
    st, _, h = request(og, "POST", "/guarded/sessions", headers={"Origin": "https://evil.example"})
    assert st == 403 and "access-control-allow-origin" not in h


def test_another_principal_403(gateway_factory):
    import jwt as pyjwt

    def token(sub):
        now = int(time.time())
        return pyjwt.encode({"sub": sub, "roles": ["viewer"], "iat": now, "exp": now + 300},
                            HS_SECRET, algorithm="HS256")

    g = gateway_factory(auth={"jwt": {"hs256_secret": HS_SECRET}},
                        services=[echo_service(name="secure", path="/secure", require_auth=True)])
    assert request(g, "POST", "/secure/sessions")[0] == 401
    carol = {"Authorization": f"Bearer {token('carol')}"}
    s = Fb(g, "/secure", headers=carol)
    assert s.post(["a"], seq=1, headers=carol)[0] == 200
    st, body = s.post(["b"], seq=2, headers={"Authorization": f"Bearer {token('dave')}"})
    assert st == 403, body
    st, _ = s.post(["b"], seq=2, headers={"Authorization": f"Bearer {token('carol')}"})
    assert st == 200, "a fresh token for the same user is fine"
    assert s.post(["c"], seq=3)[0] == 200, "no credentials: the id suffices"
    assert s.post(["d"], seq=4, headers={"Authorization": "Bearer garbage"})[0] == 401
    ev = s.events(headers={"Authorization": f"Bearer {token('dave')}"})
    assert ev.status == 403
    ev.close()
    # ... and by query token too
    st, _, _ = request(g, "GET", f"{s.base}/events?access_token={token('dave')}")
    assert st == 403


# --- endings ---------------------------------------------------------------------------

def test_a_client_that_never_reads_ends_its_session(gateway_factory):
    g = gateway_factory(http_fallback={"grace": "2s", "replay_bytes": "64 KiB"},
                        limits={"socket_send_buffer": 16384})
    s = Fb(g)
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect((g.host, g.port))
    stuck.sendall(f"GET {s.base}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    other = Fb(g)
    oev = other.events()
    blob = "z" * 60000
    results = []

    def flood():
        seq = 1
        while True:
            st, _ = s.post([blob] * 10, seq=seq)
            results.append(st)
            if st != 200:
                return
            seq += 10

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    t.join(20)
    assert not t.is_alive(), "the session did not end"
    assert results[-1] == 404, results
    assert g.wait_metric("gateway_http_fallback_sessions_reaped_total", lambda v: v == 1,
                         reason="overflow") == 1
    assert (g.metric("gateway_limit_trips_total", limit="outgoing_queue") or 0) >= 1
    stuck.close()
    assert g.alive()
    other.send("still here")
    assert oev.message() == (1, "still here")
    oev.close()


def test_abandoned_sessions_are_reaped_after_grace(gateway_factory):
    grace = 5.0
    g = gateway_factory(http_fallback={"grace": f"{grace:.0f}s"})

    def abandon_2000():
        """Opens 2000 sessions and leaves them; returns their ids and the RSS with all of
        them open (None when opening took so long on a loaded machine that the first ones
        were already reaped)."""
        c = http.client.HTTPConnection(g.host, g.port, timeout=5)
        ids = []
        started = time.monotonic()
        for _ in range(2000):
            c.request("POST", "/echo/sessions")
            r = c.getresponse()
            assert r.status == 201
            ids.append(json.loads(r.read())["session"])
        c.close()
        all_open = time.monotonic() - started < grace - 1
        assert len(set(ids)) == 2000
        full = None
        if all_open:
            assert g.metric("gateway_sessions_active", transport="http") == 2000
            full = g.rss_kb()
        assert g.wait_metric("gateway_sessions_active", lambda v: v == 0, timeout=20,
                             transport="http") == 0
        return ids, full

    rss_before = g.rss_kb()
    ids, rss_full = abandon_2000()
    assert g.metric("gateway_http_fallback_sessions_reaped_total", reason="grace") == 2000
    if rss_full is not None:
        assert rss_full - rss_before < 2000 * 12, "about a few KiB per idle session at most"
    # The allocator keeps what reaped sessions freed, spread over the worker threads' heaps,
    # and grows its reserve in steps for a few rounds before it levels off (measured: a
    # round of 2000 sessions takes about 13 MiB, and the reserve levels off below 2.5 rounds'
    # worth). A leak grows with every round instead: six rounds that leaked even half of
    # what a session holds would pass the budget of three rounds' worth.
    rounds = [rss_full]
    for n in range(2, 7):
        rounds.append(abandon_2000()[1])
        assert g.metric("gateway_http_fallback_sessions_reaped_total", reason="grace") == 2000 * n
    rss_end = g.rss_kb()
    print(f"RSS before {rss_before} KiB, peaks of six rounds of 2000 sessions {rounds} KiB, "
          f"after {rss_end} KiB")
    assert rss_end - rss_before < 3 * 2000 * 7, "reaped sessions' memory is reused, not leaked"
    assert request(g, "GET", f"/echo/sessions/{ids[0]}/events")[0] == 404
    s = Fb(g)
    ev = s.events()
    s.send("fresh")
    assert ev.message() == (1, "fresh")
    ev.close()


def test_drain_ends_sessions_with_close_1001(gateway_factory):
    g = gateway_factory(limits={"drain_timeout": "5s"})
    a, b = Fb(g), Fb(g)
    ea = a.events()
    a.send("pre")
    assert ea.message() == (1, "pre")
    t0 = time.monotonic()
    g.terminate()
    assert ea.message(timeout=6) == ("close", {"code": 1001, "reason": "server shutting down"})
    assert ea.event() is None
    rc = g.wait_exit(8)
    assert rc == 0
    assert time.monotonic() - t0 < 5, "the drain waited for the sessions, not its deadline"
    del b


def test_metrics_carry_the_transport(fg):
    s = Fb(fg)
    ev = s.events()
    s.send("m1", b"m2")
    assert [ev.message() for _ in range(2)] == [(1, "m1"), (2, b"m2")]
    with fg.ws() as c:
        c.send("ws")
        assert c.recv(timeout=5) == "ws"
        text = fg.metrics_text()
    from gwproc import metric_sum
    assert metric_sum(text, "gateway_sessions_active", service="echo", transport="http") == 1
    assert metric_sum(text, "gateway_sessions_active", service="echo", transport="websocket") == 1
    assert metric_sum(text, "gateway_handshakes_total", result="accepted", transport="http") == 1
    assert metric_sum(text, "gateway_handshakes_total", result="accepted", transport="websocket") == 1
    assert metric_sum(text, "gateway_messages_in_total", service="echo", transport="http") == 2
    assert metric_sum(text, "gateway_messages_out_total", service="echo", transport="http") == 2
    assert metric_sum(text, "gateway_http_fallback_streams_active") == 1
    ev.close()
    s.delete()
    assert fg.wait_metric("gateway_session_duration_seconds_count", lambda v: v == 1,
                          transport="http") == 1
    assert fg.wait_metric("gateway_http_fallback_streams_active", lambda v: v == 0) == 0


def test_disabled_fallback_has_no_routes(gateway_factory):
    g = gateway_factory(http_fallback={"enabled": False})
    assert request(g, "POST", "/echo/sessions")[0] in (404, 405)


def test_config_errors_name_the_key(gateway_factory):
    g = gateway_factory(http_fallback={"stream_bytes": "lots"}, start=False)
    with pytest.raises(RuntimeError) as e:
        g.start()
    assert "http_fallback.stream_bytes" in str(e.value)
    g = gateway_factory(http_fallback={"node": "bad/node"}, start=False)
    with pytest.raises(RuntimeError) as e:
        g.start()
    assert "http_fallback.node" in str(e.value)
