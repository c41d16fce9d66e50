package chunks

import "testing"

// TestBufClass checks the request-buffer classes: each holds what it is
// asked for, wastes at most an eighth (beyond the smallest class), and a
// buffer of a class's size goes back to that class.
func TestBufClass(t *testing.T) {
	prev := 0
	for n := 1; n <= 1<<maxPooledShift; n += 1 + n/97 {
		class, size, ok := bufClass(n)
		switch {
		case !ok:
			t.Fatalf("bufClass(%d) is not pooled", n)
		case size < n:
			t.Fatalf("bufClass(%d) = size %d, too small", n, size)
		case n > 1<<minPooledShift && size-n > n/8:
			t.Fatalf("bufClass(%d) = size %d, wastes more than an eighth", n, size)
		case class < prev || class >= bufClasses:
			t.Fatalf("bufClass(%d) = class %d after %d (of %d)", n, class, prev, bufClasses)
		}
		if c, s, _ := bufClass(size); c != class || s != size {
			t.Fatalf("bufClass(%d) = %d, %d; its size %d has class %d, size %d", n, class, size, size, c, s)
		}
		prev = class
	}
	if _, _, ok := bufClass(1<<maxPooledShift + 1); ok {
		t.Error("a buffer larger than the largest class is pooled")
	}
	var p bufPool
	bp := p.get(4<<20 + 12345)
	if len(*bp) != 0 || cap(*bp) < 4<<20+12345 {
		t.Fatalf("get: len %d cap %d", len(*bp), cap(*bp))
	}
	*bp = append(*bp, 1)
	p.put(bp)
	if got := p.get(4<<20 + 1); len(*got) != 0 || cap(*got) < 4<<20+1 {
		t.Fatalf("get after put: len %d cap %d", len(*got), cap(*got))
	}
}
