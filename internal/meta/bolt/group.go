package bolt

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/deltadisk/deltadisk/internal/meta"
	"go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Group commit. bbolt runs one write transaction at a time and fsyncs each
// commit twice (pages, then the meta page), so N writers committing one by
// one pay 2N fsyncs and wait in line for all of them. Instead, Updates that
// arrive while a commit is in progress queue up, and the next transaction
// runs all their closures one after the other and commits them together:
// one pair of fsyncs for the group. A lone Update commits at once, with no
// added delay: whoever finds no commit in progress leads, and on finishing
// hands the lead to the first caller queued meanwhile.
//
// The closures of a group run serially, each seeing the writes of those
// before it, so the group is equivalent to running them one by one in that
// order. bbolt has no savepoints: when a closure fails after others of its
// group ran, the transaction rolls back, the closures before it commit
// again without it, and it runs again first in the next transaction, so the
// error it returns is the one it meets on the committed state alone. That
// is why a closure may run more than once here, which the seam allows.

// maxGroup bounds the closures one transaction runs, so that one commit
// stays a bounded amount of work however many writers wait.
const maxGroup = 256

// committer queues the Updates waiting for a transaction.
type committer struct {
	mu      sync.Mutex
	queue   []*call
	leading bool // a caller is running a group; false means queue is empty

	updates, commits atomic.Uint64
}

// Stats counts a Store's write work since Open.
type Stats struct {
	Updates uint64 // Update calls that ran or were refused by their closure
	Commits uint64 // write transactions committed
	Queued  int    // Update calls waiting for a transaction now
}

// Stats returns the Store's counters: Updates / Commits is how many
// closures an fsynced commit carries on average.
func (s *Store) Stats() Stats {
	q := &s.commits
	q.mu.Lock()
	queued := len(q.queue)
	q.mu.Unlock()
	return Stats{Updates: q.updates.Load(), Commits: q.commits.Load(), Queued: queued}
}

// A call is one Update waiting for, or in, a group.
type call struct {
	ctx  context.Context
	fn   func(meta.Tx) error
	wake chan bool // true: lead the next group; false: finished

	finished bool
	err      error
	panicked bool
	panicVal any
	stack    []byte // where the closure panicked: the panic is raised again elsewhere
}

func (c *call) finish(err error) {
	c.finished, c.err = true, err
}

// update runs fn in the next group commit.
func (s *Store) update(ctx context.Context, fn func(meta.Tx) error) error {
	c := &call{ctx: ctx, fn: fn, wake: make(chan bool, 1)}
	q := &s.commits
	q.updates.Add(1)
	q.mu.Lock()
	q.queue = append(q.queue, c)
	lead := !q.leading
	q.leading = true
	q.mu.Unlock()
	if lead || <-c.wake {
		s.lead(c)
	}
	if c.panicked {
		s.logger.Error("meta update closure panicked; raising it again in its caller", "panic", c.panicVal, "stack", string(c.stack))
		panic(c.panicVal)
	}
	return c.err
}

// lead takes the queue's head (self first), runs it as one group, finishes
// its calls, and hands the lead on.
func (s *Store) lead(self *call) {
	q := &s.commits
	q.mu.Lock()
	n := min(len(q.queue), maxGroup)
	group := make([]*call, n)
	copy(group, q.queue)
	q.queue = append(q.queue[:0], q.queue[n:]...)
	q.mu.Unlock()

	s.commitGroup(group)

	q.mu.Lock()
	if len(q.queue) > 0 {
		q.queue[0].wake <- true
	} else {
		q.leading = false
	}
	q.mu.Unlock()
	for _, c := range group {
		if c != self {
			c.wake <- false
		}
	}
}

// commitGroup runs and commits calls, in order, in as few transactions as
// their failures allow, until every one is finished.
func (s *Store) commitGroup(calls []*call) {
	for {
		calls = unfinished(calls)
		if len(calls) == 0 {
			return
		}
		if k := s.runGroup(calls); k > 0 {
			// calls[k] failed after calls[:k] ran in the same transaction:
			// commit those alone, then let calls[k] lead the rest.
			s.commitGroup(calls[:k])
			calls = calls[k:]
		}
	}
}

func unfinished(calls []*call) []*call {
	out := calls[:0:0]
	for _, c := range calls {
		if !c.finished {
			out = append(out, c)
		}
	}
	return out
}

// runGroup runs calls in order in one transaction. When all that ran
// succeed it commits and finishes them with the commit's outcome, and
// returns 0. A call whose context is done is finished without running. The
// first closure to run that fails is finished with its error (the
// transaction rolls back; nothing else ran in it); one that fails after
// others ran is left unfinished and its index returned, the transaction
// rolled back.
func (s *Store) runGroup(calls []*call) (failedAt int) {
	var ran []*call
	errRollback := errors.New("rollback")
	err := s.run(true, func(btx *bbolt.Tx) error {
		b := btx.Bucket(bucket)
		if b == nil {
			return fmt.Errorf("%w: %s: bucket %q is missing", ErrCorrupt, s.path, bucket)
		}
		b.FillPercent = s.fill
		for i, c := range calls {
			if err := c.ctx.Err(); err != nil {
				c.finish(err)
				continue
			}
			t := &tx{s: s, ctx: c.ctx, b: b, writable: true}
			pv, stack, err := callFn(c.fn, t)
			t.b = nil // a Tx retained past fn now panics instead of reading freed pages
			if t.err != nil {
				// fn met a damaged page; whatever it did after is suspect.
				return t.err
			}
			if err == nil && stack == nil {
				ran = append(ran, c)
				continue
			}
			if len(ran) > 0 {
				failedAt = i
				return errRollback
			}
			if stack != nil {
				c.finished, c.panicked, c.panicVal, c.stack = true, true, pv, stack
			} else {
				c.finish(err)
			}
			return errRollback
		}
		return nil
	})
	switch {
	case errors.Is(err, errRollback):
		return failedAt
	case err == nil:
		s.commits.commits.Add(1)
		for _, c := range ran {
			c.finish(nil)
		}
		return 0
	case errors.Is(err, bberrors.ErrDatabaseNotOpen):
		err = meta.ErrClosed
	case errors.Is(err, ErrCorrupt):
	default:
		// Begin or Commit failed (a full disk, an I/O error): say which file.
		err = fmt.Errorf("bolt: %s: %w", s.path, err)
	}
	// Nothing of the group committed.
	for _, c := range unfinished(calls) {
		c.finish(err)
	}
	return 0
}

// callFn runs fn, recovering its panic: another caller's closure may be
// running on this goroutine, and the group must be rolled back and its
// callers released whatever one closure does. The panic goes on up in the
// goroutine of the Update that owns fn.
func callFn(fn func(meta.Tx) error, t *tx) (panicVal any, stack []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			panicVal, stack = r, debug.Stack()
		}
	}()
	return nil, nil, fn(t)
}
