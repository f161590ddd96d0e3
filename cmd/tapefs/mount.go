//go:build !tapefs_lite

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tapefs/tapefs/backend"
	"github.com/tapefs/tapefs/backend/tier"
	"github.com/tapefs/tapefs/cache"
	"github.com/tapefs/tapefs/fsnode"
	"github.com/tapefs/tapefs/indexer"
	"github.com/tapefs/tapefs/meta"
	"gocloud.dev/blob"
)

// MountCmd mounts a store.
type MountCmd struct {
	StoreFlags
	Mountpoint      string        `arg:"" help:"Directory to mount on (must exist)." type:"path"`
	Daemon          bool          `help:"Run in the background; return once the mount answers." env:"TAPEFS_DAEMON"`
	ReadOnly        bool          `help:"Refuse every write with EROFS." env:"TAPEFS_READ_ONLY"`
	AllowOther      bool          `help:"Let other users see the mount (needs user_allow_other for non-root)." env:"TAPEFS_ALLOW_OTHER"`
	UID             OwnerID       `name:"uid" help:"User id every file and directory is owned by. Default: the user who mounts." env:"TAPEFS_UID" placeholder:"UID"`
	GID             OwnerID       `name:"gid" help:"Group id every file and directory is owned by. Default: the group of the user who mounts." env:"TAPEFS_GID" placeholder:"GID"`
	FileMode        FileMode      `help:"Permission bits of every file, in octal (the store keeps none; chmod changes nothing). The views under .by show them without the write bits." default:"0644" env:"TAPEFS_FILE_MODE"`
	DirMode         FileMode      `help:"Permission bits of every directory, in octal." default:"0755" env:"TAPEFS_DIR_MODE"`
	AttrTimeout     time.Duration `help:"How long the kernel may cache attributes and names." default:"10s" env:"TAPEFS_ATTR_TIMEOUT"`
	RefreshInterval time.Duration `help:"How often to list the store again to pick up changes made elsewhere (0 disables)." default:"1m" env:"TAPEFS_REFRESH_INTERVAL"`
	Timeout         time.Duration `help:"Bound on one read request to the store; a read that takes longer fails with EIO. A connection to an S3 store that moves no data for this long fails too, so a server that stops answering fails a close (EIO, the upload kept and retried) after the SDK's 3 tries instead of hanging it." default:"30s" env:"TAPEFS_TIMEOUT"`
	ChunkSize       int64         `help:"Size of one range read from the store, in bytes." default:"1048576" env:"TAPEFS_CHUNK_SIZE"`
	ReadAhead       int           `help:"Most chunks read ahead of a sequential reader." default:"8" env:"TAPEFS_READ_AHEAD"`
	IndexWorkers    int           `help:"Tapes indexed in parallel (each mostly waits on the store: a remote store's latency bounds indexing, not the CPU)." default:"32" env:"TAPEFS_INDEX_WORKERS"`
	CacheDir        string        `help:"Directory of the on-disk read cache. Default: $XDG_CACHE_HOME/tapefs/ID. The cache is used for remote stores, and for file:// and mem:// only when this flag is given." env:"TAPEFS_CACHE_DIR" placeholder:"DIR"`
	CacheMaxSize    ByteSize      `help:"Bound on the read cache (e.g. 512MiB, 10GiB); 0 turns it off." default:"1GiB" env:"TAPEFS_CACHE_MAX_SIZE"`
	CacheMinFree    ByteSize      `help:"Free space the read cache leaves on its disk, evicting to keep it (staged writes and the sidecar may share that disk); 0 turns it off." default:"1GiB" env:"TAPEFS_CACHE_MIN_FREE"`
	StateDir        string        `help:"Directory of staged writes. Default: beside the sidecar (SIDECAR.staging)." env:"TAPEFS_STATE_DIR" placeholder:"DIR"`
	LogFile         string        `help:"Log file of a --daemon mount. Default: $XDG_STATE_HOME/tapefs/logs/ID.log." env:"TAPEFS_LOG_FILE" placeholder:"FILE"`
	MetricsAddr     string        `help:"Serve Prometheus metrics of the store (operations, latencies, bytes) and the mount at http://ADDR/metrics, e.g. 127.0.0.1:9464. Default: none." env:"TAPEFS_METRICS_ADDR" placeholder:"HOST:PORT"`
	ProgressFlag
}

