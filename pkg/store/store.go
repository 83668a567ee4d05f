// Package store aggregates each host's VM inventory, devices, snapshots,
// status and event history into PostgreSQL (schema infinivirt) for the
// Infinibay backend, and announces every change with NOTIFY infinivirt_vm,
// payload the VM id.
//
// The host's files stay the truth: the database may be down, and the agent
// replays its event logs when it returns. So every write is idempotent, keyed
// by (vm, seq), and a replay neither changes a row nor sends a NOTIFY.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package store

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// NotifyChannel is the channel every row change is announced on.
const NotifyChannel = "infinivirt_vm"

// Options tune a Store. The zero value is usable.
type Options struct {
	// Host is the hostname recorded on the VM rows this agent writes. Default: os.Hostname().
	Host string
	// Logger receives migrations and listener reconnects. Default: discard.
	Logger *slog.Logger
	// MaxConns caps the pool. Default 4: one agent writes little, and many
	// agents share one server.
	MaxConns int32
	// OpTimeout bounds a call whose context has no deadline. Default 10 s.
	OpTimeout time.Duration
	// ReconnectDelay is the pause before Listen reconnects. Default 2 s.
	ReconnectDelay time.Duration
}

// Store is the PostgreSQL aggregate. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	opts Options
	log  *slog.Logger

	// listenPing is how long Listen waits for a notification before checking
	// the connection is still alive; tests shorten it.
	listenPing time.Duration
	// beforeCommit, when set, runs just before ApplyEvents commits (for the latency benchmark).
	beforeCommit func()
}

// Open connects, applies the embedded migrations and returns the store.
// When the server cannot be reached the error is Unavailable (IsUnavailable).
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.Host == "" {
		opts.Host, _ = os.Hostname()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxConns <= 0 {
		opts.MaxConns = 4
	}
	if opts.OpTimeout <= 0 {
		opts.OpTimeout = 10 * time.Second
	}
	if opts.ReconnectDelay <= 0 {
		opts.ReconnectDelay = 2 * time.Second
	}
	s := &Store{opts: opts, log: opts.Logger, listenPing: 30 * time.Second}

	cfg, err := parseDSN("Open", dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = opts.MaxConns
	cfg.MinConns = 0
	cfg.MaxConnLifetime = 30 * time.Minute
	cfg.MaxConnIdleTime = 5 * time.Minute
	cfg.HealthCheckPeriod = 30 * time.Second
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "infinivirt-agent"
	}
	s.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, s.wrap("Open", "", err)
	}

	ms, err := loadMigrations(embeddedMigrations)
	if err != nil {
		s.pool.Close()
		return nil, s.wrap("Open", "", err)
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.migrate(ctx, ms); err != nil {
		s.pool.Close()
		return nil, err
	}
	return s, nil
}

// CheckDSN reports, without connecting, whether Open can parse dsn: the
// same InvalidArgument error, so that a daemon refuses a bad setting when it
// starts rather than retrying it forever.
func CheckDSN(dsn string) error {
	_, err := parseDSN("CheckDSN", dsn)
	return err
}

func parseDSN(op, dsn string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's message already hides any password in the DSN.
		return nil, &Error{Op: op, Class: errdefs.Invalid("databaseUrl", "store %s: %v", op, err), Err: err}
	}
	return cfg, nil
}

// Host is the hostname this store records on rows.
func (s *Store) Host() string { return s.opts.Host }

// Ping checks the server answers.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.wrap("Ping", "", s.pool.Ping(ctx))
}

// Close closes the pool's connections. A running Listen keeps its own
// connection until its context ends.
func (s *Store) Close() { s.pool.Close() }

// bound gives ctx the default deadline when it has none.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.opts.OpTimeout)
}

// do runs one idempotent unit of work under a deadline. When it fails
// because a pooled connection had died (the server restarted since it was
// opened), it runs once more on a fresh connection: the work is idempotent,
// and the caller is spared a whole retry cycle. A failure to connect is not
// retried: the server is down, and the caller replays later.
func (s *Store) do(ctx context.Context, op, vmID string, fn func(ctx context.Context) error) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	err := fn(ctx)
	var ce *pgconn.ConnectError
	if err != nil && ctx.Err() == nil && connectionLost(err) && !errors.As(err, &ce) {
		s.log.Debug("store: retrying on a fresh connection", "OP", op, "VM_ID", vmID, "ERR", err)
		err = fn(ctx)
	}
	return s.wrap(op, vmID, err)
}

// maxTextBytes caps free text (messages, names) so one runaway log line
// cannot bloat rows or NOTIFY consumers.
const maxTextBytes = 8 << 10

// cleanText makes outside text storable: PostgreSQL text rejects NUL bytes
// and invalid UTF-8, and a replay must never fail on them. The result is
// valid UTF-8, has no NUL and is at most limit bytes, cut on a rune boundary.
func cleanText(s string, limit int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.IndexByte(s, 0) >= 0 {
		s = strings.ReplaceAll(s, "\x00", "")
	}
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}
