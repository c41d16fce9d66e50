package metatest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/deltadisk/deltadisk/internal/meta"
	"pgregory.net/rapid"
)

// model is the reference a store is compared with: a map, sorted on demand.
type model map[string][]byte

// scan returns the pairs of m in [start, end), sorted; nil end is unbounded.
func (m model) scan(start, end []byte) []kv {
	var kvs []kv
	for k, v := range m {
		if k >= string(start) && (end == nil || k < string(end)) {
			kvs = append(kvs, kv{[]byte(k), v})
		}
	}
	slices.SortFunc(kvs, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	return kvs
}

// modelOp is one write of a generated Update.
type modelOp struct {
	del  bool
	k, v []byte
}

func (o modelOp) String() string {
	if o.del {
		return fmt.Sprintf("delete %x", o.k)
	}
	return fmt.Sprintf("put %x=%x", o.k, o.v)
}

var (
	// Few distinct bytes, so that generated keys collide, share prefixes
	// and sit at both ends of the byte range.
	keyByte  = rapid.SampledFrom([]byte{0x00, 0x01, 'a', 0x7f, 0x80, 0xfe, 0xff})
	keyGen   = rapid.SliceOfN(keyByte, 1, 3)
	boundGen = rapid.OneOf(rapid.Just([]byte(nil)), rapid.SliceOfN(keyByte, 0, 3))
	valueGen = rapid.SliceOfN(rapid.Byte(), 0, 6)
	opGen    = rapid.Custom(func(t *rapid.T) modelOp {
		o := modelOp{k: keyGen.Draw(t, "key")}
		if o.del = rapid.IntRange(0, 3).Draw(t, "kind") == 0; !o.del {
			o.v = valueGen.Draw(t, "value")
		}
		return o
	})
)

var errAbort = errors.New("metatest: abort")

// testModel runs random histories of updates (some aborted), gets and
// scans, and compares every answer with the model's.
func testModel(t *testing.T, newStore NewStore) {
	s, _ := open(t, newStore)
	ctx := t.Context()
	rapid.Check(t, func(rt *rapid.T) {
		clearStore(rt, s)
		m := model{}
		rt.Repeat(map[string]func(*rapid.T){
			"update": func(rt *rapid.T) {
				ops := rapid.SliceOfN(opGen, 1, 8).Draw(rt, "ops")
				abort := rapid.IntRange(0, 4).Draw(rt, "abort") == 0
				var next model
				err := s.Update(ctx, func(tx meta.Tx) error {
					next = maps.Clone(m)
					for _, o := range ops {
						var err error
						if o.del {
							err = tx.Delete(o.k)
							delete(next, string(o.k))
						} else {
							err = tx.Put(o.k, o.v)
							next[string(o.k)] = bytes.Clone(o.v)
						}
						if err != nil {
							return fmt.Errorf("%v: %w", o, err)
						}
						v, err := tx.Get(o.k)
						want, ok := next[string(o.k)]
						if ok != (err == nil) || !bytes.Equal(v, want) {
							return fmt.Errorf("after %v in the same Update, Get = %x, %v; want %x (present %t)", o, v, err, want, ok)
						}
					}
					got, err := scanTx(tx, nil, nil)
					if err != nil {
						return err
					}
					if want := next.scan(nil, nil); !equalKVs(got, want) {
						return fmt.Errorf("Scan in Update = %v, want %v", got, want)
					}
					if abort {
						return errAbort
					}
					return nil
				})
				switch {
				case abort && !errors.Is(err, errAbort):
					rt.Fatalf("Update(aborted) = %v, want errAbort", err)
				case !abort && err != nil:
					rt.Fatalf("Update() = %v, want nil", err)
				case !abort:
					m = next
				}
			},
			"get": func(rt *rapid.T) {
				k := keyGen.Draw(rt, "key")
				var v []byte
				err := s.View(ctx, func(tx meta.Tx) error {
					got, err := tx.Get(k)
					v = bytes.Clone(got)
					return err
				})
				want, ok := m[string(k)]
				if ok && (err != nil || !bytes.Equal(v, want)) {
					rt.Fatalf("Get(%x) = %x, %v; want %x, nil", k, v, err, want)
				}
				if !ok && !errors.Is(err, meta.ErrNotFound) {
					rt.Fatalf("Get(%x) = %x, %v; want ErrNotFound", k, v, err)
				}
			},
			"scan": func(rt *rapid.T) {
				start, end := boundGen.Draw(rt, "start"), boundGen.Draw(rt, "end")
				limit := rapid.IntRange(0, 4).Draw(rt, "limit") // 0: no limit
				errLimit := errors.New("limit")
				var got []kv
				err := s.View(ctx, func(tx meta.Tx) error {
					return tx.Scan(start, end, func(k, v []byte) error {
						got = append(got, kv{bytes.Clone(k), bytes.Clone(v)})
						if len(got) == limit {
							return errLimit
						}
						return nil
					})
				})
				want := m.scan(start, end)
				wantErr := error(nil)
				if limit > 0 && len(want) >= limit {
					want, wantErr = want[:limit], errLimit
				}
				if !errors.Is(err, wantErr) || !equalKVs(got, want) {
					rt.Fatalf("Scan(%x, %x) stopping after %d = %v, %v; want %v, %v", start, end, limit, got, err, want, wantErr)
				}
			},
			"": func(rt *rapid.T) { // after every action
				if got, want := scan(rt, s, nil, nil), m.scan(nil, nil); !equalKVs(got, want) {
					rt.Fatalf("store holds %v, model %v", got, want)
				}
			},
		})
	})
}

// clearStore deletes every key, so that each rapid run starts empty without
// the cost of a new store.
func clearStore(t tb, s meta.Store) {
	t.Helper()
	mustUpdate(t, s, func(tx meta.Tx) error {
		kvs, err := scanTx(tx, nil, nil)
		if err != nil {
			return err
		}
		for _, p := range kvs {
			if err := tx.Delete(p.k); err != nil {
				return err
			}
		}
		return nil
	})
	if kvs := scan(t, s, nil, nil); len(kvs) != 0 {
		t.Fatalf("store holds %v after deleting every key", kvs)
	}
}
