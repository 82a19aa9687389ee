// Command grafana writes HelixFlow's Grafana dashboards, defined in Go with
// grafana-foundation-sdk, as JSON into dashboards/ (make dashboards). The
// JSON is checked in; its test fails when it differs from what the Go
// code makes, and when a panel's PromQL names a metric no HelixFlow
// process or Envoy exports (../alerts/metrics.txt).
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	out := flag.String("out", "dashboards", "folder to write the dashboards' JSON into")
	flag.Parse()
	if err := writeAll(*out); err != nil {
		fmt.Fprintln(os.Stderr, "grafana:", err)
		os.Exit(1)
	}
}
