# The Spells node as an image: the static binary `go build` makes, and
# nothing else (no shell, no libc, no package manager). Build the binary
# first, then the image:
#
#   CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o spells ./server
#   docker build -t spells .        (or: podman build -t spells .)
#   docker run -p 8080:8080 -v spells-data:/data spells
#
# The node runs as an unprivileged user (65532) and keeps everything in
# /data, a volume it owns: the vault files, node.key (the secret that keys
# sign-in nonces), the dev chain (chain/) and LOCK; without
# SPELLS_MASTER_KEY_FILE it keeps a dev key-encryption key there too. .dockerignore sends only the binary and the
# empty data folder into the build, never ./data or a key.
FROM scratch
COPY spells /spells
COPY --chown=65532:65532 deploy/data/ /data/
USER 65532:65532
VOLUME /data
EXPOSE 8080
ENV SPELLS_DATA=/data SPELLS_LISTEN=:8080 SPELLS_LOG_FORMAT=json
ENTRYPOINT ["/spells"]
