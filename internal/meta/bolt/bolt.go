// Package bolt implements [meta.Store] on one bbolt file: the embedded
// metadata store of a single-node deltadisk.
//
// All keys live in one bucket and every commit is fsynced before Update
// returns. Keys are 1 to 32768 bytes (bbolt's limits). The file is locked
// while open, so a second process gets [ErrLocked] naming the file instead
// of waiting forever. A damaged file (not bbolt, truncated, or a bad page
// met inside a transaction) gives [ErrCorrupt] naming the file rather than a
// crash; once a bad page has been met the Store refuses writes until it is
// reopened.
//
// Keys and values that Scan passes to its callback point into the read-only
// memory map: writing to them panics. Get returns a copy the caller owns.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

var (
	// ErrLocked is returned by [Open] when another process, or another open
	// Store in this one, holds the file.
	ErrLocked = errors.New("bolt: file locked by another process")
	// ErrCorrupt is returned when the file is not a bbolt database, is
	// truncated, or a transaction meets a damaged page; from then on Update
	// returns it too.
	ErrCorrupt = errors.New("bolt: file corrupt")
)

// bucket holds every key. One bucket keeps the key space exactly the seam's:
// ordered bytes, with no names reserved.
var bucket = []byte("kv")

// scanCheckEvery is how many keys Scan visits between checks of the
// transaction's context, so that a long scan stops soon after cancellation.
const scanCheckEvery = 256

// Config configures [Open]. Start from [DefaultConfig].
type Config struct {
	// Path is the database file, created with mode 0600 if absent. Its
	// directory must exist.
	Path string
	// Logger receives the rare events worth a line (a damaged page met in a
	// transaction, with its stack). Nil discards them.
	Logger *slog.Logger
	// Timeout bounds the wait for the file lock. It must be positive:
	// bbolt would otherwise wait forever for a running server to exit.
	Timeout time.Duration
	// InitialMmapSize is the address space mapped at open, in bytes. bbolt
	// remaps to grow, and a remap waits for every open View; while the file
	// fits in the first mapping no commit ever waits for a reader. It costs
	// address space, not memory.
	InitialMmapSize int
	// FillPercent is how full bbolt fills pages when it splits them, from
	// 0.1 to 1. Higher packs append-only keys tighter; lower leaves room for
	// keys inserted between existing ones.
	FillPercent float64
}

// DefaultConfig returns the configuration deltadisk serve uses; only Path
// needs setting.
func DefaultConfig() Config {
	return Config{
		Timeout:         time.Second,
		InitialMmapSize: 1 << 30,
		FillPercent:     bbolt.DefaultFillPercent,
	}
}

// Validate reports the first invalid field of c.
func (c Config) Validate() error {
	switch {
	case c.Path == "":
		return errors.New("bolt: config: Path is empty")
	case c.Timeout <= 0:
		return fmt.Errorf("bolt: config: Timeout %v is not positive", c.Timeout)
	case c.InitialMmapSize < 0:
		return fmt.Errorf("bolt: config: InitialMmapSize %d is negative", c.InitialMmapSize)
	case c.FillPercent < 0.1 || c.FillPercent > 1:
		return fmt.Errorf("bolt: config: FillPercent %v is outside [0.1, 1]", c.FillPercent)
	}
	return nil
}

// Store is a [meta.Store] on one bbolt file. It is safe for concurrent use.
// Update transactions run one at a time; View transactions run alongside
// them and each other. Keep Views short all the same: a commit that grows
// the file past [Config.InitialMmapSize] waits for every open View, and new
// Views queue behind it.
type Store struct {
	db      *bbolt.DB
	path    string
	logger  *slog.Logger
	fill    float64
	closed  atomic.Bool
	commits committer
	// broken holds the first damage a transaction met. Writing on top of a
	// damaged page or freelist could spread the damage, so Update refuses.
	broken atomic.Pointer[error]
}

var _ meta.Store = (*Store)(nil)

// Open opens or creates the database file cfg.Path and locks it until
// [Store.Close]. A file another Store holds gives [ErrLocked] after
// cfg.Timeout; a damaged one gives [ErrCorrupt].
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	info, err := os.Stat(cfg.Path)
	created := errors.Is(err, fs.ErrNotExist)
	if err == nil && info.Size() > 0 { // bbolt takes an empty file for a new one
		if err := checkSize(cfg, info.Size()); err != nil {
			return nil, err
		}
	}
	db, err := openDB(cfg, false)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: cfg.Path, logger: cfg.Logger, fill: cfg.FillPercent}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if created {
		// bbolt fsyncs the file but not the directory entry that names it;
		// without this a crash could lose a store that Open reported made.
		if err := syncDir(filepath.Dir(cfg.Path)); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("bolt: open %s: %w", cfg.Path, err)
		}
	}
	return s, nil
}

