# syntax=docker/dockerfile:1
# Multi-stage build: a static keygate binary in a distroless, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
# .dockerignore keeps .git, local databases (data/, *.db) and binaries out.
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/keygate ./cmd/keygate \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/keygate /usr/local/bin/keygate
COPY --from=build --chown=65532:65532 /out/data /data
COPY configs/keygate.yaml /etc/keygate/keygate.yaml
USER 65532:65532
ENV KEYGATE_STORE_BOLT_PATH=/data/keygate.db
EXPOSE 8080 8081
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["serve", "--config", "/etc/keygate/keygate.yaml"]
