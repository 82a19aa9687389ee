package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/helixflow/helixflow/envoy/bootstrap"
	"github.com/helixflow/helixflow/internal/atomicfile"
)

// runBootstrap implements `helix-xds bootstrap`: it writes the Envoy
// bootstrap for the given addresses and certificate files.
func runBootstrap(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("helix-xds bootstrap", flag.ContinueOnError)
	host, _ := os.Hostname()
	var c bootstrap.Config
	var t bootstrap.TLS
	var output string
	fs.StringVar(&c.NodeID, "node-id", host, "Envoy node id (default: the host name)")
	fs.StringVar(&c.NodeCluster, "node-cluster", "helix", "Envoy node cluster; helix-xds --node-cluster must match")
	fs.StringVar(&c.XDSAddress, "xds-address", "127.0.0.1:18000", "helix-xds ADS address, host:port")
	fs.StringVar(&t.CAFile, "xds-ca-file", "", "CA that signed helix-xds's certificate (mTLS; required unless helix-xds is on loopback)")
	fs.StringVar(&t.CertFile, "xds-cert-file", "", "Envoy's client certificate for helix-xds")
	fs.StringVar(&t.KeyFile, "xds-key-file", "", "Envoy's client key for helix-xds")
	fs.StringVar(&t.ServerName, "xds-server-name", "", "SNI and required DNS SAN of helix-xds's certificate (required with --xds-ca-file)")
	fs.StringVar(&c.AdminAddress, "admin-address", "127.0.0.1:9901", "Envoy admin address, a loopback IP and port (0: any free port)")
	fs.BoolVar(&c.Delta, "delta", false, "use incremental (delta) xDS")
	fs.Uint64Var(&c.MaxConnections, "max-connections", bootstrap.DefaultMaxConnections, "cap on active downstream connections")
	fs.StringVar(&output, "output", "-", "file to write (\"-\": standard output)")
	fs.SetOutput(stdout)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if t != (bootstrap.TLS{}) {
		c.XDSTLS = &t
	}
	b, err := bootstrap.Render(c)
	if err != nil {
		return err
	}
	if output == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return atomicfile.Write(output, b, 0o644)
}
