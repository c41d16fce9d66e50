package engine_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
	"github.com/deltadisk/deltadisk/internal/meta/metatest"
)

// testEnv is an engine over a bolt file in a temp dir and an in-memory
// pack backend, each behind an operation counter.
type testEnv struct {
	e       *engine.Engine
	meta    meta.Store
	counted *metatest.CountingStore
	backend *chunkstest.CountingBackend
	store   *chunks.Store
	dir     string
	now     time.Time
}

// fataler is what the helpers need of *testing.T, *testing.B and *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
}

func openBolt(t testing.TB, dir string) *bolt.Store {
	t.Helper()
	cfg := bolt.DefaultConfig()
	cfg.Path = filepath.Join(dir, "meta.db")
	s, err := bolt.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvOn(t, t.TempDir(), chunkstest.NewMem())
}

func newEnvOn(t testing.TB, dir string, backend chunks.Backend) *testEnv {
	t.Helper()
	return newEnvWrapped(t, dir, backend, func(s meta.Store) meta.Store { return metatest.Wrap(t, s) })
}

// newPlainEnv is newEnv on the plain store whatever DELTADISK_META_WRAP
// says, for tests that count the transactions an operation commits.
func newPlainEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvWrapped(t, t.TempDir(), chunkstest.NewMem(), func(s meta.Store) meta.Store { return s })
}

// newJournalEnv is newEnv with write-back journals in dir/journal.
func newJournalEnv(t testing.TB) *testEnv {
	t.Helper()
	dir := t.TempDir()
	return newEnvConfigured(t, dir, chunkstest.NewMem(), func(s meta.Store) meta.Store { return metatest.Wrap(t, s) },
		func(c *engine.Config) { c.JournalDir = filepath.Join(dir, "journal") })
}

func newEnvWrapped(t testing.TB, dir string, backend chunks.Backend, wrap func(meta.Store) meta.Store) *testEnv {
	t.Helper()
	return newEnvConfigured(t, dir, backend, wrap, func(*engine.Config) {})
}

func newEnvConfigured(t testing.TB, dir string, backend chunks.Backend, wrap func(meta.Store) meta.Store, configure func(*engine.Config)) *testEnv {
	t.Helper()
	env := &testEnv{dir: dir, backend: chunkstest.Counting(backend), now: time.Unix(1_800_000_000, 0)}
	b := openBolt(t, dir)
	t.Cleanup(func() { b.Close() })
	env.counted = metatest.Counting(b)
	env.meta = wrap(env.counted)
	cfg := chunks.DefaultConfig()
	cfg.Backend = env.backend
	cfg.Compress = true
	cfg.Now = func() time.Time { return env.now }
	store, err := chunks.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env.store = store
	ecfg := engine.DefaultConfig()
	ecfg.Meta = env.meta
	ecfg.Zones = []engine.Zone{{Name: "z1", Store: store}}
	ecfg.Now = func() time.Time { return env.now }
	configure(&ecfg)
	e, err := engine.Open(context.Background(), ecfg)
	if err != nil {
		t.Fatal(err)
	}
	env.e = e
	return env
}

func must[T any](t fataler) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func read(t fataler, e *engine.Engine, id engine.ID, size int64) []byte {
	t.Helper()
	p := make([]byte, size)
	if err := e.ReadAt(context.Background(), id, p, 0); err != nil {
		t.Fatalf("ReadAt(%d): %v", id, err)
	}
	return p
}

func exportRaw(t fataler, e *engine.Engine, id engine.ID) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := e.Export(context.Background(), id, &buf, engine.ExportOptions{}); err != nil {
		t.Fatalf("Export(%d): %v", id, err)
	}
	return buf.Bytes()
}

func checkClean(t fataler, e *engine.Engine, readData bool) {
	t.Helper()
	rep, err := e.Check(context.Background(), engine.CheckOptions{ReadData: readData})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if err := rep.Err(); err != nil {
		t.Fatalf("Check: %v", err)
	}
}
