"""Forwarding: the pool of upstream resolvers (strategies, health, merging), the UDP exchanges
that give every query a fresh random port and ID (RFC 5452), and the TCP and TLS streams.

May import: protocol, config, policy, observe, cache
Does I/O: pool (asyncio streams, TLS), datagrams (UDP sockets), streams (asyncio streams, TLS)
"""
