package chunks

import "context"

// Backend stores immutable named objects (packs). Implementations must give
// read-after-write consistency and atomic Put: a reader sees all of an
// object or nothing, never a prefix, including after a crash. Put returns
// only once the object is durable. All methods are safe for concurrent use.
//
// Names are slash-separated paths such as "packs/0123-abcd", without empty,
// "." or ".." segments; a name is never the directory of another (not both
// "a/b" and "a/b/c"), so a file-system backend can map names to files.
type Backend interface {
	// Put stores data under name. Names are written once; Put of an
	// existing name replaces it atomically. Put must not retain data after
	// it returns (the Store reuses its pack buffer).
	Put(ctx context.Context, name string, data []byte) error
	// ReadAt fills p from offset off of the named object. It does not
	// return partial results: a range past the end is an error. A missing
	// object is ErrNotFound.
	ReadAt(ctx context.Context, name string, p []byte, off int64) error
	// Delete removes the object; deleting an absent object is not an error.
	Delete(ctx context.Context, name string) error
	// List calls fn for each object whose name has prefix, in the caller's
	// goroutine, in no particular order. It stops at the first error fn
	// returns and returns it.
	List(ctx context.Context, prefix string, fn func(name string, size int64) error) error
	Close() error
}
