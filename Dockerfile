# Build stage: compile the release binary.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY benches ./benches
RUN cargo build --release --locked --bin shears

# Runtime stage: the binary alone, run by an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/shears --create-home shears \
    && install -d -o shears -g shears /var/lib/shears/data
COPY --from=build /src/target/release/shears /usr/local/bin/shears
USER shears
WORKDIR /var/lib/shears
ENV SHEARS_BIND=0.0.0.0:8080 \
    SHEARS_DATA_DIR=/var/lib/shears/data \
    SHEARS_LOG_FORMAT=json
VOLUME ["/var/lib/shears/data"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["shears"]
CMD ["serve"]
