package engine

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/deltadisk/deltadisk/internal/meta"
)

// The write-ahead journal of a WriteBack. Without one, a flush of an
// attached disk is an engine commit: whole 64 KiB blocks hashed, packed,
// written and fsynced, then a metadata commit. With one, a flush appends
// the bytes written since the last flush to a node-local file and fsyncs
// it once, and the blocks reach the engine later, in larger folds (when
// the buffer or the journal reaches its bound, a few seconds after a
// write, before a snapshot, at detach). Reads never consult the file: the
// WriteBack's buffer already holds every block the journal holds.
//
// A volume's journal is a run of segment files,
// <dir>/<volume>-<incarnation>-<first seq>.wal, each a run of records:
//
//	magic   uint32  journalMagic
//	crc     uint32  CRC-32C of the rest of the header and the data
//	inc     uint64  the WriteBack's incarnation
//	seq     uint64  the write's number in the WriteBack, 1, 2, ...
//	off     uint64  its offset in the volume
//	n       uint32  its length
//	data    [n]byte
//
// A fold is one engine commit that also records, under the volume's
// journal key, the incarnation and the last seq it covers. A fold starts a
// new segment, so a segment is either wholly folded or not at all, and a
// folded one is deleted. Replay ([Engine.Open]) applies, in order, the
// records after the folded seq, and stops at the first that is missing,
// torn or out of sequence: unflushed writes may be lost in a crash, but
// only as a suffix, each write wholly or not at all, and everything before
// an answered flush was fsynced before the answer.
//
// The incarnation (random, committed when the WriteBack opens) keeps the
// files of an earlier WriteBack of the same volume from ever passing for
// this one's. Files with no journal key, or another incarnation, are
// leftovers of a WriteBack that was folded whole, and are removed.

const (
	journalMagic  = 0x444a524e // "DJRN"
	journalHeader = 36
	journalExt    = ".wal"
	// maxJournalWrite bounds one record: larger writes are split by the
	// callers (NBD's largest request is 32 MiB).
	maxJournalWrite = 32 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalMark is what a fold records: the journal key's value.
type journalMark struct {
	inc, seq uint64
}

func (m journalMark) encode() []byte {
	return put64(put64(nil, m.inc), m.seq)
}

func decodeJournalMark(b []byte) (journalMark, error) {
	if len(b) != 16 {
		return journalMark{}, fmt.Errorf("%w: journal mark of %d bytes", ErrCorrupt, len(b))
	}
	return journalMark{binary.BigEndian.Uint64(b), binary.BigEndian.Uint64(b[8:])}, nil
}

// appendJournalRecord appends the record of write seq (p at off) to dst.
func appendJournalRecord(dst []byte, inc, seq uint64, off int64, p []byte) []byte {
	start := len(dst)
	dst = binary.BigEndian.AppendUint32(dst, journalMagic)
	dst = binary.BigEndian.AppendUint32(dst, 0) // the CRC, below
	dst = put64(dst, inc)
	dst = put64(dst, seq)
	dst = put64(dst, uint64(off))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(p)))
	dst = append(dst, p...)
	crc := crc32.Checksum(dst[start+8:], castagnoli)
	binary.BigEndian.PutUint32(dst[start+4:], crc)
	return dst
}

// journalRecord is a decoded record; data is valid until the next read.
type journalRecord struct {
	seq  uint64
	off  int64
	data []byte
}

// errJournalEnd: the records end here, at the end of the file or at one
// that is torn, foreign or damaged. Either way replay stops.
var errJournalEnd = errors.New("engine: end of the journal")

// readJournalRecord reads the next record of incarnation inc from r into
// buf (grown as needed). It returns errJournalEnd where the records end,
// and another error only when r fails.
func readJournalRecord(r *bufio.Reader, inc uint64, buf []byte) (journalRecord, []byte, error) {
	var hdr [journalHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return journalRecord{}, buf, errJournalEnd
		}
		return journalRecord{}, buf, err
	}
	n := binary.BigEndian.Uint32(hdr[32:])
	off := binary.BigEndian.Uint64(hdr[24:])
	if binary.BigEndian.Uint32(hdr[:]) != journalMagic || binary.BigEndian.Uint64(hdr[8:]) != inc ||
		n == 0 || n > maxJournalWrite || n%SectorSize != 0 || off%SectorSize != 0 || off > 1<<62 {
		return journalRecord{}, buf, errJournalEnd
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	data := buf[:n]
	if _, err := io.ReadFull(r, data); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return journalRecord{}, buf, errJournalEnd
		}
		return journalRecord{}, buf, err
	}
	crc := crc32.Update(crc32.Checksum(hdr[8:], castagnoli), castagnoli, data)
	if crc != binary.BigEndian.Uint32(hdr[4:]) {
		return journalRecord{}, buf, errJournalEnd
	}
	return journalRecord{seq: binary.BigEndian.Uint64(hdr[16:]), off: int64(off), data: data}, buf, nil
}

