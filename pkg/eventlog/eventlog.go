// Package eventlog is a VM's append-only event log: JSON lines in the VM's
// state directory, one writer at a time (an flock on a sibling lock file),
// sequence numbers that grow by one and survive restarts of whoever writes.
//
// The running shim is the writer. While no shim runs, the agent and the
// shim's cleanup take the lock briefly to record what the shim could not.
// Readers never lock: appends are whole lines, and a torn last line is
// ignored until it is complete. A line cut short by someone else never
// swallows the next entry: the writer starts that entry on a line of its
// own, and readers salvage an entry glued onto a torn line.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/atomicfile"
)

// ErrLocked means another process holds the log.
var ErrLocked = errors.New("eventlog: held by another writer")

// Compaction keeps the file small: past maxBytes, the oldest entries go,
// keeping the newest keepEntries. Variables so tests can shrink them.
var (
	maxBytes    int64 = 1 << 20
	keepEntries       = 2000
)

// subBuffer is how far a subscriber may lag before it is cut off.
const subBuffer = 256

// Log is an open, locked event log.
type Log struct {
	path string
	vmID string
	lock *os.File

	mu      sync.Mutex
	f       *os.File
	size    int64
	lastSeq uint64
	// lastStatus is the newest status entry this log holds or held: what
	// a reader is told again when the file lost entries under the writer.
	lastStatus api.Event
	subs       map[*Subscription]struct{}
	closed     bool
}

// Open takes the log's lock, waiting until ctx ends if someone else holds it,
// and positions for appending after the last entry.
func Open(ctx context.Context, path, vmID string) (*Log, error) {
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	for {
		err = unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			lock.Close()
			return nil, fmt.Errorf("eventlog: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			lock.Close()
			return nil, fmt.Errorf("%w: %s: %v", ErrLocked, path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	l := &Log{path: path, vmID: vmID, lock: lock, subs: map[*Subscription]struct{}{}}
	if err := l.reopen(); err != nil {
		l.release()
		return nil, err
	}
	return l, nil
}

func (l *Log) reopen() error {
	if l.f != nil {
		l.f.Close()
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	events, size, err := decodeAll(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("eventlog: read %s: %w", l.path, err)
	}
	// Drop a torn tail left by a crash mid-write, so the next line starts clean.
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("eventlog: %w", err)
	}
	l.f, l.size = f, size
	if n := len(events); n > 0 && events[n-1].Seq > l.lastSeq {
		l.lastSeq = events[n-1].Seq
	}
	for _, e := range events {
		if e.IsStatus() && e.Seq > l.lastStatus.Seq {
			l.lastStatus = e
		}
	}
	return nil
}

// LastSeq is the sequence number of the newest entry, 0 for an empty log.
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastSeq
}

// Append stamps e with the next sequence number, the VM id and the time
// (unless set), makes it durable, and hands it to subscribers.
func (l *Log) Append(e api.Event) (api.Event, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return e, errors.New("eventlog: closed")
	}
	return l.appendLocked(e)
}

func (l *Log) appendLocked(e api.Event) (api.Event, error) {
	e.Seq = l.lastSeq + 1
	e.VMID = l.vmID
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return e, fmt.Errorf("eventlog: %w", err)
	}
	line = append(line, '\n')
	torn, err := l.tornTailLocked()
	if err != nil {
		return e, err
	}
	if torn {
		line = append([]byte{'\n'}, line...)
	}
	if _, err := l.f.Write(line); err != nil {
		return e, l.undoLocked(fmt.Errorf("eventlog: append: %w", err))
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		return e, l.undoLocked(fmt.Errorf("eventlog: sync: %w", err))
	}
	l.lastSeq = e.Seq
	if e.IsStatus() {
		l.lastStatus = e
	}
	l.size += int64(len(line))
	for s := range l.subs {
		select {
		case s.ch <- e:
		default:
			// A slow reader never stalls the VM: it loses its stream and
			// resumes from its last sequence number.
			l.dropLocked(s)
		}
	}
	if l.size > maxBytes {
		if err := l.compactLocked(); err != nil {
			return e, err
		}
	}
	return e, nil
}

// restateLocked records the last status again when the file lost entries
// the writer made (emptied, cut short, removed or replaced under it), so
// that readers learn the VM's state from the live writer rather than from
// what is left, and the file says it again.
func (l *Log) restateLocked() (api.Event, error) {
	if st, err := os.Stat(l.path); err != nil || !sameFile(st, l.f) {
		if err := l.reopen(); err != nil {
			return api.Event{}, err
		}
	}
	e := l.lastStatus
	e.Time = time.Time{}
	e.Message = "restated: the log had lost entries up to " + strconv.FormatUint(l.lastSeq, 10)
	if l.lastStatus.Message != "" {
		e.Message += "; was: " + l.lastStatus.Message
	}
	return l.appendLocked(e)
}

func sameFile(st os.FileInfo, f *os.File) bool {
	fst, err := f.Stat()
	return err == nil && os.SameFile(st, fst)
}