// owner is the user and group the mount shows, from --uid and --gid (each
// defaulting to the mounting user's); nil when neither is given.
func (c *MountCmd) owner() *fsnode.Owner {
	if !c.UID.Set && !c.GID.Set {
		return nil
	}
	o := &fsnode.Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if c.UID.Set {
		o.UID = c.UID.ID
	}
	if c.GID.Set {
		o.GID = c.GID.ID
	}
	return o
}

// readyEnv tells a re-executed daemon which file descriptor reports start-up.
const readyEnv = "TAPEFS_READY_FD"

func (c *MountCmd) Run(g *Globals, log *slog.Logger) error {
	mp, err := checkMountpoint(c.Mountpoint)
	if err != nil {
		return err
	}
	c.Mountpoint = mp
	if c.Daemon && os.Getenv(readyEnv) == "" {
		return c.startDaemon()
	}
	var rp *readyPipe
	if fd := os.Getenv(readyEnv); fd != "" {
		rp = &readyPipe{w: os.NewFile(3, "ready")}
	}
	err = c.serve(log, rp)
	if err != nil {
		rp.ready(err)
	}
	return err
}

// readyPipe is how a re-executed daemon tells the command that started it
// how its start-up goes, one line at a time: "progress DONE TOTAL" while it
// lists and indexes the store (TOTAL 0 while listing), then "ok" once the
// mount answers or "error: MESSAGE". A nil readyPipe (a mount in the
// foreground) says nothing.
type readyPipe struct {
	mu   sync.Mutex
	w    io.WriteCloser
	done bool
}

func (r *readyPipe) progress(done, total int64) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.done {
		fmt.Fprintf(r.w, "progress %d %d\n", done, total)
	}
}

func (r *readyPipe) ready(err error) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done {
		return
	}
	r.done = true
	if err != nil {
		fmt.Fprintf(r.w, "error: %s\n", oneLine(err.Error()))
	} else {
		fmt.Fprintln(r.w, "ok")
	}
	r.w.Close()
}

// readReady reads a daemon's start-up lines (see readyPipe) until its
// verdict, which it returns ("" if the daemon exited first), telling
// onProgress each progress line.
func readReady(r io.Reader, onProgress func(done, total int64)) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		var done, total int64
		if n, _ := fmt.Sscanf(line, "progress %d %d", &done, &total); n == 2 {
			onProgress(done, total)
			continue
		}
		return line
	}
	return ""
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// checkMountpoint refuses a missing, non-directory or already mounted path.
func checkMountpoint(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, syscall.ENOTCONN):
		return "", fmt.Errorf("mountpoint %s holds a dead mount; clean it up with: tapefs unmount %s", abs, abs)
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("mountpoint %s does not exist; create it with: mkdir -p %s", abs, abs)
	case err != nil:
		return "", fmt.Errorf("mountpoint %s: %v", abs, err)
	case !st.IsDir():
		return "", fmt.Errorf("mountpoint %s is not a directory", abs)
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if isMounted(abs) {
		return "", fmt.Errorf("%s is already a mount point; unmount it first (tapefs unmount %s)", abs, abs)
	}
	return abs, nil
}

// isMounted reports whether p is a mount point, from /proc/self/mountinfo.
func isMounted(p string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && unescapeMountinfo(fields[4]) == p {
			return true
		}
	}
	return false
}

func unescapeMountinfo(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// checkFuseDevice fails early, with a fix, when /dev/fuse cannot be used.
func checkFuseDevice() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("/dev/fuse is not usable (%v): load the fuse module (modprobe fuse) or run the container with --device /dev/fuse", err)
	}
	f.Close()
	return nil
}

