# The image the chart deploys (ghcr.io/tandem-dev/tandem): a static-enough binary on
# distroless, running as the non-root user 65532 with nothing writable needed. The binary is
# the profile-guided build of benches/pgo (two release builds and a training run on
# loopback: about 20 minutes on two cores), the one README's performance figures are for.
#   docker build -t ghcr.io/tandem-dev/tandem:0.1.0 .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup component add llvm-tools && bash benches/pgo && strip target/release/tandem

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tandem /usr/local/bin/tandem
USER 65532:65532
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/tandem"]
CMD ["serve"]
