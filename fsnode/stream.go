package fsnode

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/tapefs/tapefs/tape"
	"gocloud.dev/blob"
)

// A staged file written in order (every write at its end, as cp and shell
// redirections do) goes to the store while it is written: once it holds
// streamMin bytes, a writer to its key is opened and fed what the writes
// append, in the background, so that close waits only for the tail. The
// object appears only when that writer is closed, at the close or fsync that
// asks for the bytes; until then nothing is visible. A write anywhere else
// than the end, a truncate, a rename or an unlink aborts the streamed writer
// (its context is cancelled before Close, so no object appears) and the file
// goes up whole at close, as every file does when a streamed upload failed:
// the staged file, the journal and the retry queue are the same either way.
const (
	streamMin   = uploadPart
	streamBlock = 1 << 20 // bytes handed to the writer at a time
	// maxStreams bounds the streamed uploads of one mount at once (each
	// holds up to 5 parts in memory); a file that finds no slot goes up
	// whole at close.
	maxStreams = 2
)

// streamUpload is the upload of a staged file running while it is written.
type streamUpload struct {
	sw        *StagedWrite
	key       string
	exclusive bool
	cancel    context.CancelFunc
	w         *blob.Writer
	slots     chan struct{} // FS.streams, given back at close

	mu      sync.Mutex
	cond    *sync.Cond
	avail   int64 // the staged bytes [0, avail) are final: written in order
	sent    int64 // bytes handed to the writer
	final   bool  // avail is the whole object: send it and stop
	aborted bool
	err     error         // the first failure of the background send
	done    chan struct{} // closed when the sender returns
	closed  sync.Once
}

// maybeStream starts the streamed upload of sw when its writes so far went
// in order and it has grown to streamMin bytes.
func (f *FS) maybeStream(sw *StagedWrite) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	if sw.stream != nil || sw.outOfOrder || sw.deleted || sw.end < streamMin || !sw.dirty {
		return
	}
	select {
	case f.streams <- struct{}{}:
	default:
		return // enough uploads in flight: this one goes up at close
	}
	ctx, cancel := context.WithCancel(context.Background())
	wo := &blob.WriterOptions{IfNotExist: sw.exclusive, ContentType: tape.ContentType(sw.key),
		BufferSize: uploadPart, MaxConcurrency: uploadParallel}
	w, err := f.bucket.NewWriter(ctx, sw.key, wo)
	if err != nil {
		cancel()
		<-f.streams
		f.log.Debug("cannot start a streamed upload; the file goes up at close", "key", sw.key, "err", err)
		return
	}
	s := &streamUpload{sw: sw, key: sw.key, exclusive: sw.exclusive, cancel: cancel, w: w, slots: f.streams,
		avail: sw.end, done: make(chan struct{})}
	s.cond = sync.NewCond(&s.mu)
	sw.stream = s
	go s.run()
}

// run hands the staged bytes to the writer as they become final.
func (s *streamUpload) run() {
	defer close(s.done)
	buf := make([]byte, streamBlock)
	for {
		s.mu.Lock()
		for s.sent == s.avail && !s.final && !s.aborted {
			s.cond.Wait()
		}
		if s.aborted || s.sent == s.avail {
			s.mu.Unlock()
			return
		}
		off, n := s.sent, min(int64(len(buf)), s.avail-s.sent)
		s.mu.Unlock()
		m, err := s.sw.file.ReadAt(buf[:n], off)
		if err == nil || (err == io.EOF && int64(m) == n) {
			_, err = s.w.Write(buf[:m])
		} else if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		s.sent += int64(m)
		s.mu.Unlock()
	}
}

// grow records that the staged bytes now end at end, in order.
func (s *streamUpload) grow(end int64) {
	s.mu.Lock()
	if end > s.avail {
		s.avail = end
		s.cond.Signal()
	}
	s.mu.Unlock()
}

// abort stops the streamed upload so that no object appears: the writer's
// context is cancelled before its Close. It does not wait for the writer.
func (s *streamUpload) abort() {
	s.mu.Lock()
	s.aborted = true
	s.cond.Signal()
	s.mu.Unlock()
	s.cancel()
	go s.close()
}

// close closes the (cancelled) writer once the sender has stopped, and
// gives back the slot. It returns the writer's error.
func (s *streamUpload) close() (err error) {
	s.closed.Do(func() {
		<-s.done
		err = s.w.Close()
		s.cancel()
		<-s.slots
	})
	return err
}

// finishStream completes the streamed upload of sw, if it holds exactly the
// staged bytes for key: it sends the tail, closes the writer and records the
// object, as upload does. handled is false when there is no usable stream
// (none, aborted, failed, or the store refused it at the end): the caller
// then uploads the whole staged file, which reports or queues any error.
func (f *FS) finishStream(sw *StagedWrite, key string, exclusive bool, gen int64) (handled bool, err error) {
	sw.mu.Lock()
	s := sw.stream
	sw.stream = nil
	size := sw.end
	sw.mu.Unlock()
	if s == nil {
		return false, nil
	}
	s.mu.Lock()
	usable := !s.aborted && s.err == nil && s.key == key && s.exclusive == exclusive && s.avail == size
	s.mu.Unlock()
	if !usable {
		s.abort()
		return false, nil
	}
	if err := sw.commit(); err != nil {
		s.abort()
		return false, err
	}
	// The tail may take as long as one upload may.
	timer := time.AfterFunc(f.opts.UploadTimeout, s.cancel)
	defer timer.Stop()
	// The parse of the tape overlaps the tail (see indexer.Prepare).
	pctx, pcancel := context.WithTimeout(context.Background(), f.opts.UploadTimeout)
	defer pcancel()
	pre := f.prepareIndex(pctx, sw, key, size)
	s.mu.Lock()
	s.final = true
	s.cond.Signal()
	s.mu.Unlock()
	<-s.done
	s.mu.Lock()
	failed := s.err != nil || s.sent != size
	s.mu.Unlock()
	if failed {
		f.log.Debug("streamed upload failed; uploading the staged file whole", "key", key, "err", s.err)
		s.abort()
		return false, nil
	}
	if err := s.close(); err != nil {
		f.log.Debug("streamed upload refused at its end; uploading the staged file whole", "key", key, "err", err)
		return false, nil
	}
	f.stats.Uploads.Add(1)
	f.stats.UploadBytes.Add(size)
	sw.uploaded(gen)
	ctx, cancel := context.WithTimeout(context.Background(), f.opts.UploadTimeout)
	defer cancel()
	row, err := f.recordObject(ctx, key)
	if err != nil {
		return true, err
	}
	f.indexUploaded(ctx, sw, key, gen, pre, row)
	return true, nil
}

// uploadStaged uploads sw to key: by completing its streamed upload when it
// has a usable one, else whole.
func (f *FS) uploadStaged(sw *StagedWrite, key string, exclusive bool, gen int64) error {
	if ok, err := f.finishStream(sw, key, exclusive, gen); ok || err != nil {
		return err
	}
	return f.upload(sw, key, exclusive, gen)
}
