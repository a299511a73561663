# coldquery-mcp in a container: streamable HTTP on 0.0.0.0:19002, tokens required.
# Build:  docker build -t coldquery .
# Run:    docker run --rm -p 19002:19002 -e DATABASE_URL=postgres://... \
#           -e COLDQUERY_AUTH_TOKEN=$(openssl rand -hex 32) coldquery
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends libclang-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p coldquery-mcp -p coldquery-cli

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin coldquery \
    && mkdir -p /var/log/coldquery && chown coldquery /var/log/coldquery
COPY --from=build /src/target/release/coldquery-mcp /src/target/release/coldquery /usr/local/bin/
USER coldquery
ENV COLDQUERY_TRANSPORT=http \
    COLDQUERY_LISTEN=0.0.0.0:19002 \
    COLDQUERY_LOG_FORMAT=json
EXPOSE 19002
# Orchestrators probe GET /health (liveness) and GET /ready (database reachable); neither needs a token.
ENTRYPOINT ["/usr/local/bin/coldquery-mcp"]
