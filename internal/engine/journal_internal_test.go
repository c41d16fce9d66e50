package engine

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

// SetWriteBackDelay sets how long w waits from a write to the fold that
// follows it, for tests that must not see a timed fold.
func SetWriteBackDelay(w *WriteBack, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.delay = d
}

// AbandonWriteBack ends w as a crash would: it waits for a running fold or
// sync, then stops w without folding or removing its journal, and closes
// the journal's files.
func AbandonWriteBack(w *WriteBack) {
	w.barrier.Lock()
	defer w.barrier.Unlock()
	w.flushMu.Lock()
	defer w.flushMu.Unlock()
	if w.j != nil {
		w.j.syncMu.Lock()
		defer w.j.syncMu.Unlock()
	}
	w.mu.Lock()
	w.closed = true
	if w.timer != nil {
		w.timer.Stop()
	}
	if w.j != nil {
		for _, seg := range w.j.segs {
			if seg.f != nil {
				seg.f.Close()
			}
		}
	}
	w.mu.Unlock()
	w.e.mu.Lock()
	delete(w.e.writeBacks, w.id)
	w.e.mu.Unlock()
}

// FuzzJournalRecord: the journal reader takes any bytes (a file torn or
// overwritten anywhere) without panicking, returns only records that are
// whole and of its incarnation, and reads back what the writer wrote.
func FuzzJournalRecord(f *testing.F) {
	const inc = 0x1234
	var good []byte
	good = appendJournalRecord(good, inc, 1, 0, bytes.Repeat([]byte{1}, 512))
	good = appendJournalRecord(good, inc, 2, 4096, bytes.Repeat([]byte{2}, 1024))
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(good[:journalHeader])
	f.Add(appendJournalRecord(nil, inc+1, 1, 0, make([]byte, 512)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		var buf []byte
		read := 0
		for {
			var rec journalRecord
			var err error
			rec, buf, err = readJournalRecord(r, inc, buf)
			if err != nil {
				if err != errJournalEnd {
					t.Fatalf("readJournalRecord = %v, want errJournalEnd or a record", err)
				}
				break
			}
			if len(rec.data) == 0 || len(rec.data)%SectorSize != 0 || rec.off%SectorSize != 0 || rec.off < 0 {
				t.Fatalf("record %+v is not a valid write", rec)
			}
			// A record read back encodes to the bytes it was read from.
			enc := appendJournalRecord(nil, inc, rec.seq, rec.off, rec.data)
			if !bytes.Equal(enc, b[read:read+len(enc)]) {
				t.Fatal("a record read does not encode to its bytes")
			}
			read += len(enc)
		}
	})
}

func TestJournalRecordRoundTrip(t *testing.T) {
	const inc = 77
	var b []byte
	want := []journalRecord{{1, 0, bytes.Repeat([]byte{9}, 512)}, {2, 1 << 30, bytes.Repeat([]byte{8}, 64<<10)}}
	for _, rec := range want {
		b = appendJournalRecord(b, inc, rec.seq, rec.off, rec.data)
	}
	// A torn third record ends the journal, as does another incarnation's.
	torn := appendJournalRecord(nil, inc, 3, 512, make([]byte, 1024))
	b = append(b, torn[:len(torn)-5]...)
	for _, tail := range [][]byte{b, append(b[:len(b)-len(torn)+5:len(b)-len(torn)+5], appendJournalRecord(nil, inc+1, 3, 0, make([]byte, 512))...)} {
		r := bufio.NewReader(bytes.NewReader(tail))
		var buf []byte
		for i, w := range want {
			var rec journalRecord
			var err error
			rec, buf, err = readJournalRecord(r, inc, buf)
			if err != nil || rec.seq != w.seq || rec.off != w.off || !bytes.Equal(rec.data, w.data) {
				t.Fatalf("record %d = %d at %d (%d bytes), %v; want %d at %d (%d bytes)", i, rec.seq, rec.off, len(rec.data), err, w.seq, w.off, len(w.data))
			}
		}
		if _, _, err := readJournalRecord(r, inc, buf); err != errJournalEnd {
			t.Fatalf("after the last whole record: %v, want errJournalEnd", err)
		}
	}
}

func TestSegmentName(t *testing.T) {
	name := segmentName(42, 0xabc, 7)
	id, inc, first, ok := parseSegmentName(name)
	if !ok || id != 42 || inc != 0xabc || first != 7 {
		t.Fatalf("parseSegmentName(%q) = %d, %x, %d, %v", name, id, inc, first, ok)
	}
	for _, bad := range []string{"42-abc-7.wal", "42-0000000000000abc-7", "x-0000000000000abc-7.wal", "42-0000000000000abc-7-1.wal"} {
		if _, _, _, ok := parseSegmentName(bad); ok {
			t.Errorf("parseSegmentName(%q) accepted", bad)
		}
	}
}
