"""The `dnswarden` command line: the CLI (the only place that prints problems and picks exit
codes), `explain`, `export` and `profile` (provisioning managed devices).

May import: protocol, config, lists, policy, observe, cache, upstream, state, pipeline, shell
Does I/O: all (commands read files and print)
"""
