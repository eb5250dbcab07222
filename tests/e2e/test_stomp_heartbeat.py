"""STOMP heart-beat negotiation through the gateway: by default a client gets the intervals
it asks for, raised to `heart_beat_floor` (1000 ms unless configured), and the gateway then
really sends heart-beats (a lone EOL) at that pace."""

from __future__ import annotations

import subprocess
import time

import pytest

from gwproc import gateway_bin
from stomp_util import RawStomp, stomp_service


def _connected(gw, heart_beat: str) -> tuple[RawStomp, dict]:
    c = RawStomp(gw)
    f = c.connect(**{"heart-beat": heart_beat})
    return c, f.headers


def test_client_gets_the_heart_beats_it_asks_for(gateway_factory):
    gw = gateway_factory(services=[stomp_service()])
    c, headers = _connected(gw, "1000,1000")
    with c:
        assert headers["heart-beat"] == "1000,1000"
        # Say nothing: within ~1.5 s the gateway must send a heart-beat (an EOL on its own).
        start = time.monotonic()
        beats = []
        while time.monotonic() - start < 1.5 and not beats:
            try:
                msg = c.ws.recv(timeout=max(0.0, 1.5 - (time.monotonic() - start)))
            except TimeoutError:
                break
            data = msg.encode() if isinstance(msg, str) else msg
            assert data.strip(b"\r\n") == b"", f"expected only heart-beats, got {data!r}"
            beats.append(time.monotonic() - start)
        assert beats, "no heart-beat from the gateway within 1.5 s of silence"
        # Our own heart-beat keeps the session alive; a receipt shows it is still up.
        c.send_raw("\n")
        assert c.receipt("SEND", {"destination": "/topic/hb.nobody"}).command == "RECEIPT"


@pytest.mark.parametrize("settings, asked, granted", [
    ({}, "100,100", "1000,1000"),   # below the default floor: the floor
    ({}, "0,0", "0,0"),             # none asked, none granted
    ({"heart_beat_floor": 2000}, "1000,1000", "2000,2000"),
    ({"heart_beat_floor": 2000}, "3000,2500", "2500,3000"),
])
def test_granted_heart_beats(gateway_factory, settings, asked, granted):
    gw = gateway_factory(services=[stomp_service(**settings)])
    c, headers = _connected(gw, asked)
    with c:
        assert headers["heart-beat"] == granted


def test_heart_beat_below_the_floor_is_a_config_error(gateway_factory):
    g = gateway_factory(services=[stomp_service(heart_beat=[500, 500])], start=False)
    p = subprocess.run([str(gateway_bin()), "--check-config", str(g.config_path)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "heart_beat[0]" in out and "heart_beat_floor" in out, out
