"""Device ids in groups: a listed device is in its group whatever its address; an unlisted id,
or none, falls back to the address."""

from __future__ import annotations

import pytest
from test_engine import engine_for

from resolver.policy.engine import Action
from resolver.protocol.names import from_text

CONFIG = """
groups:
  officials:
    subnets: [10.20.0.0/16]
    block: [tiktok]
  phones:
    devices: [phone-1, phone-2]
    block: [wechat]
clients: {default_group: refuse}
"""


@pytest.mark.parametrize(
    ("client", "device", "group"),
    [
        ("10.20.1.1", "", "officials"),
        ("10.20.1.1", "phone-1", "phones"),  # the device outranks the subnet
        ("192.0.2.1", "phone-2", "phones"),  # wherever the phone is
        ("10.20.1.1", "phone-9", "officials"),  # an id nobody listed: by address
        ("192.0.2.1", "phone-9", None),  # ...and then the default group (refuse)
    ],
)
def test_group_of(client: str, device: str, group: str | None) -> None:
    engine = engine_for(CONFIG)
    found = engine.group_of(client, device)
    assert (found.name if found is not None else None) == group


def test_decide_uses_the_device_group() -> None:
    engine = engine_for(CONFIG)
    wechat = from_text("wechat.com")
    assert engine.decide("10.20.1.1", wechat, 1, 0.0).action is Action.ALLOW
    decision = engine.decide("10.20.1.1", wechat, 1, 0.0, "phone-1")
    assert (decision.action, decision.group, decision.list_name) == (Action.BLOCK, "phones",
                                                                     "wechat")  # fmt: skip
    # The address's memo does not leak into a device's answer, nor the other way round.
    assert engine.decide("10.20.1.1", wechat, 1, 0.0).action is Action.ALLOW
    assert engine.decide("192.0.2.1", wechat, 1, 0.0).action is Action.REFUSE
