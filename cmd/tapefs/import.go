//go:build !tapefs_lite

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tapefs/tapefs/importer"
	"github.com/tapefs/tapefs/indexer"
)

// ImportCmd copies a directory of tapes into a store.
type ImportCmd struct {
	StoreFlags
	Dir     string `arg:"" help:"Directory to copy: a Shadowcat tape directory (v2 .jsonl + .meta.json, v1 .json + index.json, flat or nested); other files are copied too." type:"path"`
	Prefix  string `help:"Put the keys under this prefix (e.g. archive/2025): DIR/a/b.jsonl becomes PREFIX/a/b.jsonl." env:"TAPEFS_IMPORT_PREFIX" placeholder:"P"`
	DryRun  bool   `help:"Say what would be copied and skipped; write nothing." env:"TAPEFS_DRY_RUN"`
	Workers int    `help:"Files compared and uploaded in parallel." default:"8" env:"TAPEFS_WORKERS"`
	Verbose bool   `short:"v" help:"One line per file copied or skipped, and why." env:"TAPEFS_VERBOSE"`
	ProgressFlag
}

// openTimeout bounds opening the store and checking that it answers.
const openTimeout = 30 * time.Second

func (c *ImportCmd) Run(g *Globals, log *slog.Logger) error {
	return c.run(g, os.Stdout)
}

