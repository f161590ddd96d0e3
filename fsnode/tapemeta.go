package fsnode

import (
	"bytes"
	"context"
	"encoding/json"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/tapefs/tapefs/keypath"
	"github.com/tapefs/tapefs/meta"
	"github.com/tapefs/tapefs/tape"
)

// XattrPrefix starts the names of the extended attributes a tape carries.
const XattrPrefix = "user.tape."

var (
	_ fs.NodeGetxattrer    = (*fileNode)(nil)
	_ fs.NodeListxattrer   = (*fileNode)(nil)
	_ fs.NodeSetxattrer    = (*fileNode)(nil)
	_ fs.NodeRemovexattrer = (*fileNode)(nil)
)

// tapeXattrs are a tape's indexed fields as extended attributes, in a
// fixed order; empty fields are left out.
func tapeXattrs(r meta.TapeRow) [][2]string {
	var out [][2]string
	add := func(name, v string) {
		if v != "" {
			out = append(out, [2]string{XattrPrefix + name, v})
		}
	}
	num := func(name string, v int64) { add(name, strconv.FormatInt(v, 10)) }
	at := func(name string, t time.Time) {
		if !t.IsZero() {
			add(name, t.UTC().Format(time.RFC3339Nano))
		}
	}
	add("key", r.Key)
	add("id", r.TapeID)
	add("session", r.SessionID)
	add("name", r.Name)
	add("description", r.Description)
	add("tags", strings.Join(r.Tags, ","))
	add("status", r.Status)
	add("format", string(r.Format))
	at("created_at", r.CreatedAt)
	at("updated_at", r.UpdatedAt)
	at("finalized_at", r.FinalizedAt)
	num("duration_ms", r.DurationMS)
	num("frame_count", r.FrameCount)
	num("error_count", r.ErrorCount)
	num("client_to_server", r.ClientToServer)
	num("server_to_client", r.ServerToClient)
	add("methods", strings.Join(sortedKeys(r.Methods), ","))
	add("tools", strings.Join(sortedKeys(r.Tools), ","))
	add("protocol_version", r.ProtocolVersion)
	add("client", strings.TrimSpace(r.ClientName+" "+r.ClientVersion))
	add("server", strings.TrimSpace(r.ServerName+" "+r.ServerVersion))
	add("transport", r.Transport)
	add("valid", strconv.FormatBool(r.Valid))
	add("problems", strings.Join(r.Problems, "; "))
	return out
}

