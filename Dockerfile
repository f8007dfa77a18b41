# cairn's container image: one static binary and nothing else.
#
# There is no base image (no registry to pull one from, and none needed):
# build the binary on the host first, static, then the image:
#
#   CGO_ENABLED=0 go build -o cairn ./cmd/cairn
#   docker build -t cairn:dev .
#
# The image has no shell, no /tmp and no CA certificates; the server needs
# none of them. Its data directory is /data: mount a volume there
# (docker-compose.yml does).
FROM scratch
COPY cairn /cairn
VOLUME ["/data"]
# 7001: clients (KV and Admin services); 8001: peers (Raft traffic).
EXPOSE 7001 8001
ENTRYPOINT ["/cairn"]
CMD ["server", "--help"]
