//go:build invariants

package chunks_test

import (
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
)

func TestPutChecksRefs(t *testing.T) {
	s := newStore(t, chunkstest.NewMem(), true, 0)
	defer func() {
		if recover() == nil {
			t.Errorf("Put of a chunk whose Ref is not its hash did not panic")
		}
	}()
	s.Put(t.Context(), []chunks.Chunk{{Ref: chunks.Sum([]byte("a")), Data: []byte("b")}})
}
