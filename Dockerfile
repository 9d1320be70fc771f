# Spells node. Build: docker build -t spells .   Run: docker run -p 8080:8080 -v spells-data:/data spells
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# Pure Go: SQLite is modernc's, secp256k1 falls back to decred without cgo.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/spells ./server

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/spells /spells
VOLUME /data
EXPOSE 8080
ENV SPELLS_DATA=/data SPELLS_LISTEN=:8080 SPELLS_LOG_FORMAT=json
ENTRYPOINT ["/spells"]
