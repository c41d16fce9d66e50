package local

import (
	"errors"
	"fmt"
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
)

// TestOpenFilesAreReleased: reads keep pack files open for the next read,
// but never more than the cache holds, and a deleted or replaced object is
// never read from a stale open file.
func TestOpenFilesAreReleased(t *testing.T) {
	ctx := t.Context()
	b, err := Open(ctx, Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	p := make([]byte, 4)
	for i := range maxOpenFiles + 10 {
		name := fmt.Sprintf("packs/p%03d", i)
		if err := b.Put(ctx, name, []byte(fmt.Sprintf("v%03d", i))); err != nil {
			t.Fatal(err)
		}
		if err := b.ReadAt(ctx, name, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.open.lru.Len(); n != maxOpenFiles {
		t.Errorf("%d files open, want the cache's %d", n, maxOpenFiles)
	}
	name := fmt.Sprintf("packs/p%03d", maxOpenFiles+9) // cached
	if err := b.Put(ctx, name, []byte("new!")); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadAt(ctx, name, p, 0); err != nil || string(p) != "new!" {
		t.Errorf("read after replace = %q, %v; want the new object", p, err)
	}
	if err := b.Delete(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := b.ReadAt(ctx, name, p, 0); !errors.Is(err, chunks.ErrNotFound) {
		t.Errorf("read after delete = %v, want ErrNotFound", err)
	}
}
