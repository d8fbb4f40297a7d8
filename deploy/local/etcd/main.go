// Command etcd is the etcd server built from the Go module proxy for the test control plane.
//
// `go install go.etcd.io/etcd/server/v3` is refused (the server module has replace directives), so
// this one-file main calls etcdmain.Main exactly as upstream's own main does. It lives in its own
// module so etcd's grpc/otel versions never raise the kube-apiserver build's (deploy/local/k8s).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