// startDaemon re-runs this command in the background and waits until the
// child reports that the mount answers, or why it could not mount.
func (c *MountCmd) startDaemon() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logFile := c.LogFile
	if logFile == "" {
		logFile = logPath(c.Mountpoint)
	}
	if err := os.MkdirAll(filepath.Dir(logFile), 0o700); err != nil {
		return err
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("cannot open the log file %s: %w", logFile, err)
	}
	defer lf.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	args := append([]string{}, os.Args[1:]...)
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), readyEnv+"=3", "TAPEFS_LOG_FILE="+logFile)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pw.Close()
	var done, total atomic.Int64
	p := reconcileProgress(c.Progress, "mount", &done, &total)
	p.Start()
	line := readReady(pr, func(d, t int64) { done.Store(d); total.Store(t) })
	p.Stop()
	pr.Close()
	switch {
	case line == "ok":
		cmd.Process.Release()
		return nil
	case strings.HasPrefix(line, "error: "):
		cmd.Wait()
		return errors.New(strings.TrimPrefix(line, "error: "))
	default:
		cmd.Wait()
		return fmt.Errorf("the mount daemon exited before mounting; see %s", logFile)
	}
}

// showStartup shows the start-up counters until the returned func is
// called: on stderr in the foreground, else relayed through rp once a
// second.
func (c *MountCmd) showStartup(rp *readyPipe, done, total *atomic.Int64) (stop func()) {
	if rp == nil {
		p := reconcileProgress(c.Progress, "mount", done, total)
		p.Start()
		return p.Stop
	}
	quit, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				rp.progress(done.Load(), total.Load())
			}
		}
	}()
	return func() { close(quit); <-stopped }
}

