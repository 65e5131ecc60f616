"""A live event in real browsers: two attendees join from the join link, a host (a plain
websockets client) cues the lights ahead of time, both pages change at that instant and not
before, presence and reactions go round, and a tab closed and reopened resumes with
from_seq, applying every cue exactly once."""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from websockets.sync.client import connect


class Host:
    """The event's host over the live protocol, with its own estimate of the server clock."""

    def __init__(self, ws):
        self.ws = ws
        self.welcome = self.recv_until(lambda m: m["type"] == "welcome")
        self.offset = self.sync_clock()
        self.refs = 0

    def recv_until(self, wanted, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if wanted(message):
                return message

    def sync_clock(self, samples: int = 5) -> float:
        best = None
        for _ in range(samples):
            t0 = time.time() * 1000
            self.ws.send(json.dumps({"type": "time", "t0": t0}))
            reply = self.recv_until(lambda m, t0=t0: m["type"] == "time" and m["t0"] == t0)
            t3 = time.time() * 1000
            delay = (t3 - t0) - (reply["t2"] - reply["t1"])
            offset = ((reply["t1"] - t0) + (reply["t2"] - t3)) / 2
            if best is None or delay < best[0]:
                best = (delay, offset)
        return best[1]

    def now(self) -> float:
        return time.time() * 1000 + self.offset

    def cue(self, lead_s: float, action: str, **params) -> dict:
        """Send a cue `lead_s` seconds ahead; return its echo (with seq)."""
        self.refs += 1
        ref = f"t{self.refs}"
        self.ws.send(json.dumps({"type": "cue", "at": self.now() + lead_s * 1000,
                                 "action": action, "params": params, "ref": ref}))
        echo = self.recv_until(lambda m: m.get("ref") == ref and m["type"] in ("cue", "error"))
        assert echo["type"] == "cue", echo
        return echo



def host_socket(server, event: dict):
    """The host's socket (the sync websockets client), to use as a context manager."""
    return connect(server.base.replace("http://", "ws://") + f"/v1/events/{event['id']}/live"
                   f"?ticket={quote(event['host_token'])}", open_timeout=10)


def stage(page, key: str) -> str:
    return page.evaluate(f"() => document.getElementById('stage').dataset.{key}")


def wait_stage(page, key: str, value: str, timeout: float = 10_000) -> None:
    page.wait_for_function(
        "([key, value]) => document.getElementById('stage')?.dataset[key] === value",
        arg=[key, value], timeout=timeout)


def saved(page, event_id: str) -> dict:
    """What the page keeps about the event in localStorage (ticket, seq, applied seqs)."""
    return page.evaluate("(key) => JSON.parse(localStorage.getItem(key))", f"live:{event_id}")


def wait_connected(page) -> None:
    page.wait_for_function(
        "() => document.getElementById('live-state')?.dataset.state === 'connected'")


def open_in(context, url: str):
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.goto(url)
    return page, errors


def test_attendees_play_cues_together_react_and_resume(web_server, browser):
    event = web_server.create_event(title="Chaotianmen lights, browser test")
    join = web_server.base + event["join_url"]
    assert event["join_url"] == f"/?event={event['id']}"
    context_a, context_b = browser.new_context(), browser.new_context()
    try:
        a, errors_a = open_in(context_a, join)
        b, errors_b = open_in(context_b, join)
        for page in (a, b):
            wait_connected(page)
            assert page.url.endswith(f"/#/event/{event['id']}")
            assert page.inner_text("#event-title") == "Chaotianmen lights, browser test"
            assert stage(page, "color") == "#ffffff"  # the event's initial lights
            page.wait_for_function(  # the clock synced, its accuracy shown
                "() => /±/.test(document.getElementById('live-clock').textContent)")
        assert "mini-a" in a.get_attribute("#current-stop a", "href")

        with host_socket(web_server, event) as ws:
            check_cues_presence_reactions_resume(Host(ws), event, a, b, context_b, join)
        assert not errors_a and not errors_b, errors_a + errors_b
    finally:
        context_a.close()
        context_b.close()


def check_cues_presence_reactions_resume(host: Host, event: dict, a, b, context_b, join: str):
    for page in (a, b):  # two pages and the host
        page.wait_for_function("() => document.getElementById('presence').dataset.count === '3'")
        assert "3 here" in page.inner_text("#presence")

    # A lights cue 1.5 s ahead: nothing before its time, then both pages at once.
    cue1 = host.cue(1.5, "lights", color="#ff8800", pattern="pulse", period_ms=800)
    for page in (a, b):
        assert stage(page, "color") == "#ffffff"
    assert host.now() < cue1["at"] - 500  # so the check above was well before `at`
    for page in (a, b):
        wait_stage(page, "color", "#ff8800")
        assert stage(page, "appliedSeq") == str(cue1["seq"])
        assert stage(page, "pattern") == "pulse"
        # Applied at `at` on the server clock (within the clock sync's error), not early.
        applied_at = float(stage(page, "appliedAt"))
        assert cue1["at"] - 50 <= applied_at <= cue1["at"] + 1000, applied_at - cue1["at"]
        assert "stage--pulse" in page.get_attribute("#stage", "class")

    # A reaction on A is seen on B.
    a.click('button[data-emoji="🎆"]')
    b.wait_for_function("() => document.getElementById('reactions').textContent.includes('🎆')")

    # B's tab goes away; the host cues twice meanwhile: one that plays while B is away,
    # one that is still pending when B comes back.
    first_seqs = b.evaluate("() => window.__appliedSeqs")
    assert first_seqs == [cue1["seq"]]
    saved_ticket = saved(b, event["id"])["ticket"]
    b.close()
    a.wait_for_function("() => document.getElementById('presence').dataset.count === '2'")
    cue2 = host.cue(0.3, "lights", color="#00ff00", pattern="steady")
    cue3 = host.cue(4.0, "lights", color="#0000ff", intensity=0.5)
    while host.now() < cue2["at"] + 200:
        time.sleep(0.05)

    # B comes back in a new tab of the same browser: it resumes with from_seq.
    sockets: list[str] = []
    context_b.once("page", lambda page: page.on("websocket", lambda w: sockets.append(w.url)))
    b2, errors_b2 = open_in(context_b, join)
    wait_connected(b2)
    assert sockets and sockets[0].endswith(f"&from_seq={cue1['seq']}"), sockets
    assert host.now() < cue3["at"] - 300, "reopening took too long for this check"
    wait_stage(b2, "appliedSeq", str(cue2["seq"]))
    assert stage(b2, "color") == "#00ff00"  # cue 2 played while away: from the state
    wait_stage(b2, "appliedSeq", str(cue3["seq"]))
    assert stage(b2, "color") == "#0000ff" and stage(b2, "intensity") == "0.5"
    time.sleep(0.3)  # nothing more arrives late
    second_seqs = b2.evaluate("() => window.__appliedSeqs")
    assert first_seqs + second_seqs == [cue1["seq"], cue2["seq"], cue3["seq"]]
    assert saved(b2, event["id"])["ticket"] == saved_ticket  # the same ticket, reused
    assert saved(b2, event["id"])["seq"] == cue3["seq"]

    # A stayed throughout and applied every cue once.
    wait_stage(a, "appliedSeq", str(cue3["seq"]))
    assert a.evaluate("() => window.__appliedSeqs") == [cue1["seq"], cue2["seq"], cue3["seq"]]
    assert stage(a, "color") == "#0000ff"

    # The host ends the event: every page says so.
    host.ws.send(json.dumps({"type": "moderate", "action": "end"}))
    for page in (a, b2):
        page.wait_for_function(
            "() => document.getElementById('live-state').dataset.state === 'ended'")
        assert "The event has ended" in page.inner_text("#live-state")
    assert not errors_b2, errors_b2
