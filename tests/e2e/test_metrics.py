"""Prometheus /metrics on the admin listener reflects real sessions."""

import time

from gwproc import metric_sum


def test_metrics_after_sessions(gw):
    payloads = [b"x" * 1000, b"y" * 2345, "zé" * 100]
    nbytes = sum(len(p if isinstance(p, bytes) else p.encode()) for p in payloads)
    for _ in range(3):
        with gw.ws() as c:
            for p in payloads:
                c.send(p)
                assert c.recv(timeout=5) == p
            active = gw.metric("gateway_sessions_active", service="echo")
            assert active == 1, f"gateway_sessions_active during a session: {active}"

    # Sessions gone: active back to 0 (may take a moment after the close).
    assert gw.wait_metric("gateway_sessions_active", lambda v: v == 0, service="echo") == 0

    text = gw.metrics_text()
    m = lambda name, **l: metric_sum(text, name, **l) or 0  # noqa: E731
    assert m("gateway_handshakes_total", service="echo", result="accepted") == 3
    assert m("gateway_messages_in_total", service="echo") >= 9
    assert m("gateway_messages_out_total", service="echo") >= 9
    assert m("gateway_bytes_in_total", service="echo") >= 3 * nbytes
    assert m("gateway_bytes_out_total", service="echo") >= 3 * nbytes
    assert m("gateway_session_duration_seconds_count") == 3
    assert "# TYPE gateway_session_duration_seconds histogram" in text


def test_metrics_count_refusals(gw):
    gw.refused("/nope")
    gw.refused("/echo", subprotocols=["nope"])
    time.sleep(0.1)
    text = gw.metrics_text()
    assert metric_sum(text, "gateway_handshakes_total", result="not_found") == 1
    assert metric_sum(text, "gateway_handshakes_total", result="no_subprotocol") == 1
    assert (metric_sum(text, "gateway_handshakes_total", result="accepted") or 0) == 0


def test_metrics_content_type(gw):
    import http.client
    c = http.client.HTTPConnection(gw.host, gw.admin_port, timeout=5)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    assert r.status == 200
    assert r.getheader("Content-Type", "").startswith("text/plain")
    assert "gateway_" in body