// serve mounts and runs until unmounted or signalled.
func (c *MountCmd) serve(log *slog.Logger, rp *readyPipe) error {
	if err := checkFuseDevice(); err != nil {
		return err
	}
	st, err := c.StoreFlags.resolve()
	if err != nil {
		return err
	}
	st.Idle = c.Timeout
	ctx := context.Background()
	openCtx, cancel := context.WithTimeout(ctx, c.Timeout)
	var registry *prometheus.Registry
	if c.MetricsAddr != "" {
		registry = prometheus.NewRegistry()
		st.Layers.Metrics, st.Layers.Profile, st.Layers.Logger = registry, "default", log
	}
	bucket, tr, err := openBucket(openCtx, st)
	cancel()
	// A store that does not answer, for a sidecar that has listed it before:
	// the mount serves that listing and the cached data, and the refresh
	// picks the store up again once it answers (see offline below).
	var offline error
	if errors.Is(err, backend.ErrUnreachable) && !st.tiered() && hasData(st.Meta) {
		offline = err
		unchecked := st
		unchecked.Layers.Unchecked = true
		bucket, tr, err = openBucket(ctx, unchecked)
	}
	if err != nil {
		return err
	}
	defer bucket.Close()
	if registry != nil {
		stop, err := serveMetrics(c.MetricsAddr, registry, log)
		if err != nil {
			return err
		}
		defer stop()
	}

	// The staging directory is locked first: a second mount that shares it
	// (and the sidecar, by default) stops here, before it touches either.
	stagingDir := st.Meta + ".staging"
	if c.StateDir != "" {
		stagingDir = filepath.Join(c.StateDir, "staging")
	}
	staging, err := fsnode.NewStaging(stagingDir)
	if err != nil {
		return err
	}
	staging.SetLogger(log)
	if err := staging.Lock(fmt.Sprintf("pid %d, mounted at %s", os.Getpid(), c.Mountpoint)); err != nil {
		return err
	}
	sc, err := openSidecar(st.Meta, log)
	if err != nil {
		return err
	}
	defer sc.Close()
	var offlineObjects int64
	if offline != nil {
		stats, err := sc.Stats(ctx)
		if err != nil || stats.Objects == 0 {
			return offline // nothing listed before: nothing to serve
		}
		offlineObjects = stats.Objects
	}
	chunks, err := c.openCache(st)
	if err != nil {
		return err
	}
	// The first listing and indexing can take minutes on a large store: the
	// command that waits for the mount shows how they advance (on stderr,
	// or relayed by the parent of a --daemon mount).
	first := newFirstIndex()
	ix := indexer.New(bucket, sc, indexer.Options{Workers: c.IndexWorkers, Logger: log, MixedETags: st.tiered(),
		Progress: func(d, t int) { first.done.Store(int64(d)); first.total.Store(int64(t)) }})
	// A read that finds its object replaced in the store asks for a
	// refresh; the daemon's loop runs it, at most one a second, and
	// requests made meanwhile are one.
	kick := make(chan struct{}, 1)
	storeChanged := func(key string) {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	tree := fsnode.New(fsnode.Options{
		Bucket: bucket, Sidecar: sc, Indexer: ix, Staging: staging, Logger: log, Indexed: first.indexed,
		ReadOnly: c.ReadOnly, StoreChanged: storeChanged, Owner: c.owner(),
		FileMode: uint32(c.FileMode), DirMode: uint32(c.DirMode),
		Read: fsnode.ReadOptions{ChunkSize: c.ChunkSize, MaxAhead: c.ReadAhead, Timeout: c.Timeout, Cache: chunks, IfMatch: !st.tiered()},
	})
	ix.SetPending(tree.IsPending)
	if !c.ReadOnly {
		if n, err := tree.Recover(ctx); err != nil {
			log.Warn("could not read staged files of an earlier run", "err", err)
		} else if n > 0 {
			log.Info("uploaded staged files left by an earlier run", "count", n)
		}
	}
	if offline != nil {
		log.Warn("store unreachable: serving its last listing from the sidecar; reads of data not in the cache fail until it answers, and the refresh (--refresh-interval, tapefs refresh) lists it again",
			"store", st.Redacted, "objects", offlineObjects, "err", offline)
		close(first.indexed)
	} else {
		stopIndexing, err := c.reconcileFirst(ctx, log, rp, st, ix, first)
		if err != nil {
			return err
		}
		// Before the sidecar closes (defers run last first).
		defer stopIndexing()
	}

	// From the mount on, SIGINT and SIGTERM mean "upload and unmount":
	// one that came while the mount starts (before run) would otherwise
	// kill the daemon with its mount still there, and a thread of it
	// inside its own mount (go-fuse's start-up probe) never returns.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	opts := tree.MountOptions(c.AttrTimeout, c.AttrTimeout, c.AllowOther)
	server, err := mountWithIdleProcs(c.Mountpoint, tree.Root(), opts)
	if err != nil {
		return fmt.Errorf("cannot mount on %s: %w", c.Mountpoint, err)
	}
	if err := server.WaitMount(); err != nil {
		server.Unmount()
		return fmt.Errorf("mount on %s does not answer: %w", c.Mountpoint, err)
	}
	tree.Serving(c.Mountpoint)
	d := &daemon{cmd: c, log: log, store: st, tree: tree, ix: ix, sc: sc, bucket: bucket, tier: tr, chunks: chunks, server: server, kick: kick, done: make(chan struct{}), served: make(chan struct{}),
		first: first}
	go func() { server.Wait(); close(d.served) }()
	if err := d.listen(); err != nil {
		server.Unmount()
		return err
	}
	defer d.removeInfo()
	log.Info("mounted", "mountpoint", c.Mountpoint, "store", st.Redacted, "sidecar", st.Meta)
	rp.ready(nil)
	return d.run(sigs)
}

// reconcileFirst brings the sidecar in line with the store before the mount
// serves: it returns once the listing is in the sidecar, and the new and
// changed tapes go on being read and indexed in the background, until
// indexed is closed. The first mount of a large store thus waits for one
// listing, not for every tape to be read (about 1,000 a second from S3);
// the views, xattrs and queries wait for the indexing instead (see
// fsnode.Options.Indexed and awaitMountIndex). stop cancels the indexing
// and waits for it to end.
func (c *MountCmd) reconcileFirst(ctx context.Context, log *slog.Logger, rp *readyPipe, st storeStack,
	ix *indexer.Indexer, first *firstIndex) (stop func(), err error) {
	start := time.Now()
	stopProgress := c.showStartup(rp, &first.done, &first.total)
	ctx, cancel := context.WithCancel(ctx)
	atListing, failed, ended := make(chan indexer.Result, 1), make(chan error, 1), make(chan struct{})
	go func() {
		defer close(ended)
		defer close(first.indexed)
		listed := false // the hook runs in this goroutine
		res, err := ix.ReconcileListed(ctx, func(r indexer.Result) {
			// From here on: tapes read, of tapes to read.
			first.done.Store(0)
			first.total.Store(0)
			listed = true
			atListing <- r
		})
		switch {
		case !listed:
			failed <- err // the mount does not start
		case err == nil:
			log.Info("index reconciled", "store", st.Redacted, "took", time.Since(start).Round(time.Millisecond), "listed", res.Listed, "added", res.Added, "changed", res.Changed, "removed", res.Removed, "tapes_indexed", res.TapesIndexed, "invalid", res.InvalidTapes, "skipped", res.Skipped)
		case ctx.Err() == nil:
			// The views and queries then answer from the tapes indexed
			// so far; tapefs status shows the failure until a refresh
			// (which indexes what is missing) succeeds.
			msg := err.Error()
			first.failed.Store(&msg)
			log.Error("indexing the store's tapes failed; tapefs refresh (or the next periodic one) indexes the rest", "store", st.Redacted, "err", err)
		}
	}()
	select {
	case res := <-atListing:
		stopProgress()
		log.Info("store listed; indexing its tapes in the background", "store", st.Redacted, "took", time.Since(start).Round(time.Millisecond),
			"listed", res.Listed, "added", res.Added, "changed", res.Changed, "removed", res.Removed)
		return func() { first.ending.Store(true); cancel(); <-ended }, nil
	case err := <-failed:
		stopProgress()
		cancel()
		return nil, fmt.Errorf("cannot list the store %s: %w", st.Redacted, err)
	}
}

// firstIndex is the first indexing of a mount's store: running in the
// background from the end of the listing until indexed is closed.
type firstIndex struct {
	indexed     chan struct{}
	done, total atomic.Int64           // tapes read, of tapes to read (while listing: keys listed, 0)
	failed      atomic.Pointer[string] // why it ended before every tape was indexed
	ending      atomic.Bool            // the mount is ending: cancelled, not done
}

func newFirstIndex() *firstIndex { return &firstIndex{indexed: make(chan struct{})} }

// running says whether the indexing is still going on.
func (f *firstIndex) running() bool {
	select {
	case <-f.indexed:
		return false
	default:
		return true
	}
}

// hasData says whether path is a file with something in it.
func hasData(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Size() > 0
}

// openCache opens the read cache, or returns nil when it is off.
func (c *MountCmd) openCache(st storeStack) (*cache.Disk, error) {
	local := strings.HasPrefix(st.URL, "file:") || strings.HasPrefix(st.URL, "mem:")
	if c.CacheMaxSize <= 0 || (local && c.CacheDir == "") {
		return nil, nil
	}
	dir := c.CacheDir
	if dir == "" {
		dir = filepath.Join(cacheDir(), shortHash(st.URL))
	}
	return cache.Open(dir, int64(c.CacheMaxSize), int64(c.CacheMinFree))
}

// openSidecar opens the sidecar; a corrupt one is moved aside and rebuilt
// from the store (it is only a cache).
func openSidecar(path string, log *slog.Logger) (*meta.Sidecar, error) {
	sc, err := meta.Open(path)
	if errors.Is(err, meta.ErrCorrupt) {
		aside, merr := meta.MoveAside(path)
		if merr != nil {
			return nil, fmt.Errorf("sidecar %s is corrupt and could not be moved aside: %v", path, merr)
		}
		log.Warn("sidecar was corrupt; moved aside and rebuilding from the store", "sidecar", path, "moved_to", aside)
		sc, err = meta.Open(path)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open the sidecar %s: %w", path, err)
	}
	return sc, nil
}

// daemon is a running mount.
type daemon struct {
	cmd    *MountCmd
	log    *slog.Logger
	store  storeStack
	tree   *fsnode.FS
	ix     *indexer.Indexer
	sc     *meta.Sidecar
	bucket *blob.Bucket
	tier   *tier.Tier  // the tier of several stores, or nil
	chunks *cache.Disk // the read cache, or nil
	server *fuse.Server
	ln     net.Listener
	kick   <-chan struct{} // a read found an object replaced: refresh now

	first    *firstIndex
	infoMu   sync.Mutex // writes of the mount info
	infoGone bool       // removed: not to be written again

	refreshMu   sync.Mutex // one refresh at a time
	stateMu     sync.Mutex // what the last one did, for status (which does not wait for a refresh)
	lastRefresh time.Time
	lastErr     string

	stopMu   sync.Mutex
	stopping bool
	detached bool // by a lazy unmount: files opened before it still work
	done     chan struct{}
	served   chan struct{} // closed when the serve loops have ended

	finishOnce sync.Once
}

func (d *daemon) listen() error {
	sock := socketPath(d.cmd.Mountpoint)
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("cannot create the control socket %s: %w", sock, err)
	}
	os.Chmod(sock, 0o600)
	d.ln = ln
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", d.handleStatus)
	mux.HandleFunc("POST /unmount", d.handleUnmount)
	mux.HandleFunc("POST /refresh", d.handleRefresh)
	go http.Serve(ln, mux)
	started := time.Now().UTC()
	if err := d.writeInfo(started); err != nil {
		return err
	}
	// Queries wait while the info says indexing (awaitMountIndex), so it
	// must come to say otherwise: the indexing may have ended since the
	// write above, and a failed write is tried again.
	go func() {
		select {
		case <-d.first.indexed:
		case <-d.done:
			return
		}
		for {
			err := d.writeInfo(started)
			if err == nil {
				return
			}
			d.log.Warn("cannot update the mount info; trying again", "path", infoPath(d.cmd.Mountpoint), "err", err)
			select {
			case <-time.After(time.Second):
			case <-d.done:
				return
			}
		}
	}()
	return nil
}

