# syntax=docker/dockerfile:1
#
# idgate container image (and the two helper images of the scale-out demo, docker-compose.yml).
#
#   docker build -t idgate .                        # the idgate image (the last stage)
#   docker build --target kamailio -t idgate-kamailio .
#   docker build --target sipp -t idgate-sipp .
#
# The idgate image runs as the unprivileged user `idgate` (uid 10001). It holds nothing but the
# binary (prompts, migrations and the default dialplan are compiled in) and CA certificates (for
# BankID, Freja and HTTPS backends). Mount the config at /etc/idgate/idgate.toml; keys and token
# files under /var/lib/idgate (owned by idgate). Ports: SIP 5060 (UDP/TCP, as `sip.listen` says),
# HTTP 8080, RTP as `[media]` says. A non-root process can bind 5060 in a container because
# Docker sets net.ipv4.ip_unprivileged_port_start=0 there.

######## build: the release binary ########
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The registry and target directories are BuildKit caches: a rebuild compiles only what changed.
# The binary is copied out of the cache within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin idgate \
 && cp target/release/idgate /usr/local/bin/idgate

######## kamailio: the dispatcher in front of the instances (demo) ########
FROM debian:bookworm-slim AS kamailio
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10002 --user-group --no-create-home --shell /usr/sbin/nologin sipproxy
# dispatcher.cfg writes no pid file and opens no control socket: nothing to own.
USER sipproxy
ENTRYPOINT ["kamailio"]
CMD ["-f", "/etc/kamailio/dispatcher.cfg", "-DD", "-E"]

######## sipp: the demo's agent queue and caller ########
FROM debian:bookworm-slim AS sipp
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends sip-tester \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10003 --user-group --create-home --shell /usr/sbin/nologin sipp
USER sipp
WORKDIR /home/sipp
ENTRYPOINT ["sipp"]

######## runtime: idgate (the default target) ########
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/idgate --shell /usr/sbin/nologin idgate \
 && mkdir -p /etc/idgate/dialplans /var/lib/idgate/keys \
 && chown -R idgate:idgate /var/lib/idgate \
 && chmod 0700 /var/lib/idgate/keys
COPY --from=build /usr/local/bin/idgate /usr/local/bin/idgate
USER idgate
WORKDIR /var/lib/idgate
EXPOSE 5060/udp 5060/tcp 8080/tcp
ENTRYPOINT ["idgate"]
CMD ["serve", "--config", "/etc/idgate/idgate.toml"]
