//go:build !tapefs_lite

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/backend/compress"
	"github.com/tapefs/tapefs/backend/tier"
	"github.com/tapefs/tapefs/indexer"
	"gocloud.dev/blob"
)

// storeStack is a located store with what opening it needs: the layers
// backend.OpenWith stacks over it and the write policy of a tier.
type storeStack struct {
	store
	Layers backend.Layers
	Policy tier.WritePolicy
	// Idle bounds a silent connection to an S3 store (mount's --timeout);
	// 0: backend.DefaultIdleTimeout.
	Idle time.Duration
}

// resolve locates the stores of the flags and parses the layers and the
// write policy they ask for.
func (sf StoreFlags) resolve() (storeStack, error) {
	loc, err := sf.locate()
	st := storeStack{store: loc}
	if err != nil {
		return st, err
	}
	if st.Policy, err = tier.ParsePolicy(sf.WritePolicy); err != nil {
		if sf.WritePolicy != "" {
			return st, err
		}
		st.Policy = tier.All
	}
	v := strings.TrimSpace(sf.Compress)
	switch strings.ToLower(v) {
	case "", "off":
	case "on":
		st.Layers.Compress = compress.DefaultThreshold
	case "read":
		st.Layers.Compress = compress.Off
	default:
		n, err := compress.ParseThreshold(v)
		if err != nil || n == compress.Off {
			return st, fmt.Errorf("--compress %q: want off, on, read, or a threshold size such as 4MiB", sf.Compress)
		}
		st.Layers.Compress = n
	}
	return st, nil
}

// openBucket opens st's store, or the tier of its stores (returned too, for
// its status).
func openBucket(ctx context.Context, st storeStack) (*blob.Bucket, *tier.Tier, error) {
	profiles := st.Profiles
	if len(profiles) == 0 {
		profiles = []backend.NamedURL{{Name: "default", URL: st.URL}}
	}
	idle := st.Idle
	if idle <= 0 {
		idle = backend.DefaultIdleTimeout
	}
	mux := backend.NewMuxWith(backend.MuxOptions{IdleTimeout: idle})
	return backend.OpenProfiles(ctx, mux, profiles, st.Layers, tier.Options{Policy: st.Policy, Logger: st.Layers.Logger})
}

// indexFirst indexes a store that has no sidecar yet, before a query.
func indexFirst(ctx context.Context, sf StoreFlags, log *slog.Logger) error {
	st, err := sf.resolve()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tapefs: %s has no index yet; indexing it now\n", st.Redacted)
	bucket, _, err := openBucket(ctx, st)
	if err != nil {
		return err
	}
	defer bucket.Close()
	sc, err := openSidecar(st.Meta, log)
	if err != nil {
		return err
	}
	_, err = indexer.New(bucket, sc, indexer.Options{Logger: log, MixedETags: st.tiered()}).Reconcile(ctx)
	sc.Close()
	if err != nil {
		return fmt.Errorf("indexing %s: %w", st.Redacted, err)
	}
	return nil
}