// writeInfo leaves the mount's info in the run directory (see mountInfo).
func (d *daemon) writeInfo(started time.Time) error {
	d.infoMu.Lock()
	defer d.infoMu.Unlock()
	if d.infoGone {
		return nil
	}
	return writeMountInfo(mountInfo{Mountpoint: d.cmd.Mountpoint, PID: os.Getpid(), Backend: d.store.Redacted,
		Meta: d.store.Meta, Socket: socketPath(d.cmd.Mountpoint), Log: os.Getenv("TAPEFS_LOG_FILE"), Started: started,
		Indexing: d.first.running()})
}

// removeInfo removes the mount's info and control socket, for good.
func (d *daemon) removeInfo() {
	d.infoMu.Lock()
	defer d.infoMu.Unlock()
	d.infoGone = true
	removeMountInfo(d.cmd.Mountpoint)
}

// run waits for a signal on sigs, an unmount request or an outside umount.
func (d *daemon) run(sigs <-chan os.Signal) error {
	waited := d.served
	var tick <-chan time.Time
	if d.cmd.RefreshInterval > 0 {
		t := time.NewTicker(d.cmd.RefreshInterval)
		defer t.Stop()
		tick = t.C
	}
	retry := time.NewTicker(15 * time.Second)
	defer retry.Stop()
	var kicked <-chan time.Time // the refresh a read asked for, when it is due
	var lastKicked time.Time
	for {
		select {
		case s := <-sigs:
			d.log.Info("signal received; uploading pending writes and unmounting", "signal", s.String())
			if err := d.shutdown(false); err != nil {
				d.log.Error("unmount failed; still serving", "err", err)
				continue
			}
			d.ln.Close()
			d.serveDetached(waited, sigs)
			return nil
		case <-d.done:
			d.serveDetached(waited, sigs)
			return nil
		case <-waited:
			if d.isStopping() {
				<-d.done
				d.serveDetached(waited, sigs)
				return nil
			}
			// Unmounted from outside (umount): keep what is staged safe.
			if err := d.tree.FlushAll(); err != nil {
				d.log.Error("pending uploads failed at unmount; the staged data stays and is uploaded at the next mount", "err", err)
			}
			d.ln.Close()
			return nil
		case <-tick:
			// A refresh would wait for the first indexing to end, and
			// the signals with it; that indexing reads the store anyway.
			if !d.first.running() {
				d.refresh()
			}
		case <-d.kick:
			if kicked == nil {
				kicked = time.After(time.Until(lastKicked.Add(time.Second)))
			}
		case <-kicked:
			if d.first.running() {
				kicked = time.After(time.Second) // once it has ended
				continue
			}
			kicked, lastKicked = nil, time.Now()
			d.refresh()
		case <-retry.C:
			if err := d.tree.RetryFailed(); err != nil {
				d.log.Warn("upload retry failed", "err", err)
			}
		}
	}
}

