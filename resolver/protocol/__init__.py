"""DNS on the wire: header and question parsed by hand, names, EDNS options, answers built from
the query's own bytes. Everything a packet touches first, so it trusts nothing and depends on
nothing.

May import: nothing of resolver
Does I/O: none
"""
