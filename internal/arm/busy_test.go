package arm

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// TestWriteErrorBusy: a transaction that kept losing conflicts is 503
// ServerBusy with Retry-After, which Azure's clients retry; never a 500.
func TestWriteErrorBusy(t *testing.T) {
	h := &handler{log: slog.New(slog.DiscardHandler)}
	w := httptest.NewRecorder()
	h.writeError(w, httptest.NewRequest(http.MethodPut, "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/s", nil),
		fmt.Errorf("service: snapshot: %w", meta.ErrBusy))
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %s: %v", w.Body, err)
	}
	if w.Code != http.StatusServiceUnavailable || body.Error.Code != "ServerBusy" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("writeError(busy) = %d %s, Retry-After %q; want 503 ServerBusy with Retry-After", w.Code, body.Error.Code, w.Header().Get("Retry-After"))
	}
}
