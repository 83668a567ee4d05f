package store

import (
	"cmp"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

//go:embed migrations/*.sql
var embeddedMigrations embed.FS

// migrationLockKey serialises migrations across agents sharing a database
// ("infiniv1" as a big-endian int64).
const migrationLockKey int64 = 0x696e66696e697631

// migration is one file of migrations/, named <version>_<words>.sql.
type migration struct {
	version  int64
	name     string
	sql      string
	checksum string
}

// loadMigrations reads and orders the migration files of fsys's migrations/ folder.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	paths, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int64]string{}
	for _, p := range paths {
		name := strings.TrimSuffix(path.Base(p), ".sql")
		digits, _, ok := strings.Cut(name, "_")
		version, err := strconv.ParseInt(digits, 10, 64)
		if !ok || err != nil || version <= 0 {
			return nil, fmt.Errorf("migration %s: name must be <positive number>_<words>.sql", p)
		}
		if other, dup := seen[version]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, version)
		}
		seen[version] = name
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: version, name: name, sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	return ms, nil
}

// migrate applies the migrations not yet recorded in
// infinivirt.schema_migrations, each in its own transaction that first takes
// a transaction-scoped advisory lock, so agents that start together apply
// each file exactly once.
func (s *Store) migrate(ctx context.Context, ms []migration) error {
	for _, m := range ms {
		applied, err := applyMigration(ctx, s.pool, m)
		if err != nil {
			return s.wrap("migrate", "", err)
		}
		if applied {
			s.log.Info("store: applied migration", "MIGRATION_VERSION", m.version, "MIGRATION", m.name)
		}
	}
	var newest int64
	err := s.pool.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM infinivirt.schema_migrations`).Scan(&newest)
	if err != nil {
		return s.wrap("migrate", "", err)
	}
	if len(ms) > 0 && newest > ms[len(ms)-1].version {
		s.log.Warn("store: the database schema is newer than this build",
			"DATABASE_VERSION", newest, "BUILD_VERSION", ms[len(ms)-1].version)
	}
	return nil
}

func applyMigration(ctx context.Context, pool *pgxpool.Pool, m migration) (applied bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return err
		}
		// Create only when missing: CREATE SCHEMA IF NOT EXISTS needs the
		// CREATE privilege on the database even when the schema exists.
		var hasSchema bool
		if err := tx.QueryRow(ctx, `SELECT to_regnamespace('infinivirt') IS NOT NULL`).Scan(&hasSchema); err != nil {
			return err
		}
		if !hasSchema {
			if _, err := tx.Exec(ctx, `CREATE SCHEMA infinivirt`); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS infinivirt.schema_migrations (
			version    bigint      PRIMARY KEY,
			name       text        NOT NULL,
			checksum   text        NOT NULL,
			applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
			return err
		}
		var checksum string
		err := tx.QueryRow(ctx, `SELECT checksum FROM infinivirt.schema_migrations WHERE version = $1`, m.version).Scan(&checksum)
		switch {
		case err == nil && checksum == m.checksum:
			return nil
		case err == nil:
			return errdefs.FailedPrecondition("migration %d_%s was edited after it was applied (checksum %s, database has %s): add a new migration instead",
				m.version, m.name, m.checksum[:12], checksum[:min(12, len(checksum))])
		case !errors.Is(err, pgx.ErrNoRows):
			return err
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %d_%s: %w", m.version, m.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO infinivirt.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)`,
			m.version, m.name, m.checksum); err != nil {
			return err
		}
		applied = true
		return nil
	})
	return applied, err
}
