"""What the SOC sees: outcome counters the hot path increments (stats), their Prometheus
exposition (metrics), and the audit trail of decisions (audit).

May import: protocol, config, lists, policy
Does I/O: audit (writes the audit trail to stdout or a rotated file)
"""
