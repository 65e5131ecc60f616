"""The whole show in browsers: the host console fires a cue; two tourist pages play it at
its scheduled time; a phone that closes its tab and comes back resumes without missing a
cue."""

from __future__ import annotations

from test_host_console import create_event, sign_in, text_is
from test_live_event import stage, wait_stage


def test_host_page_cues_two_attendee_pages(web_server, open_page, browser):
    host, host_errors = open_page(web_server.base + "/host")
    sign_in(host, web_server.key)
    event_id = create_event(host, "Riverside lights")
    host.click("#connect")
    text_is(host, "#conn-state", "Connected")
    join = host.input_value("#join-url")
    phone_a, errors_a = open_page(join)
    context_b = browser.new_context()
    phone_b = context_b.new_page()
    phone_b.goto(join)
    try:
        for phone in (phone_a, phone_b):
            phone.wait_for_function(
                "() => document.querySelector('#live-state')?.dataset.state === 'connected'")
        text_is(host, "#present", "3 here")
        # A cue 3 s ahead: nobody plays it early, both play it on time.
        host.fill("#lead", "3000")
        host.fill("#now-lights-color", "#ff3355")
        host.click("#fire-lights")
        host.wait_for_timeout(1000)
        assert stage(phone_a, "color") != "#ff3355" and stage(phone_b, "color") != "#ff3355"
        wait_stage(phone_a, "color", "#ff3355")
        wait_stage(phone_b, "color", "#ff3355")
        first = int(stage(phone_a, "appliedSeq"))
        # Phone B closes its tab; two more cues go out; B reopens the join link in a new tab.
        phone_b.close()
        host.fill("#lead", "500")
        for colour in ("#00ff88", "#3366ff"):
            host.fill("#now-lights-color", colour)
            host.click("#fire-lights")
            host.wait_for_timeout(300)
        wait_stage(phone_a, "color", "#3366ff")
        phone_b = context_b.new_page()
        phone_b.goto(join)
        wait_stage(phone_b, "appliedSeq", str(first + 2))
        assert stage(phone_b, "color") == "#3366ff"
        applied = phone_b.evaluate(
            "() => JSON.parse(localStorage.getItem('live:' + location.hash.split('/').pop()))"
            "?.applied || []")
        assert sorted(applied) == list(range(first, first + 3))  # each cue once, none missed
        assert not host_errors.messages and not errors_a.messages
    finally:
        context_b.close()
    assert event_id
