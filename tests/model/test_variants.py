import pytest

from tourserver.model.variants import choose_tier


@pytest.mark.parametrize(
    ("headers", "tier"),
    [
        ({}, "medium"),
        ({"Save-Data": "on"}, "low"),
        ({"Save-Data": "on", "ECT": "4g", "Device-Memory": "8"}, "low"),
        ({"ECT": "2g"}, "low"),
        ({"ECT": "slow-2g"}, "low"),
        ({"ECT": "3g"}, "medium"),
        ({"Device-Memory": "0.5"}, "low"),
        ({"Device-Memory": "2"}, "medium"),
        ({"ECT": "4g", "Device-Memory": "8"}, "high"),
        ({"ECT": "4g"}, "medium"),
        ({"Device-Memory": "nonsense"}, "medium"),
    ],
)
def test_client_hints_choose_the_tier(headers, tier):
    assert choose_tier(headers) == tier
