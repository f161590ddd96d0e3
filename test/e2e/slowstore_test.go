package e2e

import (
	"bytes"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestStatWhileOpenCopies: an open for writing copies the object from the
// store first (copy-on-open); while the store holds that copy, stat of the
// same file and `ls -l` of its directory answer from the sidecar, before
// the open returns, and the append then goes up whole.
func TestStatWhileOpenCopies(t *testing.T) {
	st := newProxiedStore(t)
	key := "slow/append.jsonl"
	data := newTape(950, 80).Data
	st.Seed(t, map[string][]byte{key: data, "slow/other.jsonl": newTape(951, 10).Data})
	// No attribute caching: every stat below reaches the daemon.
	m := mount(t, st, withArgs("--attr-timeout", "0"))
	st.proxy.SetRule(slowGets(st, key, 3*time.Second))
	mark := st.proxy.Mark()

	opened := make(chan struct{}) // closed when the open has returned
	appended := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(m.Path(key), os.O_WRONLY|os.O_APPEND, 0)
		close(opened)
		if err == nil {
			_, err = f.Write([]byte("{}\n"))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		appended <- err
	}()
	if !waitFor(20*time.Second, func() bool {
		all, _ := countFor(st.proxy.Requests(mark), http.MethodGet, st.objectPath(key))
		return all > 0
	}) {
		t.Fatalf("the open for appending never asked the store for %s", key)
	}

	fi, err := os.Stat(m.Path(key))
	if err != nil {
		t.Fatalf("stat while the open copies: %v", err)
	}
	out, err := exec.Command("ls", "-l", m.Path("slow")).CombinedOutput()
	if err != nil {
		t.Fatalf("ls -l while the open copies: %v\n%s", err, out)
	}
	select {
	case <-opened:
		t.Fatalf("the open returned before stat and ls -l did: they waited for its copy from the store")
	default:
	}
	if fi.Size() != int64(len(data)) || !strings.Contains(string(out), "append.jsonl") || !strings.Contains(string(out), "other.jsonl") {
		t.Errorf("while the open copies: stat says %d bytes (want %d); ls -l:\n%s", fi.Size(), len(data), out)
	}

	if err := <-appended; err != nil {
		t.Fatalf("append: %v", err)
	}
	st.proxy.SetRule(nil)
	if got, _ := storeRead(t, st.Bucket(), key); !bytes.Equal(got, append(append([]byte{}, data...), "{}\n"...)) {
		t.Errorf("the store holds %d bytes, not the tape and the appended line", len(got))
	}
}
