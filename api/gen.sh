#!/usr/bin/env bash
# Regenerates the Go packages of api/ from api/proto (protobuf):
#   proto/cairn/kv/v1    -> kvpb    (the client API and the KV log commands)
#   proto/cairn/raft/v1  -> raftpb  (peer traffic: Raft messages, snapshot chunks)
#   proto/cairn/admin/v1 -> adminpb (the operator API: node status, fault injection)
# The generated files are committed; run this after changing a .proto and
# commit both.
#
# Tools, pinned (change the versions here, then rerun):
#   protoc              Debian's protobuf-compiler (apt-get install -y protobuf-compiler)
#   protoc-gen-go       google.golang.org/protobuf, the same version as go.mod's
#   protoc-gen-go-grpc  google.golang.org/grpc/cmd/protoc-gen-go-grpc
# The plugins are built once into a cache directory keyed by their versions.
set -euo pipefail

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2

cd "$(dirname "$0")"

if ! command -v protoc >/dev/null; then
	echo "gen.sh: protoc not found; install it: apt-get install -y protobuf-compiler" >&2
	exit 1
fi

bin="${XDG_CACHE_HOME:-$HOME/.cache}/cairn-protoc/go-${PROTOC_GEN_GO_VERSION}-grpc-${PROTOC_GEN_GO_GRPC_VERSION}"
if [[ ! -x "$bin/protoc-gen-go" || ! -x "$bin/protoc-gen-go-grpc" ]]; then
	mkdir -p "$bin"
	GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@${PROTOC_GEN_GO_VERSION}"
	GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@${PROTOC_GEN_GO_GRPC_VERSION}"
fi

# Each proto package is compiled by itself (its files may import one
# another), into the Go package its go_package option names.
gen() {
	local src=$1 out=$2
	rm -f "$out"/*.pb.go
	PATH="$bin:$PATH" protoc \
		--proto_path=proto \
		--go_out=. --go_opt=module=github.com/cairnkv/cairn/api \
		--go-grpc_out=. --go-grpc_opt=module=github.com/cairnkv/cairn/api \
		"proto/$src"/*.proto
	echo "gen.sh: regenerated api/$out from api/proto/$src"
}
gen cairn/kv/v1 kvpb
gen cairn/raft/v1 raftpb
gen cairn/admin/v1 adminpb
echo "gen.sh: with $(protoc --version), protoc-gen-go ${PROTOC_GEN_GO_VERSION}, protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION}"
