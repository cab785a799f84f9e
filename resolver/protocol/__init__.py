"""DNS on the wire: header and question parsed by hand, names, EDNS options, answers built from
the query's own bytes, DDR's SVCB records; and what encrypted clients send around a query (DoH
requests, PROXY v2 and `Forwarded` claims, device ids). Everything a packet touches first, so it
trusts nothing and depends on nothing.

May import: nothing of resolver
Does I/O: none
"""
