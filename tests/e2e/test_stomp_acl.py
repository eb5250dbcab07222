"""Destination ACLs of the STOMP bridge (`[[service.settings.acl]]`): which roles may SEND
and SUBSCRIBE where, for identities from Basic auth against a realm file, a JWT roles claim
or a STOMP CONNECT login; on the embedded broker and on a private RabbitMQ node.

A refused frame is an ERROR (`message:access denied`, the verb and destination in the body,
`receipt-id` when asked) followed by close 1008, and counts in
`gateway_stomp_acl_denied_total{verb}`.
"""

from __future__ import annotations

import base64
import itertools
import subprocess
import time

import bcrypt
import jwt
import pytest

from rabbit_util import private_rabbit, wait_ready
from stomp_util import RawStomp, stomp_service

HS_SECRET = "e2e-acl-hs256-secret-0123456789abcdef"
PASSWORDS = {"tina": ("tina-pw", ["trader"]), "vic": ("vic-pw", ["viewer"]),
             "feed": ("feed-pw", ["feed"])}

# RabbitMQ keeps queues between tests: each test takes its own /queue/orders.N.
_queues = itertools.count(1)

ACL = [
    {"roles": ["trader"],
     "send": ["/topic/orders.*", "/queue/orders.#", "/queue/tmp.#", "/amq/queue/stomp-gw.#"],
     "subscribe": ["/topic/prices.#", "/queue/orders.#"]},
    {"roles": ["viewer"], "subscribe": ["/topic/prices.#"]},
    {"roles": ["feed"], "send": ["/topic/prices.#"]},
    {"roles": ["anonymous"], "subscribe": ["/topic/status"]},
]


def realm_toml() -> str:
    out = []
    for name, (pw, roles) in PASSWORDS.items():
        h = bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()
        quoted = ", ".join(f'"{r}"' for r in roles)
        out.append(f'[[user]]\nname = "{name}"\npassword_hash = \'{h}\'\nroles = [{quoted}]\n')
    return "\n".join(out)


def basic(user: str) -> dict:
    pw = PASSWORDS[user][0]
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


def bearer(sub: str, roles: list[str]) -> dict:
    now = int(time.time())
    token = jwt.encode({"sub": sub, "roles": roles, "iat": now, "exp": now + 300},
                       HS_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}"}


class Client(RawStomp):
    """RawStomp with handshake headers (credentials)."""

    def __init__(self, gw, headers: dict | None = None):
        self.ws = gw.ws("/ws", subprotocols=["v12.stomp"], additional_headers=headers or {})
        self.pending = []
        self.close_code = None
        self.close_reason = None


@pytest.fixture
def orders() -> str:
    return f"/queue/orders.{time.time_ns()}.{next(_queues)}"


@pytest.fixture(scope="module")
def rabbit(tmp_path_factory):
    yield from private_rabbit(tmp_path_factory)


@pytest.fixture(params=["embedded", "rabbitmq"])
def gw(request, gateway_factory, tmp_path):
    realm = tmp_path / "users.toml"
    realm.write_text(realm_toml())
    settings = {"acl": ACL, "heart_beat": [0, 0]}
    if request.param == "rabbitmq":
        settings["backend"] = request.getfixturevalue("rabbit").url
    g = gateway_factory(services=[stomp_service(**settings)],
                        auth={"realm_file": str(realm), "jwt": {"hs256_secret": HS_SECRET}})
    # A RabbitMQ backend connects in the background; until then the service is not ready.
    wait_ready(g, 15)
    return g


def connect(gw, headers: dict | None = None, **connect_headers) -> Client:
    c = Client(gw, headers)
    c.connect(**connect_headers)
    return c


def subscribe(c: RawStomp, dest: str, sid: str = "s1") -> None:
    c.receipt("SUBSCRIBE", {"destination": dest, "id": sid}, rid=f"sub-{sid}")


def message(c: RawStomp, timeout: float = 10.0):
    f = c.recv(timeout)
    assert f.command == "MESSAGE", f"expected MESSAGE, got {f}"
    return f


def assert_denied(c: RawStomp, verb: str, dest: str, receipt: str | None = None) -> None:
    err = c.expect_error(timeout=10)
    assert err.headers.get("message") == "access denied", err
    assert verb in err.text and dest in err.text, err.text
    if receipt is not None:
        assert err.headers.get("receipt-id") == receipt, err
    assert c.close_code == 1008, c.close_code


def publish_price(gw, symbol: str, body: str) -> None:
    with connect(gw, basic("feed")) as feed:
        feed.receipt("SEND", {"destination": f"/topic/prices.{symbol}"}, body, rid="p")


def test_trader_subscribes_to_prices_and_sends_orders(gw, orders):
    with connect(gw, basic("tina")) as t:
        subscribe(t, "/topic/prices.*", "prices")
        subscribe(t, orders, "orders")
        publish_price(gw, "AAPL", "187.5")
        f = message(t)
        assert f.headers["destination"] == "/topic/prices.AAPL" and f.text == "187.5"
        t.receipt("SEND", {"destination": "/topic/orders.new"}, "o1", rid="o1")
        t.receipt("SEND", {"destination": orders}, "buy 10", rid="o2")
        f = message(t)
        assert f.headers["subscription"] == "orders" and f.text == "buy 10"


