"""What the SOC sees: outcome counters the hot path increments (stats), their Prometheus
exposition (metrics), the audit trail of decisions (audit), and its feeds to SOC pipelines:
dnstap messages and RFC 5424 syslog (dnstap, syslog: pure encoders; outputs: their writers).

May import: protocol, config, lists, policy
Does I/O: audit (writes the audit trail to stdout or a rotated file), outputs (dnstap and syslog
    writer threads: sockets, TLS, a dnstap file)
"""