// checkSize checks that the file holds every page its meta page counts.
// bbolt never reads past that mark, so this finds a truncated file before
// anything faults on it. It opens the file read-only, which reads the meta
// pages only; a read-write open would first load the freelist, often the
// last page, and a fault inside bbolt.Open leaks a mapping that holds the
// file lock until the process exits.
func checkSize(cfg Config, size int64) error {
	// Shorter than this, bbolt says only "file size too small".
	if size < 2*int64(os.Getpagesize()) {
		return fmt.Errorf("%w: %s: file is %d bytes, shorter than two pages", ErrCorrupt, cfg.Path, size)
	}
	db, err := openDB(cfg, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.View(func(tx *bbolt.Tx) error {
		if need := tx.Size(); size < need {
			return fmt.Errorf("%w: %s: file is %d bytes, its pages end at %d (truncated)",
				ErrCorrupt, cfg.Path, size, need)
		}
		return nil
	})
}

// openDB calls bbolt.Open, turning its panics and memory faults on a damaged
// file into ErrCorrupt.
func openDB(cfg Config, readOnly bool) (db *bbolt.DB, err error) {
	var file *os.File
	opts := &bbolt.Options{
		Timeout:         cfg.Timeout,
		ReadOnly:        readOnly,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: cfg.InitialMmapSize,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	}
	// A damaged freelist page can make bbolt.Open read past the mapped file
	// (SIGBUS or SIGSEGV); turn that into a panic to recover.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			// The mapping, if bbolt made it, leaks with the DB it did not
			// return, and keeps the file locked until the process exits.
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("%w: %s: %s", ErrCorrupt, cfg.Path, panicReason(r))
		}
	}()
	db, err = bbolt.Open(cfg.Path, 0o600, opts)
	var pathErr *fs.PathError
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bberrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %v)", ErrLocked, cfg.Path, cfg.Timeout)
	case errors.Is(err, bberrors.ErrInvalid), errors.Is(err, bberrors.ErrChecksum):
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, cfg.Path, err)
	case errors.As(err, &pathErr):
		return nil, fmt.Errorf("bolt: %w", err)
	default:
		return nil, fmt.Errorf("bolt: open %s: %w", cfg.Path, err)
	}
}

// init creates the bucket on first open.
func (s *Store) init() error {
	var hasBucket bool
	err := s.run(false, func(tx *bbolt.Tx) error {
		hasBucket = tx.Bucket(bucket) != nil
		return nil
	})
	if err != nil || hasBucket {
		return err
	}
	return s.run(true, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucket)
		return err
	})
}

// View implements [meta.Store.View].
func (s *Store) View(ctx context.Context, fn func(meta.Tx) error) error {
	return s.view(ctx, fn)
}

// Update implements [meta.Store.Update]. Concurrent Updates commit together
// (see group.go), so fn may run more than once; it runs once when it is
// alone or commits, and once more only when another closure of its group
// failed after it ran.
func (s *Store) Update(ctx context.Context, fn func(meta.Tx) error) error {
	if p := s.broken.Load(); p != nil {
		return *p
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return meta.ErrClosed
	}
	return s.update(ctx, fn)
}

// Close releases the file and its lock. It waits for running transactions.
// Calling Close again returns nil.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("bolt: close %s: %w", s.path, err)
	}
	return nil
}

// view runs fn in a read-only transaction over the bucket.
func (s *Store) view(ctx context.Context, fn func(meta.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return meta.ErrClosed
	}
	var inFn bool
	var fnErr error
	err := s.runGuarded(false, &inFn, func(btx *bbolt.Tx) error {
		b := btx.Bucket(bucket)
		if b == nil {
			return fmt.Errorf("%w: %s: bucket %q is missing", ErrCorrupt, s.path, bucket)
		}
		t := &tx{s: s, ctx: ctx, b: b}
		inFn = true
		fnErr = fn(t)
		inFn = false
		t.b = nil // a Tx retained past fn now panics instead of reading freed pages
		if t.err != nil {
			// fn met a damaged page; whatever it did after is suspect.
			return t.err
		}
		return fnErr
	})
	if err == nil {
		return nil
	}
	if fnErr != nil && !errors.Is(err, ErrCorrupt) {
		return fnErr // unchanged, as the seam promises
	}
	if errors.Is(err, bberrors.ErrDatabaseNotOpen) {
		return meta.ErrClosed
	}
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	return fmt.Errorf("bolt: %s: %w", s.path, err)
}

