// etcd, as the upstream binary starts it (go.etcd.io/etcd/server/v3/main.go), at the version
// the Kubernetes release pins.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
