package sqlitestore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tapefs/tapefs/backend"
)

// The program's mux opens sqlite:// URLs.
func TestOpenThroughMux(t *testing.T) {
	ctx := context.Background()
	url := "sqlite://" + filepath.Join(t.TempDir(), "sub", "tapes.db")
	b, err := backend.Open(ctx, backend.NewMux(), url)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.WriteAll(ctx, "tape", []byte("data"), nil); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b, err = backend.Open(ctx, backend.NewMux(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got, err := b.ReadAll(ctx, "tape")
	if err != nil || string(got) != "data" {
		t.Fatalf("reopened store: %q, %v", got, err)
	}
}
