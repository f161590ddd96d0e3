package backend

import (
	"context"
	"errors"
	"fmt"

	"github.com/tapefs/tapefs/backend/compress"
	"github.com/tapefs/tapefs/backend/storeurl"
	"github.com/tapefs/tapefs/backend/tier"
	"gocloud.dev/blob"
)

// NamedURL is one store of a profile set (see storeurl.NamedURL).
type NamedURL = storeurl.NamedURL

// OpenProfiles opens the stores a command names. One store is OpenWith.
// Several are a tier over them (the last one is the origin: listings come
// from it), each with its own metrics, and compression, when asked for,
// over the tier so that every profile holds the same bytes. The *tier.Tier
// is returned for its Status (nil for one store). Every store must answer.
func OpenProfiles(ctx context.Context, mux *blob.URLMux, stores []NamedURL, layers Layers, topts tier.Options) (*blob.Bucket, *tier.Tier, error) {
	switch len(stores) {
	case 0:
		return nil, nil, errors.New("no store to open")
	case 1:
		l := layers
		if l.Profile == "" {
			l.Profile = stores[0].Name
		}
		b, err := OpenWith(ctx, mux, stores[0].URL, l)
		return b, nil, err
	}
	var profiles []tier.Profile
	closeAll := func() {
		for _, p := range profiles {
			p.Bucket.Close()
		}
	}
	for _, s := range stores {
		l := layers
		l.Compress, l.Profile = 0, s.Name
		b, err := OpenWith(ctx, mux, s.URL, l)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("profile %s: %w", s.Name, err)
		}
		profiles = append(profiles, tier.Profile{Name: s.Name, Bucket: b})
	}
	if topts.Logger == nil {
		topts.Logger = layers.Logger
	}
	t, err := tier.New(ctx, profiles, topts)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	b := blob.NewBucket(t)
	if layers.Compress != 0 {
		b = compress.Wrap(b, compress.Options{Threshold: layers.Compress})
	}
	return b, t, nil
}
