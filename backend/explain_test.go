package backend

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/smithy-go"
)

func TestExplain(t *testing.T) {
	const url = "s3://tapes?endpoint=http://127.0.0.1:9000&use_path_style=true"
	api := func(code string) error {
		return fmt.Errorf("list store: %w", &smithy.GenericAPIError{Code: code, Message: "the server's words"})
	}
	tests := []struct {
		name     string
		err      error
		sentinel error    // nil: returned as it is
		says     []string // in the message
	}{
		{"bucket gone", api("NoSuchBucket"), ErrNoBucket, []string{`bucket "tapes"`, "does not exist", "create it"}},
		{"credentials refused", api("AccessDenied"), ErrAccessDenied, []string{`bucket "tapes"`, "AccessDenied", "AWS_ACCESS_KEY_ID"}},
		{"signature refused", api("SignatureDoesNotMatch"), ErrAccessDenied, []string{"check the credentials"}},
		{"throttled", api("SlowDown"), nil, nil},
		{"not an API error", errors.New("connection refused"), nil, nil},
		{"nil", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(url, tt.err)
			if tt.sentinel == nil {
				if got != tt.err {
					t.Fatalf("Explain changed %v into %v", tt.err, got)
				}
				return
			}
			if !errors.Is(got, tt.sentinel) {
				t.Fatalf("Explain = %v, not %v", got, tt.sentinel)
			}
			for _, s := range tt.says {
				if !strings.Contains(got.Error(), s) {
					t.Errorf("Explain = %q, does not say %q", got, s)
				}
			}
			if again := Explain(url, got); again != got {
				t.Errorf("Explain of its own answer changed it: %v", again)
			}
		})
	}
}
