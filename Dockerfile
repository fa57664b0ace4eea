# The image the chart deploys (ghcr.io/tandem-dev/tandem): a static-enough binary on
# distroless, running as the non-root user 65532 with nothing writable needed.
#   docker build -t ghcr.io/tandem-dev/tandem:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked && strip target/release/tandem

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["serve"]
