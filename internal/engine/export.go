package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// ExportOptions shapes an export stream.
type ExportOptions struct {
	// VHD appends a fixed VHD footer, so that the stream is a fixed VHD
	// file of the image; UniqueID and Time go into the footer.
	VHD      bool
	UniqueID [16]byte
	Time     time.Time
	// Trailer is appended after the image's bytes (and after the footer).
	Trailer []byte
	// Offset and Length select a range of the stream (the image's bytes
	// followed by the footer and trailer); a zero Length means to its end.
	Offset, Length int64
}

// zeroRun is written for holes; it is never modified.
var zeroRun = make([]byte, 1<<20)

// Export streams an image's bytes to w, then its footer and trailer, or the
// range of that stream that opts selects. Blocks that hold no data are
// produced without storage I/O; chunk reads run ahead of the writer, in
// order, with bounded memory. It returns the bytes written.
func (e *Engine) Export(ctx context.Context, id ID, w io.Writer, opts ExportOptions) (int64, error) {
	info, err := e.Stat(ctx, id)
	if err != nil {
		return 0, err
	}
	trailer := opts.Trailer
	if opts.VHD {
		t := opts.Time
		if t.IsZero() {
			t = e.now()
		}
		f, err := vhd.New(info.Size, opts.UniqueID, t)
		if err != nil {
			return 0, err
		}
		footer, err := f.MarshalBinary()
		if err != nil {
			return 0, err
		}
		trailer = append(footer, trailer...)
	}
	total := info.Size + int64(len(trailer))
	start, end := opts.Offset, total
	if opts.Length > 0 {
		end = opts.Offset + opts.Length
	}
	if start < 0 || opts.Length < 0 || end > total || start > end {
		return 0, fmt.Errorf("%w: range %d+%d of a %d-byte stream", ErrOutOfRange, opts.Offset, opts.Length, total)
	}
	imgEnd := min(end, info.Size)
	var written int64
	if start < imgEnd {
		n, err := e.exportImage(ctx, id, w, start, imgEnd)
		written += n
		if err != nil {
			return written, err
		}
	}
	if end > info.Size {
		m, err := w.Write(trailer[max(start-info.Size, 0) : end-info.Size])
		written += int64(m)
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// exportImage streams bytes [start, end) of an image.
func (e *Engine) exportImage(ctx context.Context, id ID, w io.Writer, start, end int64) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	type fetch struct {
		br   blockRead
		buf  []byte
		err  error
		done chan struct{}
	}
	// A free list of block buffers: the read-ahead bounds how many exist.
	free := make(chan []byte, e.readAhead+2)
	getBuf := func() []byte {
		select {
		case b := <-free:
			return b[:0]
		default:
			return make([]byte, 0, BlockSize)
		}
	}
	// A fixed pool of readers fills fetches in the order the producer
	// queues them; the writer drains the queue in the same order.
	queue := make(chan *fetch, e.readAhead)
	jobs := make(chan *fetch, e.readAhead)
	for range e.readAhead {
		go func() {
			for f := range jobs {
				f.buf, f.err = e.getBlock(ctx, id, f.br, getBuf())
				close(f.done)
			}
		}()
	}
	var walkErr error
	go func() {
		defer close(queue)
		defer close(jobs)
		b0, b1 := uint64(start/BlockSize), uint64((end+BlockSize-1)/BlockSize)
		walkErr = e.walkLocated(ctx, id, b0, b1, func(br blockRead) error {
			f := &fetch{br: br, done: make(chan struct{})}
			select {
			case queue <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
			jobs <- f // never blocks long: a reader takes it once the queue has room
			return nil
		})
	}()

	var written int64
	pos := start
	writeZeros := func(n int64) error {
		for n > 0 {
			k := min(n, int64(len(zeroRun)))
			m, err := w.Write(zeroRun[:k])
			written += int64(m)
			if err != nil {
				return err
			}
			n -= k
		}
		return nil
	}
	for f := range queue {
		<-f.done
		if f.err != nil {
			cancel()
			for range queue { // let the producer finish
			}
			return written, f.err
		}
		bs := int64(f.br.b) * BlockSize
		lo, hi := max(bs, start), min(bs+BlockSize, end)
		if err := writeZeros(lo - pos); err != nil {
			cancel()
			for range queue {
			}
			return written, err
		}
		m, err := w.Write(f.buf[lo-bs : hi-bs])
		written += int64(m)
		select {
		case free <- f.buf:
		default:
		}
		if err != nil {
			cancel()
			for range queue {
			}
			return written, err
		}
		pos = hi
	}
	if walkErr != nil {
		return written, walkErr
	}
	return written, writeZeros(end - pos)
}

// walkLocated calls fn for each non-zero block in [b0, b1) of an image with
// its chunk's location, in order.
func (e *Engine) walkLocated(ctx context.Context, id ID, b0, b1 uint64, fn func(blockRead) error) error {
	blocks := b1
	for w := b0; w < blocks; w += windowBlocks {
		var win []blockRead
		err := e.meta.View(ctx, func(tx meta.Tx) error {
			win = win[:0]
			v, err := openView(tx, id)
			if err != nil {
				return err
			}
			r := newTxReader(tx)
			bvs, err := r.allocated(v.lin, v.gen, w, min(w+windowBlocks, blocks))
			if err != nil {
				return err
			}
			for _, bv := range bvs {
				locs, err := r.locations(bv.val.ref)
				if err != nil {
					return err
				}
				win = append(win, blockRead{b: bv.b, val: bv.val, locs: locs})
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, br := range win {
			if err := fn(br); err != nil {
				return err
			}
		}
	}
	return nil
}

// getBlock reads one planned block, re-planning it once if a compaction
// moved its chunk in between.
func (e *Engine) getBlock(ctx context.Context, id ID, br blockRead, dst []byte) ([]byte, error) {
	buf, err := e.readChunk(ctx, br.val.ref, br.locs, dst)
	if errors.Is(err, chunks.ErrNotFound) {
		plan, perr := e.plan(ctx, id, br.b, br.b+1, func(view) error { return nil })
		if perr != nil {
			return nil, perr
		}
		if plan[0].val != br.val {
			return nil, fmt.Errorf("block %d: %w (the image changed during the export)", br.b, err)
		}
		buf, err = e.readChunk(ctx, br.val.ref, plan[0].locs, dst)
	}
	if err != nil {
		return nil, fmt.Errorf("block %d: %w", br.b, err)
	}
	if len(buf) != BlockSize {
		return nil, fmt.Errorf("%w: chunk %s holds %d bytes, want %d", ErrCorrupt, br.val.ref, len(buf), BlockSize)
	}
	return buf, nil
}