// tornTailLocked reports whether the file now ends inside a line. The file
// may have changed under the writer (cut short by hand or by a crashed
// tool); it then also resyncs the size an undo cuts back to.
func (l *Log) tornTailLocked() (bool, error) {
	st, err := l.f.Stat()
	if err != nil {
		return false, fmt.Errorf("eventlog: %w", err)
	}
	if st.Size() == l.size {
		return false, nil
	}
	l.size = st.Size()
	if l.size == 0 {
		return false, nil
	}
	last := make([]byte, 1)
	if _, err := l.f.ReadAt(last, l.size-1); err != nil {
		return false, fmt.Errorf("eventlog: %w", err)
	}
	return last[0] != '\n', nil
}

// undoLocked cuts the file back to its last whole entry after a failed
// append. Left in place, part of a line (a short write) would glue itself to
// the next entry and hide it from readers, and a whole line that failed to
// sync would share its seq with the next entry, which readers then skip.
func (l *Log) undoLocked(err error) error {
	if terr := l.f.Truncate(l.size); terr != nil {
		return fmt.Errorf("%w (and cutting the entry back failed: %v)", err, terr)
	}
	return err
}

func (l *Log) compactLocked() error {
	if _, err := l.f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	events, _, err := decodeAll(l.f)
	if err != nil {
		return fmt.Errorf("eventlog: compact: %w", err)
	}
	if len(events) > keepEntries {
		events = events[len(events)-keepEntries:]
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range events {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("eventlog: compact: %w", err)
		}
	}
	if err := atomicfile.Write(l.path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("eventlog: compact: %w", err)
	}
	return l.reopen()
}

// Subscription delivers entries appended after it was made.
type Subscription struct {
	ch chan api.Event
	l  *Log
}

// C is closed when the log closes or the subscriber fell behind.
func (s *Subscription) C() <-chan api.Event { return s.ch }

// Cancel ends the subscription.
func (s *Subscription) Cancel() {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.l.dropLocked(s)
}

func (l *Log) dropLocked(s *Subscription) {
	if _, ok := l.subs[s]; ok {
		delete(l.subs, s)
		close(s.ch)
	}
}

// Subscribe returns the entries after seq and a subscription for every later
// one, with no gap and no overlap between the two.
func (l *Log) Subscribe(seq uint64) ([]api.Event, *Subscription, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, nil, errors.New("eventlog: closed")
	}
	backlog, err := ReadFile(l.path, seq)
	if err != nil {
		return nil, nil, err
	}
	if n := len(backlog); seq < l.lastSeq && (n == 0 || backlog[n-1].Seq < l.lastSeq) && l.lastStatus.Seq > 0 {
		e, err := l.restateLocked()
		if err != nil {
			return nil, nil, err
		}
		backlog = append(backlog, e)
	}
	s := &Subscription{ch: make(chan api.Event, subBuffer), l: l}
	l.subs[s] = struct{}{}
	return backlog, s, nil
}

// Close ends every subscription and releases the lock.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	for s := range l.subs {
		l.dropLocked(s)
	}
	err := l.f.Close()
	l.release()
	return err
}

func (l *Log) release() {
	// Closing the lock file releases the lock even if unlocking failed.
	_ = unix.Flock(int(l.lock.Fd()), unix.LOCK_UN)
	l.lock.Close()
}

// ReadFile returns the entries of the log at path after seq, oldest first,
// without taking the lock. A missing file is an empty log.
func ReadFile(path string, seq uint64) ([]api.Event, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	defer f.Close()
	events, _, err := decodeAll(f)
	if err != nil {
		return nil, fmt.Errorf("eventlog: read %s: %w", path, err)
	}
	i := 0
	for i < len(events) && events[i].Seq <= seq {
		i++
	}
	return events[i:], nil
}

// Last returns the newest entry of the log at path that satisfies keep.
func Last(path string, keep func(api.Event) bool) (api.Event, bool, error) {
	events, err := ReadFile(path, 0)
	if err != nil {
		return api.Event{}, false, err
	}
	for i := len(events) - 1; i >= 0; i-- {
		if keep(events[i]) {
			return events[i], true, nil
		}
	}
	return api.Event{}, false, nil
}

// decodeAll parses complete lines and returns them with the byte length they
// cover. Lines that do not parse, or whose seq does not grow, are skipped:
// the log is ours, but a damaged line must not hide the ones after it, nor
// the entry an older writer glued onto its torn end.
func decodeAll(r io.Reader) ([]api.Event, int64, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var (
		events []api.Event
		off    int64
		last   uint64
	)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			off += int64(len(line))
			if e, ok := decodeLine(line, last); ok {
				events = append(events, e)
				last = e.Seq
			}
		}
		if err == io.EOF {
			return events, off, nil
		}
		if err != nil {
			return nil, 0, err
		}
	}
}

// entryStart is how every entry's line begins (Seq is Event's first field).
// Inside a JSON string a quote is escaped, so it cannot occur there.
var entryStart = []byte(`{"seq":`)

// decodeLine parses one line as an entry after seq last. A line that does
// not parse may be a torn entry with a whole one glued to its end: the
// first whole entry that starts later in the line is taken.
func decodeLine(line []byte, last uint64) (api.Event, bool) {
	for start := 0; ; {
		var e api.Event
		if json.Unmarshal(line[start:], &e) == nil {
			return e, e.Seq > last
		}
		next := bytes.Index(line[start+1:], entryStart)
		if next < 0 {
			return api.Event{}, false
		}
		start += 1 + next
	}
}
