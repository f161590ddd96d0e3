package backend

import (
	"context"
	"errors"
	"github.com/tapefs/tapefs/backend/storeurl"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	mux := NewMux()
	tests := []struct {
		url     string
		wantErr bool
		want    string // a part of the message
	}{
		{"file:///tmp/x", false, ""},
		{"mem://", false, ""},
		{"s3://bucket?region=us-east-1", false, ""},
		{"", true, "empty URL"},
		{"/just/a/path", true, "no scheme"},
		{"foo://bar", true, "known schemes: azblob, file, gs, mem, s3, sqlite"},
		{"::bad", true, "not a URL"},
		{"s3://bucket?endpoint=%&region=us-east-1", true, "malformed query"},
	}
	for _, tc := range tests {
		_, err := Parse(mux, tc.url)
		if (err != nil) != tc.wantErr {
			t.Errorf("Parse(%q) = %v, want error %v", tc.url, err, tc.wantErr)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrBadURL) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse(%q) = %q, want ErrBadURL mentioning %q", tc.url, err, tc.want)
			}
		}
	}
}

func TestOpenFileAndMem(t *testing.T) {
	ctx := context.Background()
	mux := NewMux()
	u, err := storeurl.FileURL(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{u, "mem://"} {
		b, err := Open(ctx, mux, raw)
		if err != nil {
			t.Fatalf("Open(%q): %v", raw, err)
		}
		if err := b.WriteAll(ctx, "a/b.jsonl", []byte("x"), nil); err != nil {
			t.Errorf("write to %q: %v", raw, err)
		}
		b.Close()
	}
	if _, err := Open(ctx, mux, "file:///does/not/exist"); err == nil || !strings.Contains(err.Error(), "create_dir=1") {
		t.Errorf("missing directory: %v, want a hint to create it", err)
	}
}

// FuzzParseURL: Parse never panics, refuses with ErrBadURL only, and
// neither Parse's error nor Redact ever shows a secret given in the URL.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"file:///tmp/x", "mem://", "s3://b?region=us-east-1&endpoint=http://127.0.0.1:9000",
		"::bad", "foo://bar", "s3://b?endpoint=%", "", "gs://b/../..", "azblob://c?sig=%zz"} {
		f.Add(s, "Secret0123")
	}
	mux := NewMux()
	f.Fuzz(func(t *testing.T, raw, secret string) {
		if _, err := Parse(mux, raw); err != nil && !errors.Is(err, ErrBadURL) {
			t.Fatalf("Parse(%q) = %v, not ErrBadURL", raw, err)
		}
		_ = storeurl.Redact(raw)
		// A secret of letters and digits, long enough not to occur by chance.
		if len(secret) < 8 || strings.IndexFunc(secret, func(r rune) bool {
			return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9')
		}) >= 0 || strings.Contains(raw, secret) {
			return
		}
		for _, u := range []string{
			"s3://AKID:" + secret + "@bucket?" + raw,
			"s3://bucket?secret_access_key=" + secret + "&" + raw,
			"azblob://c?" + raw + "&sig=" + secret,
		} {
			if got := storeurl.Redact(u); strings.Contains(got, secret) {
				t.Fatalf("storeurl.Redact(%q) = %q shows the secret", u, got)
			}
			if _, err := Parse(mux, u); err != nil && strings.Contains(err.Error(), secret) {
				t.Fatalf("Parse(%q) error %q shows the secret", u, err)
			}
		}
	})
}
