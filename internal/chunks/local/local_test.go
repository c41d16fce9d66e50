package local_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/chunks/local"
)

func open(t testing.TB, cfg local.Config) *local.Backend {
	t.Helper()
	b, err := local.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open(%+v) = %v", cfg, err)
	}
	return b
}

func TestBackend(t *testing.T) {
	chunkstest.Run(t, func(t *testing.T) chunks.Backend {
		return open(t, local.Config{Dir: t.TempDir()})
	})
}

// TestBackendCrashFS runs the suite on the crash-simulating file system, to
// show that it behaves like a file system where the crash tests need it to.
func TestBackendCrashFS(t *testing.T) {
	chunkstest.Run(t, func(t *testing.T) chunks.Backend {
		return open(t, local.Config{Dir: "/data", FS: newCrashFS()})
	})
}

func BenchmarkBackend(b *testing.B) {
	chunkstest.Bench(b, func(b *testing.B) chunks.Backend {
		return open(b, local.Config{Dir: b.TempDir()})
	})
}

// putThenCrash puts an object through fsys (wrapped by wrap), loses power,
// and returns an error if the object did not survive whole.
func putThenCrash(ctx context.Context, wrap func(local.FS) local.FS) error {
	c := newCrashFS()
	b, err := local.Open(ctx, local.Config{Dir: "/data", FS: wrap(c)})
	if err != nil {
		return err
	}
	data := bytes.Repeat([]byte("pack"), 1000)
	if err := b.Put(ctx, "packs/p1", data); err != nil {
		return err
	}
	after, err := local.Open(ctx, local.Config{Dir: "/data", FS: c.crash()})
	if err != nil {
		return err
	}
	p := make([]byte, len(data))
	if err := after.ReadAt(ctx, "packs/p1", p, 0); err != nil {
		return fmt.Errorf("after a crash, ReadAt(packs/p1) = %w", err)
	}
	if !bytes.Equal(p, data) {
		return errors.New("after a crash, packs/p1 holds other bytes")
	}
	return nil
}

func TestPutSurvivesCrash(t *testing.T) {
	if err := putThenCrash(t.Context(), func(fs local.FS) local.FS { return fs }); err != nil {
		t.Fatalf("Put then crash: %v", err)
	}
}

// TestCrashCatchesMissingSync shows that TestPutSurvivesCrash can fail: a
// Put that skips either fsync loses its object in the crash.
func TestCrashCatchesMissingSync(t *testing.T) {
	tests := []struct {
		name string
		wrap func(local.FS) local.FS
	}{
		{"no directory sync", func(fs local.FS) local.FS { return noDirSync{fs} }},
		{"no file sync", func(fs local.FS) local.FS { return noFileSync{fs} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := putThenCrash(t.Context(), tc.wrap); err == nil {
				t.Fatalf("Put then crash with %s: object survived, want it lost", tc.name)
			} else {
				t.Logf("caught: %v", err)
			}
		})
	}
}

type noDirSync struct{ local.FS }

func (noDirSync) SyncDir(string) error { return nil }

type noFileSync struct{ local.FS }

func (n noFileSync) CreateTemp(dir, pattern string) (local.File, error) {
	f, err := n.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return noSyncFile{f}, nil
}

type noSyncFile struct{ local.File }

func (noSyncFile) Sync() error { return nil }

// TestPutAtomicAtEveryStep crashes after each file system change a Put
// makes: the object is always the old version or the new one, whole.
func TestPutAtomicAtEveryStep(t *testing.T) {
	ctx := t.Context()
	v1, v2 := bytes.Repeat([]byte{1}, 5000), bytes.Repeat([]byte{2}, 7000)
	tests := []struct {
		name string
		old  []byte // nil: the object does not exist before
	}{
		{"new object", nil},
		{"overwrite", v1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCrashFS()
			b := open(t, local.Config{Dir: "/data", FS: c})
			if tc.old != nil {
				if err := b.Put(ctx, "packs/p", tc.old); err != nil {
					t.Fatal(err)
				}
			}
			var states []*crashFS
			c.after = func() { states = append(states, c.crash()) }
			if err := b.Put(ctx, "packs/p", v2); err != nil {
				t.Fatal(err)
			}
			c.after = nil
			if len(states) < 4 {
				t.Fatalf("Put made %d changes, want at least create, write, sync, rename", len(states))
			}
			for i, st := range states {
				got, err := readObject(ctx, st, "packs/p")
				switch {
				case err != nil:
					t.Errorf("crash after change %d: %v", i+1, err)
				case i == len(states)-1 && !bytes.Equal(got, v2):
					t.Errorf("crash after Put's last change: object has %d bytes, want the new %d", len(got), len(v2))
				case !bytes.Equal(got, tc.old) && !bytes.Equal(got, v2):
					t.Errorf("crash after change %d: object has %d bytes, neither version whole", i+1, len(got))
				}
			}
		})
	}
}

