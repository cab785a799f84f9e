"""Blocklists: the matcher, every list format, the compiled on-disk form, the bundled app
catalogue, remote feeds and RPZ zone transfers with their last good copies, the loader that turns
the config's list references into matchers, and what each list cites for its blocks (provenance).

May import: protocol, config
Does I/O: building (reads list files, writes their compiled copies), catalogue (reads the bundled
    catalogue files), compiled (maps and writes compiled lists), fetch (HTTPS feeds, last good
    copies), feeds (fetches feeds, keeps their last good copies), loading (list files, the compile
    child process), refusals (accept markers), transfer (RPZ zone transfers from primaries, TSIG
    secret files)
"""
