"""Decisions: which clients may ask (access), what a client's group may not resolve and on whose
authority (engine), and what an upstream's answer may not contain (inspection). Pure: `now` is
passed in.

May import: protocol, config, lists
Does I/O: none
"""
