# sanitel: a static binary in a small image, run as a non-root user.
#   docker build -t sanitel .
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w" -o /out/sanitel ./cmd/sanitel

FROM alpine:3.22
# wget (busybox) answers the health check; ca-certificates for TLS brokers,
# InfluxDB Cloud and https webhooks; tzdata for tickets.timezone.
RUN apk add --no-cache ca-certificates tzdata \
 && addgroup -S -g 10001 sanitel \
 && adduser -S -D -H -u 10001 -G sanitel sanitel \
 && mkdir -p /var/lib/sanitel /etc/sanitel \
 && chown sanitel:sanitel /var/lib/sanitel
COPY --from=build /out/sanitel /usr/local/bin/sanitel
USER sanitel:sanitel
VOLUME /var/lib/sanitel
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sanitel"]
CMD ["serve", "--config", "/etc/sanitel/sanitel.yaml"]