// readObject opens a Backend on fsys and reads name whole, nil if absent.
func readObject(ctx context.Context, fsys local.FS, name string) ([]byte, error) {
	b, err := local.Open(ctx, local.Config{Dir: "/data", FS: fsys})
	if err != nil {
		return nil, err
	}
	size := int64(-1)
	err = b.List(ctx, name, func(n string, s int64) error {
		if n != name {
			return fmt.Errorf("List(%s) reported %s", name, n)
		}
		size = s
		return nil
	})
	if err != nil || size < 0 {
		return nil, err
	}
	p := make([]byte, size)
	return p, b.ReadAt(ctx, name, p, 0)
}

func TestOpenRemovesStaleTemp(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "packs")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]time.Duration{ // name → age
		".tmp-stale":       2 * time.Hour,
		"packs/.tmp-stale": 2 * time.Hour,
		"packs/.tmp-fresh": time.Minute,
		"packs/old-object": 2 * time.Hour,
	}
	for name, age := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		mtime := time.Now().Add(-age)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	b := open(t, local.Config{Dir: dir})
	for name := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		if want := strings.Contains(name, "stale"); errors.Is(err, fs.ErrNotExist) != want {
			t.Errorf("after Open, %s removed = %v, want %v", name, err != nil, want)
		}
	}
	var listed []string
	if err := b.List(t.Context(), "", func(n string, _ int64) error { listed = append(listed, n); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 1 || listed[0] != "packs/old-object" {
		t.Errorf("List() = %v, want only packs/old-object (temporary files hidden)", listed)
	}
}

func TestPutENOSPC(t *testing.T) {
	dir := t.TempDir()
	b := open(t, local.Config{Dir: dir, FS: fullFS{local.OS()}})
	err := b.Put(t.Context(), "packs/p", []byte("data"))
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Put on a full disk = %v, want ENOSPC", err)
	}
	if err := b.ReadAt(t.Context(), "packs/p", make([]byte, 4), 0); !errors.Is(err, chunks.ErrNotFound) {
		t.Errorf("ReadAt after a failed Put = %v, want ErrNotFound", err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "packs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("after a failed Put, the directory holds %v, want nothing (temporary file removed)", ents)
	}
}

// fullFS is a file system with no space left.
type fullFS struct{ local.FS }

func (f fullFS) CreateTemp(dir, pattern string) (local.File, error) {
	file, err := f.FS.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return fullFile{file}, nil
}

type fullFile struct{ local.File }

func (f fullFile) Write([]byte) (int, error) {
	return 0, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
}

func TestInvalidNames(t *testing.T) {
	b := open(t, local.Config{Dir: t.TempDir()})
	for _, name := range []string{"", ".", "/abs", "a//b", "a/../b", "../up", "a/", "packs/.tmp-x", ".tmp-y/z"} {
		if err := b.Put(t.Context(), name, []byte("x")); err == nil {
			t.Errorf("Put(%q) = nil, want an error", name)
		}
		if err := b.ReadAt(t.Context(), name, make([]byte, 1), 0); err == nil || errors.Is(err, chunks.ErrNotFound) {
			t.Errorf("ReadAt(%q) = %v, want an invalid-name error", name, err)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     local.Config
		wantErr bool
	}{
		{"ok", local.Config{Dir: "d"}, false},
		{"no dir", local.Config{}, true},
		{"negative age", local.Config{Dir: "d", TempMaxAge: -time.Second}, true},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err != nil) != tc.wantErr {
			t.Errorf("%s: Validate() = %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
}

// TestDirRemovedUnderBackend: when the store's directory is removed while
// it is open (a lost disk swapped for an empty one), objects read as not
// found, also one whose file was held open, and the next Put creates the
// directory again.
func TestDirRemovedUnderBackend(t *testing.T) {
	ctx := t.Context()
	dir := filepath.Join(t.TempDir(), "zone")
	b := open(t, local.Config{Dir: dir})
	defer b.Close()
	if err := b.Put(ctx, "packs/p1", []byte("one")); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 3)
	if err := b.ReadAt(ctx, "packs/p1", p, 0); err != nil { // now held open
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadAt(ctx, "packs/p1", p, 0); !errors.Is(err, chunks.ErrNotFound) {
		t.Fatalf("ReadAt after the directory was removed = %v, want ErrNotFound", err)
	}
	if err := b.Put(ctx, "packs/p2", []byte("two")); err != nil {
		t.Fatalf("Put after the directory was removed = %v, want it recreated", err)
	}
	if err := b.ReadAt(ctx, "packs/p2", p, 0); err != nil || string(p) != "two" {
		t.Fatalf("ReadAt of the new object = %q, %v", p, err)
	}

	// Removed before any Put since Open: only the root is known to exist.
	dir2 := filepath.Join(t.TempDir(), "zone")
	b2 := open(t, local.Config{Dir: dir2})
	defer b2.Close()
	if err := os.RemoveAll(dir2); err != nil {
		t.Fatal(err)
	}
	if err := b2.Put(ctx, "packs/p1", []byte("one")); err != nil {
		t.Fatalf("first Put after the directory was removed = %v, want it recreated", err)
	}
}
