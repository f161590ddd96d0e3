package storeurl

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, secret string }{
		{"s3://AKIAEXAMPLE:supersecret@bucket?region=x", "supersecret"},
		{"s3://bucket?region=x&secret_key=supersecret", "supersecret"},
		{"azblob://c?sig=supersecret&sv=2020", "supersecret"},
		{"gs://b?access_token=supersecret", "supersecret"},
		{"azblob://c?#&sig=supersecret", "supersecret"}, // after a stray "#": a fragment (found by FuzzParseURL)
	}
	for _, tc := range tests {
		got := Redact(tc.in)
		if strings.Contains(got, tc.secret) {
			t.Errorf("Redact(%q) = %q still holds the secret", tc.in, got)
		}
	}
	if got := Redact("s3://bucket?region=us-east-1&endpoint=http://h:1"); !strings.Contains(got, "region=us-east-1") {
		t.Errorf("Redact dropped harmless parameters: %q", got)
	}
}

func TestFileURL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a b", "store")
	u, err := FileURL(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "file://" + filepath.ToSlash(filepath.Dir(filepath.Dir(dir))) + "/a%20b/store?metadata=skip"; u != want {
		t.Errorf("FileURL = %q, want %q", u, want)
	}
}
