package blob

import "net/http"

// PutPagesInFlight returns how many Put Pages hold a slot of h, a handler
// from New: tests wait for one to be admitted.
func PutPagesInFlight(h http.Handler) int { return len(h.(*handler).pages) }