// shutdown uploads pending writes, then unmounts. The caller closes done
// once it has answered whoever asked.
func (d *daemon) shutdown(lazy bool) error {
	d.stopMu.Lock()
	defer d.stopMu.Unlock()
	if d.stopping {
		return nil
	}
	if err := d.tree.FlushAll(); err != nil {
		d.log.Error("pending uploads failed; the staged data stays and is uploaded at the next mount", "err", err)
	}
	if err := unmountNow(d.cmd.Mountpoint, lazy); err != nil {
		return err
	}
	d.stopping, d.detached = true, lazy
	return nil
}

// serveDetached, after a lazy unmount, serves the files still open until
// the last of them is closed (the kernel then ends the connection), and
// uploads what was written to them; a signal ends it early. After any
// other unmount it waits (bounded) for the serve loops to end, as go-fuse's
// Server.Unmount does, so no request is still running when the sidecar
// and the store close.
func (d *daemon) serveDetached(waited <-chan struct{}, sigs <-chan os.Signal) {
	d.stopMu.Lock()
	detached := d.detached
	d.stopMu.Unlock()
	if !detached {
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			d.log.Warn("requests still running 10 s after the unmount; exiting", "mountpoint", d.cmd.Mountpoint)
		}
		return
	}
	d.removeInfo()
	select {
	case <-waited:
	default:
		d.log.Info("detached by a lazy unmount; serving the files still open until they are closed", "mountpoint", d.cmd.Mountpoint)
		select {
		case <-waited:
		case s := <-sigs:
			d.log.Info("signal received while files of a lazy unmount are open; they stop working", "signal", s.String())
		}
	}
	if err := d.tree.FlushAll(); err != nil {
		d.log.Error("pending uploads failed; the staged data stays and is uploaded at the next mount", "err", err)
	}
}

