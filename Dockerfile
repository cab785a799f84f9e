# dnswarden container image. How to build, run and configure it: docs/deploy.md ("Container").
#
#   docker build -t dnswarden .
#   docker run -d -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:9153:9153 dnswarden
#
# The config is /etc/dnswarden/dnswarden.yaml; mount your own over it (read-only).
# Port 53 without root: the venv's interpreter carries the file capability
# CAP_NET_BIND_SERVICE and nothing else, so the non-root user binds 53 even on the host network,
# where no port mapping exists (a 5353-plus-mapping image could not serve a gateway there). It
# needs NET_BIND_SERVICE in the bounding set and no no-new-privileges (docs/deploy.md).
# .ci/docker-smoke builds this with a local base image of the same name (no registry there).

FROM python:3.11-slim-bookworm AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

# The compiled core (docs/compiled.md) needs a C compiler and Python's headers, in this stage
# only: the final image copies the venv and gets no compiler. (The python image ships its
# headers; a base that already has both, as .ci/docker-smoke builds, installs nothing here.)
# hadolint ignore=DL3008
RUN headers="$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')/Python.h" \
    && if ! command -v gcc >/dev/null || [ ! -f "$headers" ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends gcc libc6-dev \
        && if [ ! -f "$headers" ]; then apt-get install -y --no-install-recommends python3-dev; fi \
        && rm -rf /var/lib/apt/lists/*; fi

WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY build_backend/ build_backend/
COPY resolver/ resolver/
COPY blocklists/ blocklists/

# A venv of our own, with its own copy of the interpreter (not a symlink to the system one), so
# the capability set on it below is not shared with every other Python program in the image.
# DNSWARDEN_COMPILE=1: the hot modules compiled with mypyc; the build fails rather than fall back
# (checked with -P, so that the installed package is imported, not ./resolver).
RUN python3 -m venv /opt/dnswarden \
    && cp --remove-destination "$(readlink -f /opt/dnswarden/bin/python3)" /opt/dnswarden/bin/python3 \
    && DNSWARDEN_COMPILE=1 /opt/dnswarden/bin/pip install --no-cache-dir '.[speed]' \
    && /opt/dnswarden/bin/python -c 'import uvloop' \
    && /opt/dnswarden/bin/python -P -c 'import resolver.protocol as p, sys; sys.exit(p.core_build() != "compiled")' \
    && /opt/dnswarden/bin/pip uninstall --yes pip setuptools

# In a container the metrics endpoint must listen on all of the container's addresses to be
# reachable through a published port or a Service (the built-in default is loopback, on purpose:
# on a host, metrics stay local unless configured). What the host exposes is chosen with -p.
# Everything else is the built-in default: block the bundled tiktok entry, forward the rest to
# the container's resolvers (/etc/resolv.conf), answer loopback and private-range clients.
RUN mkdir -p /etc/dnswarden \
    && printf '%s\n' \
    '# dnswarden in a container; mount your own config over this file (docs/deploy.md).' \
    'listen: ["0.0.0.0:53"]' \
    'metrics:' \
    '  listen: "0.0.0.0:9153"' \
    > /etc/dnswarden/dnswarden.yaml \
    && /opt/dnswarden/bin/dnswarden check /etc/dnswarden/dnswarden.yaml


FROM python:3.11-slim-bookworm

LABEL org.opencontainers.image.title="dnswarden" \
      org.opencontainers.image.description="DNS resolver blocking apps banned on official devices" \
      org.opencontainers.image.licenses="Apache-2.0"

# XDG_STATE_HOME=/var/lib puts state_dir (list caches) at /var/lib/dnswarden, whatever config is
# mounted.
ENV PATH=/opt/dnswarden/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    XDG_STATE_HOME=/var/lib \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=build /opt/dnswarden /opt/dnswarden
COPY --from=build /etc/dnswarden /etc/dnswarden

# The file capability is written as the security.capability xattr (the 20 bytes `setcap
# cap_net_bind_service=+ep` writes: revision 2 with the effective flag, then permitted = 0x400),
# so the image needs no libcap2-bin; 0x400 is 1 << 10, CAP_NET_BIND_SERVICE being capability 10.
# /var/lib/dnswarden is the state directory (list caches).
RUN groupadd --system --gid 10053 dnswarden \
    && useradd --system --uid 10053 --gid 10053 --home-dir /var/lib/dnswarden --no-create-home \
        --shell /usr/sbin/nologin dnswarden \
    && install -d -o dnswarden -g dnswarden -m 0750 /var/lib/dnswarden \
    && python3 -c 'import os, struct; os.setxattr("/opt/dnswarden/bin/python3", "security.capability", struct.pack("<5I", 0x02000001, 0x400, 0, 0, 0))'

USER 10053:10053
WORKDIR /var/lib/dnswarden

EXPOSE 53/udp 53/tcp 9153/tcp

# /healthz: the process is alive and its event loop responsive (urlopen raises on non-2xx).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9153/healthz', timeout=3)"]

ENTRYPOINT ["dnswarden"]
CMD ["serve", "-c", "/etc/dnswarden/dnswarden.yaml"]
