"""The host console (/host) in a real browser against a real `tourserver serve`: sign in,
create a ticketed event and share it, then run a live event with attendees on real sockets
(the websockets library): roster, cues fired now, a timeline, mute, kick and the end. The
console uses only the public API and the live protocol, so the attendees see exactly what a
phone would."""

from __future__ import annotations

import json
import time
import urllib.parse
from contextlib import ExitStack
from datetime import UTC, datetime

from support import REPO
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

# What Chromium logs for a fetch answered 401. The one 401 here is expected: the test signs
# in with a well-formed key the server does not know, and the create is refused with it.
UNAUTHORIZED = "Failed to load resource: the server responded with a status of 401 (Unauthorized)"
UNKNOWN_KEY = "tsk_" + "0" * 12 + "_" + "A" * 43
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"


class Attendee:
    """A phone at the event: a ticket, the socket, one clock sample and a reported sync."""

    def __init__(self, stack: ExitStack, server, event_id: str, name: str, **ticket_body):
        ticket = server.ticket(event_id, name=name, **ticket_body)
        self.id = ticket["id"]
        url = (server.base.replace("http://", "ws://") + f"/v1/events/{event_id}/live?ticket="
               + urllib.parse.quote(ticket["ticket"]))
        self.ws = stack.enter_context(connect(url, open_timeout=10))
        self.buffer: list[dict] = []
        self.welcome = self.next("welcome")
        self.send({"type": "time", "t0": time.time() * 1000})
        self.next("time")
        self.send({"type": "sync", "offset_ms": 0, "delay_ms": 3})  # shown in the roster

    def send(self, message: dict) -> None:
        self.ws.send(json.dumps(message))

    def next(self, kind: str, timeout: float = 10.0) -> dict:
        """The next message of `kind`; others are kept for later calls."""
        for i, msg in enumerate(self.buffer):
            if msg["type"] == kind:
                return self.buffer.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg["type"] == kind:
                return msg
            if msg["type"] not in ("presence", "reactions"):
                self.buffer.append(msg)

    def close_code(self, timeout: float = 10.0) -> int | None:
        """Read until the server closes the socket; its close code."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None


def sign_in(page, key: str) -> None:
    page.wait_for_selector("#api-key")
    page.fill("#api-key", key)
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#create")
    page.wait_for_selector("#ev-tour option[value=mini]", state="attached")
    page.wait_for_selector("#ev-stop option[value=mini-b]", state="attached")


def create_event(page, title: str, *, ticketed: bool = False, stop: str = "",
                 capacity: str = "") -> str:
    page.select_option("#ev-tour", "mini")
    page.fill("#ev-title", title)
    page.select_option("#ev-stop", stop)
    page.fill("#ev-capacity", capacity)
    page.check(f"input[name=visibility][value={'ticketed' if ticketed else 'public'}]")
    page.click("#create-submit")
    page.wait_for_selector("#join-qr[src^='data:image/gif;base64,']")
    return urllib.parse.unquote(page.evaluate("() => location.hash").removeprefix("#/event/"))


def text_is(page, selector: str, text: str, timeout: float = 10_000) -> None:
    page.wait_for_function("([s, t]) => document.querySelector(s)?.textContent.includes(t)",
                           arg=[selector, text], timeout=timeout)


def test_sign_in_create_a_ticketed_event_and_share_it(web_server, open_page):
    # A browser at UTC+8: the local start time must reach the server with that offset.
    page, errors = open_page(web_server.base + "/host", timezone_id="Asia/Shanghai")
    page.wait_for_selector("#api-key")
    # A mistyped key is caught before anything is sent.
    page.fill("#api-key", "not-a-key")
    page.click("#signin button[type=submit]")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert "tsk_" in page.inner_text("#signin-error")
    assert page.get_attribute("#api-key", "aria-invalid") == "true"
    # A well-formed key the server does not know: refused at sign-in with the server's words.
    page.fill("#api-key", UNKNOWN_KEY)
    page.click("#signin button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#signin-error').textContent.includes('unknown or revoked')")
    assert page.evaluate("() => sessionStorage.getItem('host.key')") is None

    sign_in(page, web_server.key)
    assert page.evaluate("() => sessionStorage.getItem('host.key')") == web_server.key
    started = datetime.now(UTC)
    event_id = create_event(page, "Riverside lights", ticketed=True, stop="mini-b",
                            capacity="50")
    join = page.input_value("#join-url")
    assert join == f"{web_server.base}/?event={event_id}"  # absolute, from join_url
    assert page.evaluate("() => document.querySelector('#join-qr').naturalWidth") > 100
    assert "QR" in page.get_attribute("#join-qr", "alt")
    invite = page.input_value("#invite-code")
    assert invite
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('host.events'))")[event_id]
    assert stored["host_token"] and stored["invite_code"] == invite

    # The event as the API has it: what the form said, and starts_at "now" (the form's
    # default, in Shanghai time) converted with +08:00.
    event = next(e for e in web_server.json("GET", "/v1/events")["events"]
                 if e["id"] == event_id)
    assert (event["title"], event["tour"], event["stop"], event["capacity"],
            event["visibility"]) == ("Riverside lights", "mini", "mini-b", 50, "ticketed")
    starts = datetime.fromisoformat(event["starts_at"].replace("Z", "+00:00"))
    assert abs((starts - started).total_seconds()) < 120
    assert web_server.ticket(event_id, name="Mei", invite=invite)["role"] == "attendee"

    # The list marks the events made in this browser; the language switches the console.
    page.click("text=← All events")
    page.wait_for_selector(f"tr[data-event='{event_id}'] .badge")
    page.select_option("#lang-select", "zh-Hans")
    text_is(page, "main h1", "主持人控制台")
    assert "在此创建" in page.inner_text(f"tr[data-event='{event_id}']")
    page.click(f"tr[data-event='{event_id}'] a")
    text_is(page, "#share-h", "邀请观众")
    assert page.input_value("#invite-code") == invite
    assert [m for m in errors.messages if m != UNAUTHORIZED] == [], errors.messages


def test_run_a_live_event_from_the_console(web_server, open_page, request):
    page, errors = open_page(web_server.base + "/host")
    sign_in(page, web_server.key)
    event_id = create_event(page, "Chaotianmen show")
    page.click("#connect")
    text_is(page, "#conn-state", "Connected")
    text_is(page, "#clock", "Clock synced (±")

    stack = ExitStack()
    request.addfinalizer(stack.close)
    mei = Attendee(stack, web_server, event_id, "Mei")
    lan = Attendee(stack, web_server, event_id, "Lan")
    # The roster (once a second) lists both, with the round trip each reported.
    page.wait_for_function("() => [...document.querySelectorAll('#roster-body tr')]"
                           ".filter((r) => r.textContent.includes('3.0 ms')).length === 2")
    roster = page.inner_text("#roster-body")
    assert "Mei" in roster and "Lan" in roster and mei.id in roster and lan.id in roster

    # Lights, now: both phones get the cue before its time.
    page.fill("#now-lights-color", "#12ab34")
    page.fill("#now-lights-intensity", "0.5")
    page.select_option("#now-lights-pattern", "pulse")
    page.click("#fire-lights")
    for phone in (mei, lan):
        cue = phone.next("cue")
        assert cue["at"] > time.time() * 1000, "the cue arrived after its time"
        assert cue["action"] == "lights"
        assert cue["params"] == {"color": "#12ab34", "intensity": 0.5, "pattern": "pulse"}
    text_is(page, "#now-lights-status", "played")
    text_is(page, "#show-state", "#12ab34")

    # A cue the server refuses: the error shows beside its control.
    page.evaluate("() => { window.realNow = Date.now; Date.now = () => realNow() - 5000; }")
    page.click("#fire-lights")  # at = 5 s ago by the server clock
    text_is(page, "#now-lights-status", "Refused: ")
    assert page.get_attribute("#now-lights-status", "class") == "cue-status error"
    page.evaluate("() => { Date.now = window.realNow; }")

    # A timeline of three cues at 0, 500 and 1000 ms: all sent at once, played in order.
    colours = ["#ff0000", "#00ff00", "#0000ff"]
    for i, offset in enumerate((0, 500, 1000)):
        page.click("#tl-add")
        row = page.locator(".tl-row").nth(i)
        row.locator(".tl-offset").fill(str(offset))
        row.locator("input[type=color]").fill(colours[i])
    page.click("#tl-run")
    for phone in (mei, lan):
        cues = [phone.next("cue") for _ in range(3)]
        assert [c["params"]["color"] for c in cues] == colours
        ats = [c["at"] for c in cues]
        assert ats == sorted(ats)
        assert all(abs((b - a) - 500) < 1 for a, b in zip(ats, ats[1:], strict=False)), ats
    text_is(page, "#tl-summary", "3 of 3 played", timeout=15_000)
    assert page.locator(".tl-status.played").count() == 3

    # Chat shows who wrote, with their id; the host moderates from the roster and the chat.
    lan.send({"type": "chat", "text": "hello from Lan"})
    text_is(page, "#chat-log", "hello from Lan")
    assert lan.id in page.inner_text("#chat-log")
    page.locator("#roster").get_by_role("button", name="Mute Mei", exact=True).click()
    muted = mei.next("moderate")
    assert (muted["action"], muted["target"]) == ("mute", mei.id)
    mei.send({"type": "chat", "text": "can I still talk?"})
    assert mei.next("error")["code"] == "muted"
    page.wait_for_selector("#roster button[aria-label='Unmute Mei'][aria-pressed=true]")
    page.locator("#chat-log").get_by_role("button", name="Kick Lan", exact=True).click()
    assert lan.close_code() == 4001

    # The end, confirmed: the phone gets `end` and 4002; the console offers replay and log.
    page.click("#end-event")
    page.wait_for_selector("#confirm-event:not([hidden])")
    assert page.evaluate("() => document.activeElement.dataset.confirm") == "no"
    page.click("#confirm-event [data-confirm=yes]")
    assert mei.next("end")["reason"] == "ended by the host"
    assert mei.close_code() == 4002
    assert web_server.json("GET", f"/v1/events/{event_id}")["status"] == "ended"
    page.wait_for_selector("#replay")
    assert page.get_attribute("#replay", "href") == f"/?event={event_id}"
    assert page.get_attribute("#replay", "target") == "_blank"
    log_url = page.get_attribute("#log-link", "href")
    status, _, body = web_server.call("GET", log_url)
    kinds = [json.loads(line)["type"] for line in body.splitlines()]
    assert status == 200 and kinds.count("cue") == 4 and kinds[-1] == "end", kinds
    with page.expect_popup() as popup:
        page.click("#replay")
    popup.value.wait_for_load_state()
    assert popup.value.url.endswith(f"/#/event/{event_id}")  # the tourist app's event view
    assert errors.messages == [], errors.messages


def test_console_screens_have_no_serious_accessibility_violations(web_server, open_page,
                                                                   request):
    # axe is injected as a script: only this context lifts the page's CSP to allow it.
    page, errors = open_page(web_server.base + "/host", bypass_csp=True)
    sign_in(page, web_server.key)
    found = {}

    def scan(name):
        for theme in ("dark", "light"):
            page.evaluate("(t) => { localStorage.setItem('theme', t); "
                          "document.documentElement.dataset.theme = t; }", theme)
            page.add_script_tag(path=str(AXE))
            result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            serious = [{"id": v["id"], "nodes": [n["target"] for n in v["nodes"]][:5]}
                       for v in result["violations"] if v["impact"] in ("serious", "critical")]
            if serious:
                found[f"{name}/{theme}"] = serious

    page.wait_for_selector("#event-list table")
    scan("dashboard")
    create_event(page, "Axe show", ticketed=True)
    page.click("#connect")
    text_is(page, "#conn-state", "Connected")
    page.click("#tl-add")
    page.select_option(".tl-action", "narration")
    stack = ExitStack()
    request.addfinalizer(stack.close)
    Attendee(stack, web_server, page.evaluate("() => location.hash.split('/')[2]"), "Ann",
             invite=page.input_value("#invite-code"))
    page.wait_for_selector("#roster-body tr")
    scan("event")
    assert not found, json.dumps(found, indent=1, ensure_ascii=False)
    assert errors.messages == [], errors.messages
