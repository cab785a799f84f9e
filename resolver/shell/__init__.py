"""The thin I/O shell: sockets that move bytes to the pipeline (listeners; encrypted, tls, dot and
doh for DNS over TLS and HTTPS), the metrics and health endpoint (httpd), the service's life
(service) and the multi-process supervisor (workers).

May import: protocol, config, lists, policy, observe, cache, upstream, state, pipeline
Does I/O: all (this is the shell)
"""