// run is runGuarded for the Store's own transactions, which call no user code.
func (s *Store) run(writable bool, fn func(*bbolt.Tx) error) error {
	var inFn bool
	return s.runGuarded(writable, &inFn, fn)
}

// runGuarded runs fn in a bbolt transaction and turns a panic or memory
// fault inside bbolt into ErrCorrupt. A panic raised while *inFn is true
// comes from the caller's code and goes on up untouched.
func (s *Store) runGuarded(writable bool, inFn *bool, fn func(*bbolt.Tx) error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if *inFn {
			return // not recovering keeps the caller's panic and its stack intact
		}
		if r := recover(); r != nil {
			err = s.damaged(r)
		}
	}()
	if writable {
		return s.db.Update(fn)
	}
	return s.db.View(fn)
}

// damaged records a panic recovered from bbolt as the Store's damage and
// returns it as an error.
func (s *Store) damaged(r any) error {
	err := fmt.Errorf("%w: %s: %s", ErrCorrupt, s.path, panicReason(r))
	if s.broken.CompareAndSwap(nil, &err) {
		s.logger.Error("meta store damaged; refusing writes until reopened",
			"path", s.path, "err", err, "stack", string(debug.Stack()))
	}
	return err
}

// panicReason describes a panic recovered from bbolt.
func panicReason(r any) string {
	if f, ok := r.(interface{ Addr() uintptr }); ok {
		// SetPanicOnFault's panic: a page past the end of the file or a
		// wild page pointer.
		return fmt.Sprintf("memory fault at %#x reading the mapped file (truncated or damaged)", f.Addr())
	}
	return fmt.Sprint(r)
}

// tx implements meta.Tx over the bucket of one bbolt transaction.
type tx struct {
	s        *Store
	ctx      context.Context
	b        *bbolt.Bucket // nil once fn has returned
	writable bool
	err      error // damage met by a method; the transaction must not commit
}

// live panics if t is used after its fn returned: a programming error that
// would otherwise read unmapped or reused pages.
func (t *tx) live() {
	if t.b == nil {
		panic("bolt: meta.Tx used after its View or Update returned")
	}
}

// guard is deferred by methods that call no user code.
func (t *tx) guard(err *error) {
	if r := recover(); r != nil {
		t.err = t.s.damaged(r)
		*err = t.err
	}
}

// Get implements [meta.Tx.Get]. The value is a copy, so the caller may keep
// or modify it.
func (t *tx) Get(key []byte) (_ []byte, err error) {
	t.live()
	defer t.guard(&err)
	// A cursor rather than Bucket.Get: it tells an empty value from an
	// absent key by the key it lands on, not by the value being nil.
	k, v := t.b.Cursor().Seek(key)
	if k == nil || !bytes.Equal(k, key) {
		return nil, meta.ErrNotFound
	}
	return append(make([]byte, 0, len(v)), v...), nil
}

// Put implements [meta.Tx.Put]. bbolt rejects an empty key and keys over
// 32 KiB.
func (t *tx) Put(key, value []byte) (err error) {
	t.live()
	if !t.writable {
		return meta.ErrReadOnly
	}
	defer t.guard(&err)
	// bbolt holds value by reference until commit; the caller may reuse it.
	v := make([]byte, len(value))
	copy(v, value)
	if err := t.b.Put(key, v); err != nil {
		return fmt.Errorf("bolt: put %d-byte key: %w", len(key), err)
	}
	return nil
}

// Delete implements [meta.Tx.Delete].
func (t *tx) Delete(key []byte) (err error) {
	t.live()
	if !t.writable {
		return meta.ErrReadOnly
	}
	defer t.guard(&err)
	if err := t.b.Delete(key); err != nil {
		return fmt.Errorf("bolt: delete %d-byte key: %w", len(key), err)
	}
	return nil
}

// Scan implements [meta.Tx.Scan]. It also stops, returning the context's
// error, when the transaction's context is done.
func (t *tx) Scan(start, end []byte, fn func(key, value []byte) error) (err error) {
	t.live()
	inFn := false
	defer func() {
		if inFn {
			return // fn's own panic
		}
		if r := recover(); r != nil {
			t.err = t.s.damaged(r)
			err = t.err
		}
	}()
	c := t.b.Cursor()
	n := 0
	for k, v := c.Seek(start); k != nil; k, v = c.Next() {
		if end != nil && bytes.Compare(k, end) >= 0 {
			return nil
		}
		if n++; n%scanCheckEvery == 0 {
			if err := t.ctx.Err(); err != nil {
				return err
			}
		}
		if v == nil {
			v = []byte{}
		}
		inFn = true
		err := fn(k, v)
		inFn = false
		if err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
