"""Decisions: which clients may ask (access), what a client's group may not resolve and on whose
authority (engine), which policies are out of their window and what each group has in force
(windows), what an upstream's answer may not contain (inspection), how fast a client and a zone
may make us work (ratelimit) and how a flood's packets are read before any parse (shedding).
Pure: `now` is passed in.

May import: protocol, config, lists
Does I/O: none
"""
