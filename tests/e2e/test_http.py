"""Plain HTTP on the WebSocket port: health, demo/static pages, non-upgrade GETs."""

import wsraw


def raw_get(g, target: str, extra: str = "") -> wsraw.RawConn:
    c = wsraw.connect(g.host, g.port)
    c.send(f"GET {target} HTTP/1.1\r\nHost: {g.host}:{g.port}\r\n{extra}Connection: close\r\n\r\n".encode())
    wsraw.read_response_head(c)
    return c


def test_healthz_readyz(gw):
    assert gw.http_get("/healthz")[0] == 200
    assert gw.http_get("/readyz")[0] == 200
    assert gw.http_get("/healthz", admin=True)[0] == 200


def test_demo_pages_at_root(gw):
    status, body = gw.http_get("/")
    assert status == 200
    assert b"<html" in body.lower() or b"<!doctype html" in body.lower()


def test_static_dir(gateway_factory, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>e2e static</title>")
    (site / "app.js").write_text("console.log('e2e');")
    (tmp_path / "secret.txt").write_text("do not serve")
    g = gateway_factory(server={"static_dir": str(site)})
    status, body = g.http_get("/")
    assert status == 200 and b"e2e static" in body
    with raw_get(g, "/app.js") as c:
        assert c.status == 200
        assert "javascript" in c.headers.get("content-type", "")
    assert g.http_get("/missing.html")[0] == 404
    for target in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/a/../../secret.txt"):
        with raw_get(g, target) as c:
            assert c.status in (400, 403, 404), (target, c.status)
            assert b"do not serve" not in c.body, target


def test_plain_get_on_ws_path_426(gw):
    with raw_get(gw, "/echo") as c:
        assert c.status == 426


def test_upgrade_on_service_path_wins_over_static(gateway_factory):
    from gwproc import echo_service
    g = gateway_factory(services=[echo_service(name="root", path="/")])
    with g.ws("/") as c:
        c.send("root")
        assert c.recv(timeout=5) == "root"
