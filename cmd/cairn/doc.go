// Command cairn is cairn's one binary: the server, a local demo cluster,
// the command-line client and the load generator. It only wires packages
// together: server/ runs a node, client/ talks to a cluster, loadgen
// generates load.
//
//	cairn server ...                     run one node (see server.go)
//	cairn demo [--dir D] [--nodes 3]     a local cluster and a shell to play with it
//	cairn put KEY VALUE                  set a key, exactly once
//	cairn get KEY [--value-only]         read a key (--consistency)
//	cairn del KEY                        delete a key
//	cairn cas KEY [NEW] --expect-value V | --expect-version N | --expect-absent [--delete]
//	cairn scan [START [END]] [--limit N] [--prefix] [--keys-only]
//	cairn status                         every node's role, term, leader, indexes, sizes
//	cairn fault show|net|disk|heal --endpoint ADDR   one node's network and disk faults (fault.go)
//	cairn bench [--target cairn|etcd] [workload flags] [--json FILE]
//
// Global flags, as etcdctl's: --endpoints (comma-separated host:port of
// the nodes' client addresses), --output table|json, --timeout (a whole
// command, retries included), --dial-timeout, and --consistency
// linearizable|lease|serializable for reads.
//
// # Exit status
//
//	0    success
//	1    any other failure
//	2    bad command line
//	3    get: no such key
//	4    cas: the condition did not hold; nothing written
//	5    cluster unavailable (no leader, no quorum, unreachable); a write was not applied
//	6    a write's outcome is unknown: it may or may not have been applied
//	7    the cluster refused the request as invalid (a size limit, an empty key); nothing applied
//	130  interrupted
//
// Messages go to stderr, prefixed with the command ("cairn get: ..."),
// and say whether a write was applied.
package main