func sortedKeys(m map[string]int64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// xattrs are the attributes of the node: a tape's fields, none otherwise.
func (n *fileNode) xattrs(ctx context.Context) ([][2]string, syscall.Errno) {
	key, errno := n.path()
	if errno != 0 {
		return nil, errno
	}
	row, ok, err := n.fsys.tapeRow(ctx, key)
	if err != nil {
		return nil, n.fsys.errno("getxattr", key, err)
	}
	if !ok {
		return nil, 0
	}
	return tapeXattrs(row), 0
}

// copyOut follows getxattr(2)/listxattr(2): an empty dest asks for the
// size; a short one is ERANGE.
func copyOut(dest, v []byte) (uint32, syscall.Errno) {
	if len(dest) == 0 {
		return uint32(len(v)), 0
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// otherXattr answers getxattr of a name outside user.tape.*. The store
// keeps no security labels and no ACLs, so the security. and system.
// namespaces are not supported (ENOTSUP, as on a file system without
// them) rather than empty (ENODATA): ls -l asks every file for
// security.selinux and system.posix_acl_access, one FUSE round trip each,
// and stops asking for the rest of the device after an ENOTSUP (it
// caches "unsupported" per st_dev), where ENODATA keeps it asking. Other
// names are not set (ENODATA).
func otherXattr(attr string) syscall.Errno {
	if strings.HasPrefix(attr, "security.") || strings.HasPrefix(attr, "system.") {
		return syscall.ENOTSUP
	}
	return syscall.ENODATA
}

func (n *fileNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if !strings.HasPrefix(attr, XattrPrefix) {
		return 0, otherXattr(attr) // no lock, no sidecar query
	}
	xs, errno := n.xattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	for _, x := range xs {
		if x[0] == attr {
			return copyOut(dest, []byte(x[1]))
		}
	}
	return 0, syscall.ENODATA
}

func (n *fileNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	xs, errno := n.xattrs(ctx)
	if errno != 0 {
		return 0, errno
	}
	var b bytes.Buffer
	for _, x := range xs {
		b.WriteString(x[0])
		b.WriteByte(0)
	}
	return copyOut(dest, b.Bytes())
}

// Setxattr: the attributes are the index's, derived from the tape; the
// store keeps no others.
func (n *fileNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if n.writable() != nil {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

func (n *fileNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	if n.writable() != nil {
		return syscall.EROFS
	}
	return syscall.ENOTSUP
}

// ---- the synthesized .meta.json ----

const metaSuffix = ".meta.json"

// synthInoBase keeps the inodes of synthesized companions apart.
const synthInoBase = 1 << 61

// synthesizedMeta is the .meta.json a v2 tape at dataKey would have, for a
// tape whose store has none; false when there is no such tape or it has a
// companion.
func (f *FS) synthesizedMeta(ctx context.Context, dataKey string) (meta.TapeRow, []byte, bool, error) {
	row, ok, err := f.tapeRow(ctx, dataKey)
	if err != nil || !ok || row.Format != tape.FormatV2 || row.Source.Companion.Key != "" {
		return row, nil, false, err
	}
	return row, synthMetaJSON(row), true, nil
}

// tapeRow is the index row of the tape at key. While the first indexing
// runs (Options.Indexed), a tape with no row yet is waited for; a file that
// cannot be a tape is not, so that cp -a or rsync -X, which list every
// file's xattrs, do not wait for the indexing.
func (f *FS) tapeRow(ctx context.Context, key string) (meta.TapeRow, bool, error) {
	row, ok, err := f.sc.GetTape(local(ctx), key)
	if err != nil || ok || tape.Classify(key) == tape.KindOther || !f.indexing() {
		return row, ok, err
	}
	if errno := f.awaitIndex(ctx); errno != 0 {
		return row, false, errno
	}
	return f.sc.GetTape(local(ctx), key)
}

// indexing says whether the first indexing still runs (Options.Indexed).
func (f *FS) indexing() bool {
	if f.opts.Indexed == nil {
		return false
	}
	select {
	case <-f.opts.Indexed:
		return false
	default:
		return true
	}
}

// awaitIndex waits until the store's tapes are indexed (Options.Indexed),
// or the call is interrupted (EINTR).
func (f *FS) awaitIndex(ctx context.Context) syscall.Errno {
	if f.opts.Indexed == nil {
		return 0
	}
	select {
	case <-f.opts.Indexed:
		return 0
	case <-ctx.Done():
		return syscall.EINTR
	}
}

// synthMetaJSON writes a Shadowcat v2 .meta.json from the index.
func synthMetaJSON(r meta.TapeRow) []byte {
	ts := func(t time.Time) *string {
		if t.IsZero() {
			return nil
		}
		s := t.UTC().Format(time.RFC3339Nano)
		return &s
	}
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	doc := struct {
		TapeID      string   `json:"tape_id"`
		Name        string   `json:"name"`
		Description string   `json:"description"`
		Tags        []string `json:"tags"`
		CreatedAt   *string  `json:"created_at"`
		UpdatedAt   *string  `json:"updated_at"`
		FinalizedAt *string  `json:"finalized_at"`
		Status      string   `json:"status"`
		Transport   *struct {
			Type string `json:"type"`
		} `json:"transport"`
		Stats struct {
			FrameCount    int64 `json:"frame_count"`
			DurationMS    int64 `json:"duration_ms"`
			FileSizeBytes int64 `json:"file_size_bytes"`
			ErrorCount    int64 `json:"error_count"`
		} `json:"stats"`
		Synthesized struct {
			By   string `json:"by"`
			From string `json:"from"`
		} `json:"x_synthesized"`
	}{
		TapeID: r.TapeID, Name: r.Name, Description: r.Description, Tags: tags,
		CreatedAt: ts(r.CreatedAt), UpdatedAt: ts(r.UpdatedAt), FinalizedAt: ts(r.FinalizedAt),
		Status: r.Status,
	}
	if r.Transport != "" {
		doc.Transport = &struct {
			Type string `json:"type"`
		}{r.Transport}
	}
	doc.Stats.FrameCount, doc.Stats.DurationMS = r.FrameCount, r.DurationMS
	doc.Stats.FileSizeBytes, doc.Stats.ErrorCount = r.Size, r.ErrorCount
	doc.Synthesized.By = "tapefs (the store has no .meta.json for this tape)"
	doc.Synthesized.From = keypath.Base(r.Key)
	b, _ := json.MarshalIndent(doc, "", "  ")
	return append(b, '\n')
}

// lookupSynthesized finds NAME.meta.json for a v2 tape NAME.jsonl in dir
// that has no companion in the store. The node is a fileNode at the
// companion's key: reading gives the synthesized document, and writing it
// (cp of a real .meta.json) stores a real object, which then wins. While
// files are being created in dir, none is offered (see synthQuiet), nor
// where a companion was removed through this mount (noteRemoved).
func (n *dirNode) lookupSynthesized(ctx context.Context, dir, name string, out *fuse.EntryOut) (*fs.Inode, bool) {
	if !strings.HasSuffix(name, metaSuffix) || len(name) == len(metaSuffix) || n.fsys.beingWritten(dir) {
		return nil, false
	}
	if n.fsys.wasRemoved(keypath.Join(dir, name)) {
		return nil, false
	}
	dataKey := keypath.Join(dir, strings.TrimSuffix(name, metaSuffix)+".jsonl")
	row, doc, ok, err := n.fsys.synthesizedMeta(ctx, dataKey)
	if err != nil || !ok {
		return nil, false
	}
	key := keypath.Join(dir, name)
	fn := &fileNode{fsys: n.fsys, key: key, synth: dataKey}
	ch := n.NewInode(ctx, fn, fs.StableAttr{Mode: fuse.S_IFREG, Ino: synthInoBase | uint64(row.ObjectID)})
	n.fsys.fillAttr(synthEntry(row, key, doc), &out.Attr)
	out.SetEntryTimeout(viewTimeout) // it goes when a real companion comes
	return ch, true
}

// synthEntry is the tree entry of a synthesized companion.
func synthEntry(row meta.TapeRow, key string, doc []byte) meta.Entry {
	return meta.Entry{Name: keypath.Base(key), ID: synthInoBase | row.ObjectID, Size: int64(len(doc)),
		ModTime: row.ModTime, Key: key}
}

// synthesized is the document of a synthesized node, while the store has
// no real object at its key.
func (n *fileNode) synthesized(ctx context.Context) (meta.Entry, []byte, bool) {
	key, errno := n.path()
	if errno != 0 {
		return meta.Entry{}, nil, false
	}
	return n.synthesizedAt(ctx, key)
}

// synthesizedAt is synthesized for the node at key (for callers that hold
// n.mu).
func (n *fileNode) synthesizedAt(ctx context.Context, key string) (meta.Entry, []byte, bool) {
	if n.synth == "" {
		return meta.Entry{}, nil, false
	}
	row, doc, ok, err := n.fsys.synthesizedMeta(ctx, n.synth)
	if err != nil || !ok {
		return meta.Entry{}, nil, false
	}
	return synthEntry(row, key, doc), doc, true
}
