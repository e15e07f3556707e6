# syntax=docker/dockerfile:1.7
#
# One image recipe for every kchat Go binary: the services (services/gateway,
# persistence, fanout, notification) and the operator CLI (tools/chatctl).
# SERVICE names the program; its folder is services/<SERVICE> or, for chatctl,
# tools/<SERVICE>. Build from the repository root so go.work and every module
# are in the context:
#
#   docker build -f deploy/docker/service.Dockerfile --build-arg SERVICE=gateway -t kchat/gateway:dev .
#
# The binary lands at /app/<SERVICE>; compose healthchecks call it with
# -healthcheck because the runtime image has no shell and no curl.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
ARG SERVICE
RUN test -n "${SERVICE}" || (echo "build arg SERVICE is required (gateway, persistence, fanout, notification, chatctl)" >&2; exit 1)
WORKDIR /src
# The workspace lists every module, so go needs all of them to resolve the
# build, not only the one being built.
COPY . .
# GOTOOLCHAIN=local: fail loudly instead of downloading another toolchain
# inside the build when go.work asks for a newer Go than the image has.
ENV CGO_ENABLED=0 GOOS=linux GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    dir="services/${SERVICE}"; [ -f "$dir/main.go" ] || dir="tools/${SERVICE}"; \
    test -f "$dir/main.go" || { echo "no such program: services/${SERVICE} or tools/${SERVICE}" >&2; exit 1; }; \
    go build -trimpath -ldflags="-s -w" -o "/out/app/${SERVICE}" "./$dir"
# /app/service is a fixed entrypoint name, because ENTRYPOINT cannot expand
# build args. chatctl reads deploy/topics.yaml relative to its working
# directory; the other services ignore the file, which is a few hundred bytes.
RUN ln -s "${SERVICE}" /out/app/service \
 && mkdir -p /out/app/deploy \
 && cp deploy/topics.yaml /out/app/deploy/topics.yaml \
 && mkdir -p /out/data/attachments

# distroless static: no libc needed for a CGO-free binary, no shell to exploit,
# and the :nonroot tag runs as uid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/app/ /app/
# The gateway's attachments directory, owned by nonroot, so that a named volume mounted
# there starts with that owner (Docker copies it into an empty volume).
COPY --from=build --chown=65532:65532 /out/data/ /var/lib/kchat/
WORKDIR /app
USER nonroot:nonroot
ENTRYPOINT ["/app/service"]
