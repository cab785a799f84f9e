"""The `inspection` section: checks of forwarded answers (CNAME chains, response IPs, DNS
rebinding)."""

from __future__ import annotations

from dataclasses import dataclass

from resolver.config.nodes import MISSING, Entries, Reader
from resolver.config.values import IPNetwork, network, strict_bool, zone_name


@dataclass(frozen=True, slots=True)
class InspectionConfig:
    """Checks of forwarded answers: CNAME chains into blocked names, answers pointing into
    `response_ip` networks, and (optional) private addresses for public names (DNS rebinding),
    except in the `rebinding_allow` zones."""

    cname: bool = True
    response_ip: tuple[IPNetwork, ...] = ()
    rebinding: bool = False
    rebinding_allow: tuple[str, ...] = ()


def read_inspection(reader: Reader, top: Entries) -> InspectionConfig:
    entries = reader.section(top, "inspection", InspectionConfig)
    path = "inspection"
    defaults = InspectionConfig()
    cname = reader.value(entries, "cname", path, strict_bool, defaults.cname)
    networks = reader.items(entries, "response_ip", path, _response_network) or []
    rebinding = reader.value(entries, "rebinding", path, strict_bool, defaults.rebinding)
    allowed = reader.items(entries, "rebinding_allow", path, zone_name) or []
    if allowed and rebinding is False:
        reader.problem(
            entries["rebinding_allow"][0],
            f"{path}.rebinding_allow",
            "only used with rebinding: true (rebinding protection is off)",
        )
    return InspectionConfig(
        cname=defaults.cname if cname is MISSING else cname,
        response_ip=tuple(item.value for item in reader.unique(networks)),
        rebinding=defaults.rebinding if rebinding is MISSING else rebinding,
        rebinding_allow=tuple(item.value for item in reader.unique(allowed)),
    )


def _response_network(raw: object) -> IPNetwork:
    parsed = network(raw)
    if parsed.prefixlen == 0:
        raise ValueError(f"{str(raw).strip()!r} would block every answer with an address")
    return parsed