// unmountNow unmounts mp, or with lazy detaches it, unless (not lazy)
// something in it is open: that is refused with what to do, not go-fuse's
// fallback to fusermount (whose own error, or its absence, would hide the
// cause). Not root, it unmounts with fusermount. The serve loop ends when
// the kernel lets the mount go.
func unmountNow(mp string, lazy bool) error {
	flags := 0
	if lazy {
		flags = syscall.MNT_DETACH
	}
	var err error
	// The kernel can see a close a moment after the program made it.
	for delay := 5 * time.Millisecond; ; delay *= 2 {
		err = syscall.Unmount(mp, flags)
		if errors.Is(err, syscall.EPERM) {
			err = fusermountUnmount(mp, lazy)
		} else if err != nil && !errors.Is(err, syscall.EBUSY) {
			err = fmt.Errorf("the kernel refused the unmount: %w", err)
		}
		if err == nil || !errors.Is(err, syscall.EBUSY) || delay > 320*time.Millisecond {
			break
		}
		time.Sleep(delay)
	}
	if errors.Is(err, syscall.EBUSY) {
		return fmt.Errorf("it is busy: a file or directory in it is open or is a process's working directory (`fuser -vm %s` names them); close them and try again, or use --lazy", mp)
	}
	return err
}

// fusermountUnmount unmounts mp as a user who is not root can: with
// fusermount3 (fuse3) or fusermount (fuse 2), setuid helpers that unmount
// the user's own FUSE mounts. It returns syscall.EBUSY when mp is busy.
func fusermountUnmount(mp string, lazy bool) error {
	tool := ""
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			tool = p
			break
		}
	}
	if tool == "" {
		return fmt.Errorf("only root may unmount it with umount(2), and neither fusermount3 nor fusermount is installed to do it for this user (install fuse3, or unmount as root)")
	}
	args := []string{"-u"}
	if lazy {
		args = append(args, "-z")
	}
	out, err := exec.Command(tool, append(args, mp)...).CombinedOutput()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(string(out))
	if strings.Contains(strings.ReplaceAll(msg, mp, ""), "resource busy") {
		return syscall.EBUSY
	}
	if msg == "" {
		msg = err.Error()
	}
	return fmt.Errorf("%s %s refused: %s", filepath.Base(tool), strings.Join(args, " "), msg)
}

func (d *daemon) isStopping() bool {
	d.stopMu.Lock()
	defer d.stopMu.Unlock()
	return d.stopping
}

// finish ends the daemon's wait for an unmount, once: two unmount
// requests can both succeed (the second finds it already stopping).
func (d *daemon) finish() {
	d.finishOnce.Do(func() {
		d.ln.Close()
		close(d.done)
	})
}

