package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestFrontEndLinksNoStoreSDK: the query front end (-tags tapefs_lite) must
// not link what makes the complete program slow to start: gocloud and the
// cloud SDKs behind it, gRPC, OpenTelemetry, go-fuse, Prometheus, net/http.
func TestFrontEndLinksNoStoreSDK(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-tags", "sqlite_fts5 tapefs_lite", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	heavy := []string{"gocloud.dev/", "github.com/aws/", "cloud.google.com/", "github.com/Azure/", "google.golang.org/grpc",
		"go.opentelemetry.io/", "github.com/hanwen/go-fuse", "github.com/prometheus/", "net/http"}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("go list -deps printed %d packages, want the whole tree:\n%s", len(deps), out)
	}
	for _, p := range deps {
		for _, h := range heavy {
			if strings.HasPrefix(p, h) {
				t.Errorf("the query front end links %s", p)
			}
		}
	}
}
