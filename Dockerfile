# syntax=docker/dockerfile:1
# ColdQuery's image: `coldquery-mcp` serving MCP streamable HTTP on 0.0.0.0:19002 (so a bearer
# token is required: it refuses to start without one) and the `coldquery` CLI, nothing else, on a
# distroless base (no shell, no package manager), as an unprivileged user, with nothing written
# to the root filesystem (run it with --read-only). docs/DEPLOYMENT.md explains every setting.
#
#   docker build -t coldquery .
#   docker run --rm --read-only -p 127.0.0.1:19002:19002 \
#     -e DATABASE_URL='postgres://coldquery_agent:...@db.example.com/app?sslmode=verify-full' \
#     -e COLDQUERY_AUTH_TOKEN="$(openssl rand -hex 32)" coldquery
#
# `cargo xtask deploy-check` lints this file (hadolint) and checks its ENTRYPOINT, ENV, EXPOSE
# and HEALTHCHECK against the real binary's flags; an end-to-end test runs the binary with this
# file's user, environment and health command.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
# libclang for bindgen: the pg_query crate compiles PostgreSQL's own parser from C. The Debian
# release is fixed by the base image's tag; exact Debian revisions are not pinned because a
# point release removes the old ones from the mirrors and the build would break.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The same command as the release binaries (.github/workflows/release.yml). The directory for
# the audit log is made here because the run stage has no shell to make it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p coldquery-mcp -p coldquery-cli \
    && install -D -m 0755 -t /out/bin target/release/coldquery-mcp target/release/coldquery \
    && install -d -m 0750 /out/audit

# glibc, libgcc and CA certificates are all the binaries need (TLS is rustls; no OpenSSL).
FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="ColdQuery" \
      org.opencontainers.image.description="A secure, stateful PostgreSQL server for the Model Context Protocol" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"
COPY --from=build /out/bin/ /usr/local/bin/
# A volume mounted here starts with this owner, so the unprivileged user can write the audit log.
COPY --from=build --chown=65532:65532 /out/audit/ /var/log/coldquery/
# distroless's "nonroot" user, by number so that runAsNonRoot policies can verify it.
USER 65532:65532
ENV COLDQUERY_TRANSPORT=http \
    COLDQUERY_LISTEN=0.0.0.0:19002 \
    COLDQUERY_LOG_FORMAT=json
EXPOSE 19002
# `coldquery-mcp healthcheck` GETs /health on the port of COLDQUERY_LISTEN: no curl needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/coldquery-mcp", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/coldquery-mcp"]
