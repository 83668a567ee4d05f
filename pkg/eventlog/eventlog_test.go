package eventlog

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
)

const vm = "0f8fad5b-d9cb-469f-a165-70867728950e"

func open(t *testing.T, path string) *Log {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l, err := Open(ctx, path, vm)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestSeqSurvivesReopen(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	for i := 0; i < 3; i++ {
		if _, err := l.Append(api.Event{Type: api.EventStatus, Status: api.StatusRunning}); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	l = open(t, p)
	defer l.Close()
	e, err := l.Append(api.Event{Type: api.EventStatus, Status: api.StatusOff})
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != 4 || e.VMID != vm || e.Time.IsZero() {
		t.Fatalf("appended %+v", e)
	}
	got, _ := ReadFile(p, 2)
	if len(got) != 2 || got[0].Seq != 3 || got[1].Status != api.StatusOff {
		t.Fatalf("ReadFile after 2 = %+v", got)
	}
}

func TestSecondWriterWaitsForLock(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Open(ctx, p, vm); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	l.Close()
	open(t, p).Close()
}

func TestTornTailIsIgnoredAndRepaired(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	mustAppend(t, l, api.Event{Type: api.EventStatus, Status: api.StatusRunning})
	l.Close()
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"seq":2,"type":"sta`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got, _ := ReadFile(p, 0); len(got) != 1 {
		t.Fatalf("torn line read as an event: %+v", got)
	}
	l = open(t, p)
	defer l.Close()
	e, _ := l.Append(api.Event{Type: api.EventStatus, Status: api.StatusOff})
	if got, _ := ReadFile(p, 0); len(got) != 2 || e.Seq != 2 {
		t.Fatalf("after repair: %+v (appended seq %d)", got, e.Seq)
	}
}

// A log cut inside its last line under a running writer: the next entry
// must land on a line of its own, not glued to the torn one.
func TestCutUnderWriterKeepsNextEntry(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	defer l.Close()
	mustAppend(t, l, api.Event{Type: api.EventStatus, Status: api.StatusRunning})
	mustAppend(t, l, api.Event{Type: api.EventStatus, Status: api.StatusSuspended})
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, st.Size()-10); err != nil {
		t.Fatal(err)
	}
	e, err := l.Append(api.Event{Type: api.EventStatus, Status: api.StatusOff})
	if err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Seq != 1 || got[1].Seq != e.Seq || got[1].Status != api.StatusOff {
		t.Fatalf("after a cut under the writer: %+v", got)
	}
	if e, _ := l.Append(api.Event{Type: api.EventProgress}); e.Seq != 4 {
		t.Fatalf("seq after the cut = %d", e.Seq)
	}
	if got, _ := ReadFile(p, 0); len(got) != 3 {
		t.Fatalf("entries after the cut: %+v", got)
	}
}

// A whole entry glued onto a torn line (written by a writer that did not
// check its tail) is read, and so is everything after it.
func TestReaderSalvagesEntryGluedToTornLine(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	log := `{"seq":1,"type":"status","status":"running"}` + "\n" +
		`{"seq":2,"type":"sta` + `{"seq":3,"type":"status","status":"off","message":"{\"seq\":9}"}` + "\n" +
		`{"seq":4,"type":"progress"}` + "\n"
	if err := os.WriteFile(p, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[1].Seq != 3 || got[1].Status != api.StatusOff || got[2].Seq != 4 {
		t.Fatalf("glued entry not salvaged: %+v", got)
	}
}

func TestSubscribeHasNoGap(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	defer l.Close()
	mustAppend(t, l, api.Event{Type: api.EventProgress, Message: "one"})
	mustAppend(t, l, api.Event{Type: api.EventProgress, Message: "two"})
	backlog, sub, err := l.Subscribe(1)
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, api.Event{Type: api.EventProgress, Message: "three"})
	if len(backlog) != 1 || backlog[0].Message != "two" {
		t.Fatalf("backlog = %+v", backlog)
	}
	if e := <-sub.C(); e.Seq != 3 || e.Message != "three" {
		t.Fatalf("live = %+v", e)
	}
	sub.Cancel()
	if _, ok := <-sub.C(); ok {
		t.Fatal("channel open after Cancel")
	}
}