// segmentName is the file name of a segment.
func segmentName(id ID, inc, first uint64) string {
	return fmt.Sprintf("%d-%016x-%d%s", id, inc, first, journalExt)
}

// parseSegmentName undoes segmentName; ok is false for other files.
func parseSegmentName(name string) (id ID, inc, first uint64, ok bool) {
	base, found := strings.CutSuffix(name, journalExt)
	parts := strings.Split(base, "-")
	if !found || len(parts) != 3 {
		return 0, 0, 0, false
	}
	v, err1 := strconv.ParseUint(parts[0], 10, 64)
	inc, err2 := strconv.ParseUint(parts[1], 16, 64)
	first, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || len(parts[1]) != 16 {
		return 0, 0, 0, false
	}
	return ID(v), inc, first, true
}

// segment is one file of a journal. Its fields are guarded by the
// WriteBack's mu, but f, which only syncs touch (under syncMu).
type segment struct {
	path  string
	first uint64 // seq of its first record
	// pending holds the records not yet written to the file, in buffers
	// of journalBuf bytes (or one record's, if larger): appending to one
	// growing slice copied it over and over.
	pending [][]byte
	size    int64 // bytes appended, written or pending
	f       *os.File
	// broken: a write to the file failed, so it may end in a torn record
	// that would hide the records after it; nothing more is written to it,
	// and a flush folds instead.
	broken bool
}