def test_viewer_may_read_prices_but_not_send(gw, orders):
    with connect(gw, basic("vic")) as v:
        subscribe(v, "/topic/prices.#")
        publish_price(gw, "MSFT", "420")
        assert message(v).text == "420"
        v.send("SEND", {"destination": orders, "receipt": "r-9"}, "buy 10")
        assert_denied(v, "SEND", orders, receipt="r-9")
    assert gw.wait_metric("gateway_stomp_acl_denied_total", lambda n: (n or 0) >= 1,
                          verb="send") >= 1


def test_subscribe_outside_the_granted_patterns_is_refused(gw):
    with connect(gw, basic("vic")) as v:
        v.send("SUBSCRIBE", {"destination": "/topic/orders.new", "id": "s1", "receipt": "s"})
        assert_denied(v, "SUBSCRIBE", "/topic/orders.new", receipt="s")
    # A wildcard wider than the grant covers destinations the client may not read.
    with connect(gw, basic("tina")) as t:
        t.send("SUBSCRIBE", {"destination": "/topic/#", "id": "s1"})
        assert_denied(t, "SUBSCRIBE", "/topic/#")
    assert gw.wait_metric("gateway_stomp_acl_denied_total", lambda n: (n or 0) >= 2,
                          verb="subscribe") >= 2


def test_jwt_roles_claim_works_like_the_realm(gw, orders):
    with connect(gw, bearer("jay", ["trader"])) as t:
        subscribe(t, orders)
        t.receipt("SEND", {"destination": orders}, "from jwt")
        assert message(t).text == "from jwt"
    with connect(gw, bearer("val", ["viewer"])) as v:
        subscribe(v, "/topic/prices.AAPL")
        v.send("SEND", {"destination": "/topic/orders.new"}, "x")
        assert_denied(v, "SEND", "/topic/orders.new")


def test_stomp_login_roles_apply(gw, orders):
    with connect(gw, login="tina", passcode="tina-pw") as t:
        t.receipt("SEND", {"destination": orders}, "via login")
    with connect(gw, login="vic", passcode="vic-pw") as v:
        v.send("SEND", {"destination": orders}, "via login")
        assert_denied(v, "SEND", orders)


def test_anonymous_clients_get_only_the_anonymous_rules(gw):
    with connect(gw) as a:
        subscribe(a, "/topic/status")
        a.send("SUBSCRIBE", {"destination": "/topic/prices.AAPL", "id": "s2"})
        err = a.expect_error(timeout=10)
        assert err.headers.get("message") == "access denied"
        assert "anonymous" in err.text, err.text


def test_temp_queue_replies_need_only_the_request_destination(gw, orders):
    with connect(gw, basic("tina")) as server, connect(gw, basic("tina")) as requester:
        subscribe(server, orders)
        # Subscribing to one's own temp queue is always allowed.
        subscribe(requester, "/temp-queue/direct", "own")
        requester.receipt("SEND", {"destination": orders,
                                   "reply-to": "/temp-queue/replies"}, "quote?")
        req = message(server)
        assert req.text == "quote?"
        server.receipt("SEND", {"destination": req.headers["reply-to"]}, "42")
        reply = message(requester)
        assert reply.headers["subscription"] == "/temp-queue/replies" and reply.text == "42"


def test_bad_pattern_is_a_config_error_naming_the_key(tmp_path, gateway_binary):
    cfg = tmp_path / "acl.toml"
    cfg.write_text(
        '[[service]]\nname = "stomp"\npath = "/ws"\nbridge = "stomp"\n'
        '[[service.settings.acl]]\nroles = ["trader"]\nsend = ["/queue/orders", "/topic/ord*"]\n')
    p = subprocess.run([str(gateway_binary), "--check-config", str(cfg)], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode != 0, p.stdout
    assert "acl[0].send[1]" in p.stderr + p.stdout, p.stderr


def test_pass_through_logins_match_only_star_rules(rabbit, gateway_factory):
    """With pass-through credentials the broker checks the login; the gateway knows no
    roles for it, so only `"*"` rules apply (and anonymous ones do not)."""
    g = gateway_factory(services=[stomp_service(
        backend=rabbit.url, credentials="pass-through", heart_beat=[0, 0],
        acl=[{"roles": ["*"], "subscribe": ["/topic/events.#"]},
             {"roles": ["anonymous"], "subscribe": ["/topic/other"]}])])
    wait_ready(g, 15)
    with connect(g, login="guest", passcode="guest") as c:
        subscribe(c, "/topic/events.eu")
        c.send("SUBSCRIBE", {"destination": "/topic/other", "id": "s2"})
        err = c.expect_error(timeout=10)
        assert err.headers.get("message") == "access denied", err
        assert '"guest" (no roles)' in err.text, err.text