func TestSlowSubscriberIsDroppedNotBlocking(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	defer l.Close()
	_, sub, _ := l.Subscribe(0)
	for i := 0; i < subBuffer+10; i++ {
		if _, err := l.Append(api.Event{Type: api.EventProgress}); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for range sub.C() {
		n++
	}
	if n != subBuffer {
		t.Fatalf("slow subscriber got %d events before being cut, want %d", n, subBuffer)
	}
}

func TestCompactionKeepsNewestAndSeq(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	defer func(b int64, k int) { maxBytes, keepEntries = b, k }(maxBytes, keepEntries)
	maxBytes, keepEntries = 8<<10, 20
	l := open(t, p)
	defer l.Close()
	msg := strings.Repeat("x", 100)
	var last api.Event
	for i := 0; i < 120; i++ {
		var err error
		if last, err = l.Append(api.Event{Type: api.EventProgress, Message: msg}); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := os.Stat(p)
	if st.Size() > maxBytes {
		t.Fatalf("file is %d bytes after compaction", st.Size())
	}
	got, _ := ReadFile(p, 0)
	if got[len(got)-1].Seq != last.Seq || last.Seq != 120 {
		t.Fatalf("newest entry lost: last=%d file-last=%d", last.Seq, got[len(got)-1].Seq)
	}
	if e, _ := l.Append(api.Event{Type: api.EventProgress}); e.Seq != 121 {
		t.Fatalf("seq after compaction = %d", e.Seq)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"seq":1,"type":"status","status":"running"}` + "\n" + `{"seq":2}` + "\n"))
	f.Add([]byte("garbage\n{\"seq\":5}\n{\"seq\":3}\n{\"seq\""))
	f.Add([]byte(`{"seq":1}` + "\n" + `{"seq":2,"ty{"seq":3,"type":"status"}` + "\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		events, n, err := decodeAll(strings.NewReader(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		if n > int64(len(b)) {
			t.Fatalf("covered %d of %d bytes", n, len(b))
		}
		for i := 1; i < len(events); i++ {
			if events[i].Seq <= events[i-1].Seq {
				t.Fatalf("seq not increasing: %d then %d", events[i-1].Seq, events[i].Seq)
			}
		}
	})
}

// A failed append leaves no part of its line behind: the next entry must
// start on a line of its own, or readers would skip it.
func TestFailedAppendIsCutBack(t *testing.T) {
	p := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, p)
	defer l.Close()
	if _, err := l.Append(api.Event{Type: api.EventProgress, Message: "one"}); err != nil {
		t.Fatal(err)
	}
	// What a short write leaves: the start of a line, no newline.
	if _, err := l.f.Write([]byte(`{"seq":2,"type":"prog`)); err != nil {
		t.Fatal(err)
	}
	failure := errors.New("short write")
	if err := l.undoLocked(failure); !errors.Is(err, failure) {
		t.Fatalf("undo = %v", err)
	}
	e, err := l.Append(api.Event{Type: api.EventProgress, Message: "two"})
	if err != nil || e.Seq != 2 {
		t.Fatalf("append after the failure: %+v, %v", e, err)
	}
	if got, _ := ReadFile(p, 0); len(got) != 2 || got[1].Message != "two" {
		t.Fatalf("log after the failure: %+v", got)
	}
}

func mustAppend(t *testing.T, l *Log, e api.Event) {
	t.Helper()
	if _, err := l.Append(e); err != nil {
		t.Fatal(err)
	}
}

// A file that lost entries under its writer (emptied, removed, or cut
// before its last status) makes a reader that subscribes get the last
// status again from the writer, as a new entry the file holds too; an
// intact file restates nothing.
func TestLostEntriesAreRestated(t *testing.T) {
	for _, tc := range []struct {
		name string
		lose func(path string) error
	}{
		{"emptied", func(p string) error { return os.Truncate(p, 0) }},
		{"removed", os.Remove},
		{"cut before its last status", func(p string) error {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			first := strings.Index(string(b), "\n") + 1
			return os.WriteFile(p, b[:first], 0o600)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "events.jsonl")
			l := open(t, p)
			defer l.Close()
			mustAppend(t, l, api.Event{Type: api.EventProgress, Message: "starting"})
			mustAppend(t, l, api.Event{Type: api.EventStatus, Status: api.StatusRunning, Reason: api.ReasonBooted, QEMUPID: 42})
			mustAppend(t, l, api.Event{Type: api.EventProgress, Message: "after"})
			intact, sub, err := l.Subscribe(1)
			if err != nil || len(intact) != 2 {
				t.Fatalf("an intact log after 1: %+v, %v", intact, err)
			}
			sub.Cancel()

			if err := tc.lose(p); err != nil {
				t.Fatal(err)
			}
			backlog, sub, err := l.Subscribe(0)
			if err != nil {
				t.Fatal(err)
			}
			sub.Cancel()
			last := backlog[len(backlog)-1]
			if last.Seq != 4 || last.Status != api.StatusRunning || last.Reason != api.ReasonBooted || last.QEMUPID != 42 ||
				!strings.HasPrefix(last.Message, "restated") {
				t.Fatalf("backlog after the loss ends %+v, want running (booted) restated as #4", last)
			}
			onDisk, _ := ReadFile(p, 0)
			if n := len(onDisk); n == 0 || onDisk[n-1].Seq != 4 {
				t.Fatalf("the file holds %+v, want the restatement last", onDisk)
			}
			if e, err := l.Append(api.Event{Type: api.EventProgress}); err != nil || e.Seq != 5 {
				t.Fatalf("next entry %+v, %v; want #5", e, err)
			}
			if got, _ := ReadFile(p, 4); len(got) != 1 || got[0].Seq != 5 {
				t.Fatalf("the file after the restatement holds %+v", got)
			}
		})
	}
}