func (d *daemon) refresh() (indexer.Result, error) {
	d.refreshMu.Lock()
	defer d.refreshMu.Unlock()
	res, err := d.ix.Reconcile(context.Background())
	if !d.store.tiered() {
		err = backend.Explain(d.store.URL, err)
	}
	d.stateMu.Lock()
	d.lastRefresh, d.lastErr = time.Now().UTC(), ""
	if err != nil {
		d.lastErr = err.Error()
	} else {
		d.first.failed.Store(nil) // what it left out is indexed now
	}
	d.stateMu.Unlock()
	if err != nil {
		d.log.Warn("refresh failed", "store", d.store.Redacted, "err", err)
		return res, err
	}
	keys := make([]string, 0, len(res.Changes))
	for _, ch := range res.Changes {
		keys = append(keys, ch.Key)
	}
	d.tree.Invalidate(keys)
	return res, nil
}

func (d *daemon) handleStatus(w http.ResponseWriter, r *http.Request) {
	st, _ := d.sc.Stats(r.Context())
	d.stateMu.Lock()
	lr, le := d.lastRefresh, d.lastErr
	d.stateMu.Unlock()
	rep := statusReport{
		mountInfo: mountInfo{Mountpoint: d.cmd.Mountpoint, PID: os.Getpid(), Backend: d.store.Redacted, Meta: d.store.Meta,
			Socket: socketPath(d.cmd.Mountpoint), Log: os.Getenv("TAPEFS_LOG_FILE")},
		Store: d.tree.Stats().Snapshot(), Pending: d.tree.Pending(), Index: st, LastRefresh: lr, RefreshErr: le,
	}
	if d.first.running() {
		rep.Indexing = &indexProgress{Read: d.first.done.Load(), Total: d.first.total.Load()}
	}
	if f := d.first.failed.Load(); f != nil {
		rep.IndexErr = *f
	}
	if rep.Pending == nil {
		rep.Pending = []fsnode.PendingUpload{}
	}
	if d.chunks != nil {
		cs := d.chunks.Stats()
		rep.Cache = &cs
	}
	if d.tier != nil {
		for _, p := range d.tier.Status() {
			rep.Profiles = append(rep.Profiles, profileStatus{Name: p.Name, Origin: p.Origin, Reachable: p.Reachable,
				LatencyMS: float64(p.Latency.Microseconds()) / 1000, PendingWriteBacks: p.PendingWriteBacks,
				DroppedWriteBacks: p.DroppedWriteBacks, PendingRepairs: p.PendingRepairs, LastError: p.LastError})
		}
	}
	writeJSON(w, http.StatusOK, rep)
}

func (d *daemon) handleUnmount(w http.ResponseWriter, r *http.Request) {
	lazy := r.URL.Query().Get("lazy") == "1"
	if err := d.shutdown(lazy); err != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": err.Error()})
		return
	}
	ans := unmountAnswer{Unmounted: d.cmd.Mountpoint}
	if lazy {
		// With nothing open the kernel ends the connection at once; say
		// whether it did, so that the command waits for the daemon to
		// exit (and free the sidecar) only then.
		select {
		case <-d.served:
		case <-time.After(time.Second):
			ans.StillOpen = true
		}
	}
	writeJSON(w, http.StatusOK, ans)
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
	d.finish()
}

// unmountAnswer is the daemon's answer to an unmount request.
type unmountAnswer struct {
	Unmounted string `json:"unmounted"`
	// StillOpen: after a lazy unmount the kernel still holds the mount a
	// second later (open files, a working directory, a call in progress);
	// the daemon serves them until the kernel lets go, then exits.
	StillOpen bool `json:"still_open,omitempty"`
}

func (d *daemon) handleRefresh(w http.ResponseWriter, r *http.Request) {
	// A refresh waits for the first indexing, which lists and indexes the
	// store anyway; the unmount that ends that indexing ends this too.
	select {
	case <-d.first.indexed:
	case <-r.Context().Done():
		return
	}
	if d.isStopping() || d.first.ending.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the mount is being unmounted"})
		return
	}
	res, err := d.refresh()
	if err != nil {
		writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// serveMetrics serves reg at http://addr/metrics until stop is called.
func serveMetrics(addr string, reg *prometheus.Registry, log *slog.Logger) (stop func(), err error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w (give a free HOST:PORT such as 127.0.0.1:9464)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "addr", addr, "err", err)
		}
	}()
	log.Info("serving metrics", "url", "http://"+l.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil
}
