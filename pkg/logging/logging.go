// Package logging picks the log handler for a daemon: native journald fields
// under systemd, plain text elsewhere. Attribute keys are upper case (VM_ID,
// OP, ...) because journald drops lower-case fields, and so that
// `journalctl VM_ID=<uuid>` finds a VM's lines across the agent and its shim.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package logging

import (
	"io"
	"log/slog"
	"os"
	"strings"

	slogjournal "github.com/systemd/slog-journal"
)

// Keys used across components.
const (
	KeyVM     = "VM_ID"
	KeyOp     = "OP"
	KeyStep   = "STEP"
	KeyUnit   = "UNIT"
	KeyStatus = "VM_STATUS"
	KeyReason = "VM_REASON"
)

// New returns a logger for identifier: journald when stderr is connected to
// the journal (JOURNAL_STREAM), text on w otherwise.
func New(identifier string, w io.Writer, level slog.Level) *slog.Logger {
	if underJournal() {
		h, err := slogjournal.NewHandler(&slogjournal.Options{
			Level:       level,
			ReplaceAttr: upperKeys,
		})
		if err == nil {
			return slog.New(h).With("SYSLOG_IDENTIFIER", identifier)
		}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// keySeparators become underscores: journald field names allow only A-Z, 0-9 and _.
var keySeparators = strings.NewReplacer(".", "_", "-", "_")

func upperKeys(groups []string, a slog.Attr) slog.Attr {
	a.Key = strings.ToUpper(keySeparators.Replace(a.Key))
	return a
}

// underJournal reports whether stderr is the stream systemd named in
// JOURNAL_STREAM ("<device>:<inode>").
func underJournal() bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	return sameStream(v, os.Stderr)
}
