// Command etcdserver is etcd's own server, built from etcd's Go modules at the
// version pinned in this directory's go.mod, so that bench/vs-etcd.sh measures
// a current etcd release rather than whatever a distribution ships.
//
// It is a separate Go module on purpose: etcd's server pulls in bbolt,
// OpenTelemetry, Prometheus and grpc-gateway, none of which cairn itself needs,
// and keeping them out of the main module's go.mod keeps cairn's dependency
// graph small. Nothing here may be changed beyond the version pin: the binary
// must behave exactly like upstream etcd.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
