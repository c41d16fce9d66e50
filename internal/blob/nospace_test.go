package blob_test

import (
	"bytes"
	"encoding/xml"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/deltadisk/deltadisk/internal/blob"
	"github.com/deltadisk/deltadisk/internal/chunks/chunkstest"
	"github.com/deltadisk/deltadisk/internal/service"
)

// syncBuffer is a log destination the handler's goroutines may share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPutPageNoSpace: a write that the disk's zone store cannot take
// because it is full, or because it may not write, is answered 507 with
// a message that says which (never 503 ServerBusy, which clients retry
// without end), commits nothing, and is logged naming the zone and the
// path. Once the store takes writes again, so does the disk.
func TestPutPageNoSpace(t *testing.T) {
	const path = "/srv/deltadisk/zones/eastus-1/ab/.tmp-123"
	tests := []struct {
		name, code, message string
		err                 error
	}{
		{"full", "InsufficientStorage", "no space left", &fs.PathError{Op: "write", Path: path, Err: syscall.ENOSPC}},
		{"quota", "InsufficientStorage", "no space left", &fs.PathError{Op: "write", Path: path, Err: syscall.EDQUOT}},
		{"permission", "StorageNotWritable", "permission denied", &fs.PathError{Op: "open", Path: path, Err: syscall.EACCES}},
		{"read-only", "StorageNotWritable", "read-only filesystem", &fs.PathError{Op: "open", Path: path, Err: syscall.EROFS}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var logs syncBuffer
			f.srv.Config.Handler = blob.New(blob.Config{Service: f.svc, Identity: f.id, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			d := f.smallDisk(t, "d")
			sas := f.grant(t, d.ID(), service.AccessWrite)
			old := pattern(4096, 3)
			if r := f.do(t, putPage(sas, "update", "bytes=0-4095", old, nil)); r.status != http.StatusCreated {
				t.Fatalf("Put Page = %d %s", r.status, r.body)
			}

			f.faulty.Inject(chunkstest.Fault{Op: chunkstest.OpPut, Times: 1, Err: tc.err})
			r := f.do(t, putPage(sas, "update", "bytes=0-4095", pattern(4096, 4), nil))
			wantError(t, r, http.StatusInsufficientStorage, tc.code)
			if f.faulty.Fired() != 1 {
				t.Fatal("the fault never fired")
			}
			var e struct{ Message string }
			if err := xml.Unmarshal(r.body, &e); err != nil || !strings.Contains(e.Message, tc.message) || !strings.Contains(e.Message, "nothing was written") {
				t.Errorf("error message %q (%v), want it to say %q and that nothing was written", e.Message, err, tc.message)
			}
			if strings.Contains(string(r.body), path) {
				t.Errorf("the answer shows the server's path: %s", r.body)
			}
			if l := logs.String(); !strings.Contains(l, "zone eastus-1") || !strings.Contains(l, path) {
				t.Errorf("log %q does not name the zone and the path", l)
			}
			got := make([]byte, 4096)
			if err := f.eng.ReadAt(t.Context(), d.Image, got, 0); err != nil || !bytes.Equal(got, old) {
				t.Fatalf("after the refused write the disk reads %x…, %v; want what it held", got[:8], err)
			}

			// The fault was one write: the store takes the next.
			next := pattern(4096, 5)
			if r := f.do(t, putPage(sas, "update", "bytes=0-4095", next, nil)); r.status != http.StatusCreated {
				t.Fatalf("Put Page once the store takes writes = %d %s", r.status, r.body)
			}
			if err := f.eng.ReadAt(t.Context(), d.Image, got, 0); err != nil || !bytes.Equal(got, next) {
				t.Fatalf("the disk reads %x…, %v; want the last write", got[:8], err)
			}
		})
	}
}
