package arm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
)

// TestWriteErrorStorage: a store that is full, or may not write, is
// answered 507 with a code and message that say which, whichever store it
// was (the metadata file, wrapped as bolt wraps a failed commit, or a zone
// store, wrapped as the engine does), and the log names the store's path.
// Other failures stay a 500 that shows nothing.
func TestWriteErrorStorage(t *testing.T) {
	const metaPath = "/srv/deltadisk/meta.db"
	bolt := func(errno syscall.Errno) error {
		return fmt.Errorf("bolt: %s: %w", metaPath, &fs.PathError{Op: "write", Path: metaPath, Err: errno})
	}
	tests := []struct {
		name          string
		err           error
		status        int
		code, message string
	}{
		{"meta full", bolt(syscall.ENOSPC), http.StatusInsufficientStorage, "InsufficientStorage", "no space left"},
		{"meta quota", bolt(syscall.EDQUOT), http.StatusInsufficientStorage, "InsufficientStorage", "no space left"},
		{"meta read-only", bolt(syscall.EROFS), http.StatusInsufficientStorage, "StorageNotWritable", "read-only filesystem"},
		{"meta permission", bolt(syscall.EACCES), http.StatusInsufficientStorage, "StorageNotWritable", "permission denied"},
		{"zone full", fmt.Errorf("copy: zone westus-1: local: put p: %w", &fs.PathError{Op: "write", Path: metaPath, Err: syscall.ENOSPC}),
			http.StatusInsufficientStorage, "InsufficientStorage", "no space left"},
		{"other", bolt(syscall.EIO), http.StatusInternalServerError, "InternalServerError", "internal error"},
		{"plain", errors.New("reading " + metaPath + " failed"), http.StatusInternalServerError, "InternalServerError", "internal error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := &handler{log: slog.New(slog.NewTextHandler(&logs, nil))}
			w := httptest.NewRecorder()
			w.Header().Set("x-ms-request-id", "rid")
			h.writeError(w, httptest.NewRequest(http.MethodPut, "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d", nil), tc.err)
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if w.Code != tc.status || body.Error.Code != tc.code || w.Header().Get("x-ms-error-code") != tc.code {
				t.Errorf("writeError(%v) = %d %s, want %d %s", tc.err, w.Code, body.Error.Code, tc.status, tc.code)
			}
			if !strings.Contains(body.Error.Message, tc.message) {
				t.Errorf("message %q, want it to say %q", body.Error.Message, tc.message)
			}
			if strings.Contains(w.Body.String(), metaPath) {
				t.Errorf("the answer shows the server's path: %s", w.Body)
			}
			if !strings.Contains(logs.String(), metaPath) || !strings.Contains(logs.String(), "request_id=rid") {
				t.Errorf("log %q does not name the path and the request", logs.String())
			}
		})
	}
}
