package agent

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Cursor is a position on the stream of every VM's events, in one of two
// forms. <epoch>-<n> is the host-wide one the stream's ids carry: the n-th
// publication of the agent's run named epoch. id:seq[,id:seq...] names the
// last sequence a reader has of each VM, as a database of the events holds
// it; it survives agent restarts, and VMs it does not name are replayed
// from their first entry.
type Cursor struct {
	Epoch string
	N     uint64
	Seqs  map[string]uint64 // the per-VM form; nil for the host-wide one
}

// maxCursorVMs bounds a per-VM cursor, far above any host's VMs.
const maxCursorVMs = 10000

func (c Cursor) String() string {
	if c.Seqs == nil {
		return c.Epoch + "-" + strconv.FormatUint(c.N, 10)
	}
	parts := make([]string, 0, len(c.Seqs))
	for _, id := range slices.Sorted(maps.Keys(c.Seqs)) {
		parts = append(parts, id+":"+strconv.FormatUint(c.Seqs[id], 10))
	}
	return strings.Join(parts, ",")
}

// ParseCursor reads a cursor from a request; errors name the field after.
func ParseCursor(s string) (Cursor, error) {
	if strings.Contains(s, ":") {
		return parseSeqs(s)
	}
	i := strings.LastIndexByte(s, '-')
	if i <= 0 || !isEpoch(s[:i]) {
		return Cursor{}, errdefs.Invalid("after", "%q is not a cursor: want <epoch>-<n> from the stream's ids, or id:seq,...", s)
	}
	n, err := strconv.ParseUint(s[i+1:], 10, 64)
	if err != nil {
		return Cursor{}, errdefs.Invalid("after", "%q is not a cursor: its position is not a number", s)
	}
	return Cursor{Epoch: s[:i], N: n}, nil
}

func parseSeqs(s string) (Cursor, error) {
	parts := strings.Split(s, ",")
	if len(parts) > maxCursorVMs {
		return Cursor{}, errdefs.Invalid("after", "names %d VMs, more than %d", len(parts), maxCursorVMs)
	}
	c := Cursor{Seqs: make(map[string]uint64, len(parts))}
	for _, p := range parts {
		id, seq, _ := strings.Cut(p, ":")
		if !vmspec.ValidID(id) {
			return Cursor{}, errdefs.Invalid("after", "%q is not a VM id", id)
		}
		if _, dup := c.Seqs[id]; dup {
			return Cursor{}, errdefs.Invalid("after", "names VM %s twice", id)
		}
		n, err := strconv.ParseUint(seq, 10, 64)
		if err != nil {
			return Cursor{}, errdefs.Invalid("after", "VM %s: %q is not a sequence number", id, seq)
		}
		c.Seqs[id] = n
	}
	return c, nil
}

// isEpoch: an agent run's name is a base-36 start time.
func isEpoch(s string) bool {
	if len(s) > 13 {
		return false
	}
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'z') {
			return false
		}
	}
	return true
}
