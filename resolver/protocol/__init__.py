"""DNS on the wire: header and question parsed by hand, names, EDNS options, answers built from
the query's own bytes, DDR's SVCB records; and what encrypted clients send around a query (DoH
requests, PROXY v2 and `Forwarded` claims, device ids). Everything a packet touches first, so it
trusts nothing and depends on nothing.

May import: nothing of resolver
Does I/O: none
"""


def core_build() -> str:
    """"compiled" when the hot modules run as mypyc's C extensions (an install made with
    DNSWARDEN_COMPILE=1, docs/compiled.md), else "pure": the `startup` line says which, so an
    operator can tell what a server runs. `wire` stands for them all: they are built together."""
    from importlib.machinery import EXTENSION_SUFFIXES

    from resolver.protocol import wire

    return "compiled" if (wire.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES)) else "pure"