// syncSegments writes each segment's pending records to its file and
// fsyncs the files it wrote. The files are created on first use, with a
// directory sync so that they survive a crash.
func syncSegments(dir string, batch []segmentWrite) error {
	created := false
	for _, sw := range batch {
		if sw.seg.f != nil {
			continue
		}
		f, err := os.OpenFile(sw.seg.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		sw.seg.f, created = f, true
	}
	if created {
		if err := syncDir(dir); err != nil {
			return err
		}
	}
	for _, sw := range batch {
		for _, buf := range sw.data {
			if _, err := sw.seg.f.Write(buf); err != nil {
				return err
			}
		}
	}
	for _, sw := range batch {
		if err := sw.seg.f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// segmentWrite is a segment's pending records taken for a sync.
type segmentWrite struct {
	seg  *segment
	data [][]byte
}

// journalBuf is the size of the buffers that hold pending records.
const journalBuf = 1 << 20

// appendRecord appends the record of write seq to the segment's pending
// buffers, taking a new buffer from free when the last one is full.
func (seg *segment) appendRecord(free *[][]byte, inc, seq uint64, off int64, p []byte) {
	need := journalHeader + len(p)
	n := len(seg.pending)
	if n == 0 || cap(seg.pending[n-1])-len(seg.pending[n-1]) < need {
		var buf []byte
		if k := len(*free); k > 0 && need <= journalBuf {
			buf, *free = (*free)[k-1], (*free)[:k-1]
		} else {
			buf = make([]byte, 0, max(need, journalBuf))
		}
		seg.pending = append(seg.pending, buf[:0])
		n++
	}
	seg.pending[n-1] = appendJournalRecord(seg.pending[n-1], inc, seq, off, p)
	seg.size += int64(need)
}

// recycle keeps the standard-size buffers of bufs in free, up to max.
func recycle(free *[][]byte, bufs [][]byte, max int) {
	for _, buf := range bufs {
		if cap(buf) == journalBuf && len(*free) < max {
			*free = append(*free, buf[:0])
		}
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// journalFiles lists the segment files in dir by volume, oldest first.
func journalFiles(dir string) (map[ID][]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	files := make(map[ID][]string)
	for _, de := range entries {
		if id, _, _, ok := parseSegmentName(de.Name()); ok {
			files[id] = append(files[id], de.Name())
		}
	}
	for _, names := range files {
		slices.SortFunc(names, func(a, b string) int {
			_, _, fa, _ := parseSegmentName(a)
			_, _, fb, _ := parseSegmentName(b)
			return cmpUint(fa, fb)
		})
	}
	return files, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// replayJournals folds into their volumes the journaled writes that a
// crash left unfolded, then removes every journal file and key: after
// Open no WriteBack is open.
func (e *Engine) replayJournals(ctx context.Context) error {
	if err := os.MkdirAll(e.journalDir, 0o700); err != nil {
		return err
	}
	files, err := journalFiles(e.journalDir)
	if err != nil {
		return err
	}
	var marked []ID
	if err := e.meta.View(ctx, func(tx meta.Tx) error {
		marked = marked[:0]
		return scanAll(tx, prefixJournal, func(k, _ []byte) error {
			id, err := decodeIDKey(k, prefixJournal)
			marked = append(marked, ID(id))
			return err
		})
	}); err != nil {
		return err
	}
	for _, id := range marked {
		if files[id] == nil {
			files[id] = []string{}
		}
	}
	for id, names := range files {
		if err := e.replayJournal(ctx, id, names); err != nil {
			return fmt.Errorf("volume %d: %w", id, err)
		}
	}
	return nil
}

// replayJournal replays volume id's segments (names, oldest first).
func (e *Engine) replayJournal(ctx context.Context, id ID, names []string) error {
	var mark journalMark
	found := false
	if err := e.meta.View(ctx, func(tx meta.Tx) error {
		b, err := tx.Get(journalKey(id))
		if errors.Is(err, meta.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		mark, err = decodeJournalMark(b)
		return err
	}); err != nil {
		return err
	}
	if found {
		if _, err := e.volumeView(ctx, id); errors.Is(err, ErrNotFound) {
			found = false // deleted: nothing to replay into
		} else if err != nil {
			return err
		}
	}
	if found {
		n, err := e.replaySegments(ctx, id, mark, names)
		if err != nil {
			return err
		}
		if n > 0 {
			e.log.Warn("engine: replayed the write-back journal of a volume after a crash", "image", id, "writes", n)
		}
	}
	if err := e.meta.Update(ctx, func(tx meta.Tx) error { return tx.Delete(journalKey(id)) }); err != nil {
		return err
	}
	for _, name := range names {
		if err := os.Remove(filepath.Join(e.journalDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// replaySegments applies the records after mark.seq to volume id, in
// order, and commits them, in folds of at most maxGuardedBlocks blocks,
// each with its mark. It returns how many records it applied.
func (e *Engine) replaySegments(ctx context.Context, id ID, mark journalMark, names []string) (int, error) {
	v, err := e.volumeView(ctx, id)
	if err != nil {
		return 0, err
	}
	blocks := make(map[uint64][]byte)
	next := mark.seq + 1
	applied := 0
	fold := func() error {
		if len(blocks) == 0 {
			return nil
		}
		batch := make([]blockWrite, 0, len(blocks))
		for b, buf := range blocks {
			batch = append(batch, blockWrite{b: b, data: buf})
		}
		if err := e.commitBlocks(ctx, id, batch, &journalMark{mark.inc, next - 1}); err != nil {
			return err
		}
		clear(blocks)
		return nil
	}
	var buf []byte
segments:
	for _, name := range names {
		_, inc, _, _ := parseSegmentName(name)
		if inc != mark.inc {
			continue // another incarnation's leftovers
		}
		f, err := os.Open(filepath.Join(e.journalDir, name))
		if err != nil {
			return 0, err
		}
		r := bufio.NewReaderSize(f, 1<<20)
		for {
			var rec journalRecord
			rec, buf, err = readJournalRecord(r, mark.inc, buf)
			if errors.Is(err, errJournalEnd) {
				break
			}
			if err != nil {
				f.Close()
				return 0, err
			}
			if rec.seq < next {
				continue // folded already
			}
			if rec.seq != next || checkRange(rec.off, int64(len(rec.data)), v.size) != nil {
				f.Close()
				break segments
			}
			if err := e.applyRecord(ctx, id, blocks, rec); err != nil {
				f.Close()
				return 0, err
			}
			next++
			applied++
			if len(blocks) >= maxGuardedBlocks/2 {
				if err := fold(); err != nil {
					f.Close()
					return 0, err
				}
			}
		}
		f.Close()
	}
	return applied, fold()
}

// applyRecord copies a record into blocks, reading the committed content
// of blocks it covers in part and that blocks lacks.
func (e *Engine) applyRecord(ctx context.Context, id ID, blocks map[uint64][]byte, rec journalRecord) error {
	off, end := rec.off, rec.off+int64(len(rec.data))
	for b := uint64(off / BlockSize); int64(b)*BlockSize < end; b++ {
		bs := int64(b) * BlockSize
		lo, hi := max(bs, off), min(bs+BlockSize, end)
		buf := blocks[b]
		if buf == nil {
			buf = make([]byte, BlockSize)
			if lo > bs || hi < bs+BlockSize {
				if err := e.ReadAt(ctx, id, buf, bs); err != nil {
					return err
				}
			}
			blocks[b] = buf
		}
		copy(buf[lo-bs:hi-bs], rec.data[lo-off:hi-off])
	}
	return nil
}
