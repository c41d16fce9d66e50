package bolt_test

import (
	"os"
	"testing"
	"io"
)

func TestExploreTruncate(t *testing.T) {
	cfg := writeStore(t, 5000)
	orig, _ := os.ReadFile(cfg.Path)
	t.Log("file size", len(orig))
	for size := int64(8192); size < 1<<20; size += 4096 {
		os.WriteFile(cfg.Path, orig[:size], 0o600)
		_, err := readAll(t, cfg)
		t.Log(size, err)
	}
	_ = io.EOF
}
