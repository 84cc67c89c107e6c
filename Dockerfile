# syntax=docker/dockerfile:1
#
# extauthz container image: a static binary on distroless, running as the
# unprivileged user 65532.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg REVISION=$(git rev-parse HEAD) -t extauthz:dev .
#
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 ...
# (the binary is cross-compiled on the build host, no emulation needed).
# The configuration is not baked in: mount it at /etc/extauthz/config.yaml
# (the Kubernetes manifests in k8s/ do this from a ConfigMap).

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again. Only
# the product's modules: the manifest tests' Kubernetes modules live in
# k8s/go.mod, and k8s/ is not in the build context (.dockerignore).
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS TARGETARCH
ARG VERSION=dev
ARG REVISION=
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/extauthz ./cmd/extauthz

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="extauthz" \
      org.opencontainers.image.description="External authorization server for Envoy, Istio and nginx auth_request" \
      org.opencontainers.image.source="https://github.com/extauthz/extauthz" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/extauthz /extauthz
USER 65532:65532
# 9001 ext_authz gRPC + grpc.health.v1, 9002 HTTP forward-auth,
# 9090 admin (/metrics /healthz /readyz).
EXPOSE 9001 9002 9090
ENTRYPOINT ["/extauthz"]
CMD ["serve", "--config", "/etc/extauthz/config.yaml"]
