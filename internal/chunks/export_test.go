package chunks

// PendingPuts returns how many Puts wait for the next batch, so a test can
// queue a known number deterministically.
func PendingPuts(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// WorthCompressing exposes the compression probe to the tests.
var WorthCompressing = worthCompressing
