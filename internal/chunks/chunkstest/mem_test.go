package chunkstest_test

import (
	"testing"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
)

func TestMem(t *testing.T) {
	chunkstest.Run(t, func(*testing.T) chunks.Backend { return chunkstest.NewMem() })
}

func BenchmarkMem(b *testing.B) {
	chunkstest.Bench(b, func(*testing.B) chunks.Backend { return chunkstest.NewMem() })
}
