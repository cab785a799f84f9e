"""Forwarding: the pool of upstream resolvers (strategies, health, merging, TCP and TLS streams)
and the UDP exchanges that give every query a fresh random port and ID (RFC 5452).

May import: protocol, config, policy, observe, cache
Does I/O: pool (asyncio streams, TLS), datagrams (UDP sockets)
"""