func (c *ImportCmd) run(g *Globals, out io.Writer) error {
	st, err := c.StoreFlags.resolve()
	if err != nil {
		return err
	}
	if isMemStore(st) {
		return fmt.Errorf("%s is a memory store, which lives only inside one process: nothing imported into it would remain; import into a file://, s3://, gs:// or azblob:// store", st.Redacted)
	}
	dir, err := importer.CheckDir(c.Dir)
	if err != nil {
		return err
	}
	if _, err := importer.NormalizePrefix(c.Prefix); err != nil {
		return fmt.Errorf("--prefix: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	bucket, err := openStore(ctx, st)
	if err != nil {
		return err
	}
	defer bucket.Close()

	var im *importer.Importer
	p := newProgress(c.Progress, "import", func() progressState {
		s := im.Progress()
		ps := progressState{Phase: "copying", Done: s.Done, Total: s.Files, Unit: "files",
			Bytes: s.DoneBytes, TotalBytes: s.Bytes}
		var extra []string
		if s.Skipped > 0 {
			extra = append(extra, fmt.Sprintf("%d skipped", s.Skipped))
		}
		if s.Failed > 0 {
			extra = append(extra, fmt.Sprintf("%d failed", s.Failed))
		}
		ps.Extra = strings.Join(extra, ", ")
		if s.Scanning {
			ps = progressState{Phase: "scanning", Done: s.Files, Unit: "files"}
		}
		if c.DryRun {
			ps.Phase += " (dry run)"
		}
		return ps
	})
	log := progressLogger(g.LogLevel, p)
	im = importer.New(bucket, importer.Options{
		Prefix: c.Prefix, DryRun: c.DryRun, Workers: c.Workers, Logger: log,
		Exclude: excludedPaths(st),
	})
	p.Start()
	rep, runErr := im.Run(ctx, dir)
	p.Stop()
	// Items in path order at the end, so two runs can be compared; the
	// failures always.
	for _, it := range rep.Items {
		if c.Verbose || it.Action == importer.Failed {
			fmt.Fprintln(out, itemLine(it, c.DryRun))
		}
	}
	printImportSummary(out, rep, dir, st, c.Prefix, c.Verbose)

	var ae *importer.AbortError
	switch {
	case errors.As(runErr, &ae):
		return abortMessage(ae, st, rep)
	case errors.Is(runErr, context.Canceled):
		return fmt.Errorf("import interrupted after %d of %d files; run the same command again to finish (what is already copied is skipped)",
			im.Progress().Done, rep.Files)
	case runErr != nil:
		return runErr
	}
	if !c.DryRun {
		if err := updateIndex(ctx, out, st, bucket, c.Workers, g.LogLevel, c.Progress); err != nil {
			return err
		}
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d file(s) could not be copied (listed above); run the same command again to retry them (what is already copied is skipped)", rep.Failed)
	}
	return nil
}

// isMemStore says whether st is a mem:// store, private to one process.
func isMemStore(st storeStack) bool {
	u, err := url.Parse(st.URL)
	return err == nil && u.Scheme == "mem"
}

// openStore opens the store's bucket, bounded in time.
func openStore(ctx context.Context, st storeStack) (*blob.Bucket, error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	b, _, err := openBucket(octx, st)
	return b, err
}

// excludedPaths are the local files of the destination itself, which must
// not be imported when they lie inside the imported directory: a file://
// store's directory, and the sidecar with its companions.
func excludedPaths(st storeStack) []string {
	var out []string
	if u, err := url.Parse(st.URL); err == nil && u.Scheme == "file" && u.Path != "" {
		out = append(out, filepath.FromSlash(u.Path))
	}
	for _, suffix := range []string{"", "-wal", "-shm", "-journal", ".staging", importer.BuildSuffix,
		importer.BuildSuffix + "-wal", importer.BuildSuffix + "-shm"} {
		out = append(out, st.Meta+suffix)
	}
	return out
}

// abortMessage turns a store-wide failure into what to do about it.
func abortMessage(ae *importer.AbortError, st storeStack, rep *importer.Report) error {
	done := fmt.Sprintf("run the same command again: the %d file(s) already copied are skipped", rep.Copied+rep.ByReason[importer.Identical])
	switch {
	case importer.NoSpace(ae.Err):
		return fmt.Errorf("the store %s is full (%v): free some space or raise the quota, then %s", st.Redacted, ae, done)
	case errors.Is(ae.Err, syscall.EXDEV):
		return fmt.Errorf("cannot write into the store %s (%v): its directory is on another file system than the temporary directory %s, where gocloud's file:// driver stages writes; add no_tmp_dir=1 to the URL's query (or set TMPDIR to a directory on the store's file system), then %s",
			st.Redacted, ae, os.TempDir(), done)
	case errors.Is(ae.Err, syscall.EROFS):
		return fmt.Errorf("the store %s is read-only (%v): import into a writable store", st.Redacted, ae)
	case gcerrors.Code(ae.Err) == gcerrors.PermissionDenied:
		return fmt.Errorf("the store %s refused the write (%v): check that the credentials may write to it, then %s", st.Redacted, ae, done)
	}
	return fmt.Errorf("import into %s stopped: %v: check that the store answers, then %s", st.Redacted, ae, done)
}

// itemLine is the -v line of one file.
func itemLine(it importer.Item, dryRun bool) string {
	what := it.Action.String()
	if dryRun && it.Action == importer.Copied {
		what = "would copy"
	}
	name := showName(it.Path)
	if it.Key != "" && it.Key != it.Path {
		name += " -> " + showName(it.Key)
	}
	switch it.Action {
	case importer.Copied:
		return fmt.Sprintf("%-10s %s (%s, %s)", what, name, it.Reason, humanSize(it.Size))
	case importer.Failed:
		return fmt.Sprintf("%-10s %s: %s", what, name, it.Detail)
	}
	if it.Detail != "" {
		return fmt.Sprintf("%-10s %s: %s (%s)", what, name, it.Reason, it.Detail)
	}
	return fmt.Sprintf("%-10s %s: %s", what, name, it.Reason)
}

// showName quotes a name that a terminal would not show faithfully.
func showName(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func printImportSummary(out io.Writer, rep *importer.Report, dir string, st storeStack, prefix string, verbose bool) {
	verb := "copied"
	if rep.DryRun {
		verb = "would copy"
	}
	where := st.Redacted
	if p, _ := importer.NormalizePrefix(prefix); p != "" {
		where += " under " + strconv.Quote(p)
	}
	fmt.Fprintf(out, "import %s -> %s%s: %s %d file(s), %s", dir, where, map[bool]string{true: " (dry run)"}[rep.DryRun],
		verb, rep.Copied, humanSize(rep.CopiedBytes))
	if rep.Copied > 0 {
		fmt.Fprintf(out, " (%d new, %d changed)", rep.ByReason[importer.Added], rep.ByReason[importer.Changed])
	}
	fmt.Fprintln(out)
	if rep.Skipped > 0 {
		var parts []string
		for _, r := range []importer.Reason{importer.Identical, importer.Unservable, importer.Unreadable, importer.Symlink,
			importer.Special, importer.StoreAttrs, importer.Excluded} {
			if n := rep.ByReason[r]; n > 0 {
				parts = append(parts, fmt.Sprintf("%d %s", n, r))
			}
		}
		fmt.Fprintf(out, "  skipped %d: %s\n", rep.Skipped, strings.Join(parts, ", "))
		if !verbose && rep.Skipped > rep.ByReason[importer.Identical] {
			fmt.Fprintf(out, "  (-v lists every file and why it was skipped)\n")
		}
	}
	if rep.Failed > 0 {
		fmt.Fprintf(out, "  failed %d\n", rep.Failed)
	}
	fmt.Fprintf(out, "  took %s\n", rep.Duration.Round(time.Millisecond))
}

// updateIndex brings the store's index up to date after an import, so
// `tapefs ls` and the mounts show the new tapes at once: a running mount
// on the sidecar is asked to refresh (its daemon owns the sidecar);
// otherwise the sidecar is reconciled here. Other mounts of the same store
// are asked to refresh too.
func updateIndex(ctx context.Context, out io.Writer, st storeStack, bucket *blob.Bucket, workers int, level, mode string) error {
	onSidecar, onStore := mountsOf(st)
	daemonOwns := false
	for _, mi := range onSidecar {
		if refreshMount(out, mi) {
			daemonOwns = true
		}
	}
	if !daemonOwns {
		if err := reconcileHere(ctx, out, st, bucket, workers, level, mode); err != nil {
			return err
		}
	}
	for _, mi := range onStore {
		refreshMount(out, mi)
	}
	return nil
}

// refreshMount asks a mount to list the store again. It reports whether a
// daemon answered at all (if it answered with an error, the user is told
// what to run); false means the entry is stale.
func refreshMount(out io.Writer, mi mountInfo) bool {
	var res indexer.Result
	err := callControl(mi.Mountpoint, "POST", "/refresh", 10*time.Minute, &res)
	if err != nil {
		if isDialErr(err) {
			return false // no daemon: a stale entry
		}
		fmt.Fprintf(out, "the mount at %s did not refresh (%v); run: tapefs refresh %s\n", mi.Mountpoint, err, mi.Mountpoint)
		return true
	}
	fmt.Fprintf(out, "refreshed the mount at %s: %d key(s) added, %d changed, %d removed, %d tape(s) indexed\n",
		mi.Mountpoint, res.Added, res.Changed, res.Removed, res.TapesIndexed)
	return true
}

// reconcileHere updates the sidecar of st from the store, with progress.
func reconcileHere(ctx context.Context, out io.Writer, st storeStack, bucket *blob.Bucket, workers int, level, mode string) error {
	var done, total atomic.Int64
	p := reconcileProgress(mode, "index", &done, &total)
	log := progressLogger(level, p)
	sc, err := openSidecar(st.Meta, log)
	if err != nil {
		p.Stop()
		return err
	}
	ix := indexer.New(bucket, sc, indexer.Options{Workers: workers, Logger: log, Name: st.Redacted, MixedETags: st.tiered(),
		Progress: func(d, t int) { done.Store(int64(d)); total.Store(int64(t)) }})
	p.Start()
	res, err := ix.Reconcile(ctx)
	p.Stop()
	if cerr := sc.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("the files are copied, but updating the index %s failed: %w; it is updated at the next mount or `tapefs reindex`", st.Meta, err)
	}
	fmt.Fprintf(out, "index %s: %d key(s) added, %d changed, %d removed, %d tape(s) indexed (%d invalid)\n",
		st.Meta, res.Added, res.Changed, res.Removed, res.TapesIndexed, res.InvalidTapes)
	return nil
}

// mountsOf returns the mounts listed in the run directory that use st's
// sidecar, and those that mount the same store with another sidecar.
func mountsOf(st storeStack) (onSidecar, onStore []mountInfo) {
	for _, mi := range readMountInfos() {
		switch {
		case sameFile(mi.Meta, st.Meta):
			onSidecar = append(onSidecar, mi)
		case mi.Backend == st.Redacted:
			onStore = append(onStore, mi)
		}
	}
	return onSidecar, onStore
}

// sameFile says whether two paths name one file (or are equal).
func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	if filepath.Clean(a) == filepath.Clean(b) {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// progressLogger is a command's logger, writing above its progress bar.
func progressLogger(level string, p *progress) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(p.Writer(), &slog.HandlerOptions{Level: l}))
}
