"""The dnsperf benchmark of dnswarden against dnsmasq, unbound and dnsdist (issue 7).

`gen`, `peers`, `probe` and `results` are pure (values in, text and values out) so the unit
tests can check the data and the arithmetic without load; `procs` and `main` are the thin shell
that starts processes and runs dnsperf.  `bench/run` is the one command (`python -m bench`,
which first checks that this Python has dnswarden's dependencies).
"""
