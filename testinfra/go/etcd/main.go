// Command etcd is the etcd server of the e2e test control plane: etcd's own entry point,
// built from the published go.etcd.io/etcd/server/v3 module (the repository's root module,
// which holds etcd's main package, replaces its siblings with local paths and so cannot be
// required).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
