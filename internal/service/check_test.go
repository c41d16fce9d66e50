package service_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/service"
)

// checked is a fixture holding one of everything Check looks at.
type checked struct {
	*fixture
	disk, attached, inc1, inc2, full, copied, copying *service.Resource
}

// newChecked makes disks (one attached), incremental and full snapshots, a
// grant in force and one revoked, a deployment, a finished copy and a
// copy waiting for its copier.
func newChecked(t *testing.T) *checked {
	t.Helper()
	ctx := t.Context()
	c := &checked{fixture: newFixture(t, nil)}
	c.disk = c.fixture.disk(t, diskID("d"), 1)
	c.attached = c.fixture.disk(t, diskID("att"), 1)
	if _, err := c.s.Attach(ctx, c.attached.ID(), "test"); err != nil {
		t.Fatal(err)
	}
	var err error
	snap := func(name string, incremental bool) *service.Resource {
		t.Helper()
		c.now = c.now.Add(time.Second) // copies go in creation order
		r, err := c.snapshot(t, snapID(name), c.disk.ID().String(), incremental)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	c.inc1, c.inc2, c.full = snap("i1", true), snap("i2", true), snap("full", false)
	if _, err := c.s.GrantAccess(ctx, c.inc1.ID(), "Read", 3600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.s.GrantAccess(ctx, c.full.ID(), "Read", 3600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.s.RevokeAccess(ctx, c.full.ID()); err != nil {
		t.Fatal(err)
	}
	if c.inc1, err = c.s.Get(ctx, c.inc1.ID()); err != nil {
		t.Fatal(err)
	}
	if err := c.s.PutDeployment(ctx, &service.Deployment{Subscription: sub, Group: "rg", Name: "dep", State: "Succeeded"}); err != nil {
		t.Fatal(err)
	}
	copyOf := func(name string, src *service.Resource) service.ResourceID {
		t.Helper()
		id := service.ResourceID{Subscription: sub, Group: "west", Kind: service.KindSnapshot, Name: name}
		if _, err := c.s.Put(ctx, id, service.Spec{Location: "westus",
			CreationData: service.CreationData{CreateOption: "CopyStart", SourceResourceID: src.ID().String()}}); err != nil {
			t.Fatal(err)
		}
		return id
	}
	stop := c.s.StartCopier(ctx, engineTransport{c.e})
	c.copied = c.waitCopy(t, copyOf("c1", c.inc1))
	stop()
	// No copier runs now: the next copy waits, as after a restart.
	if c.copying, err = c.s.Get(ctx, copyOf("c2", c.inc2)); err != nil {
		t.Fatal(err)
	}
	if c.copying.Copy == nil || c.copying.Copy.Done {
		t.Fatalf("copy c2 = %+v, want it waiting", c.copying.Copy)
	}
	return c
}

func (c *checked) check(t *testing.T) service.CheckReport {
	t.Helper()
	rep, err := c.s.Check(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// update changes the metadata store directly, as a bug or a torn
// operation would.
func (c *checked) update(t *testing.T, fn func(tx meta.Tx) error) {
	t.Helper()
	if err := c.s.Config().Meta.Update(t.Context(), fn); err != nil {
		t.Fatal(err)
	}
}

// editRecord rewrites a resource's stored record.
func (c *checked) editRecord(t *testing.T, id service.ResourceID, edit func(r *service.Resource)) {
	t.Helper()
	c.update(t, func(tx meta.Tx) error {
		b, err := tx.Get(resKey(id))
		if err != nil {
			return err
		}
		var r service.Resource
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		edit(&r)
		if b, err = json.Marshal(&r); err != nil {
			return err
		}
		return tx.Put(resKey(id), b)
	})
}

// The service's keys, as records.go and access.go lay them out; written
// out here so that a test damages exactly one of them.
func resKey(id service.ResourceID) []byte {
	return []byte("sR" + strings.ToLower(id.Subscription+"\x00"+id.Group+"\x00"+string(id.Kind)+"\x00"+id.Name))
}

func famKey(family string, id service.ResourceID) []byte {
	return append([]byte("sF"+family+"\x00"), resKey(id)...)
}

func grantKey(grant string) []byte { return []byte("sA" + grant) }

func groupKey(sub, group string) []byte { return []byte("sG" + strings.ToLower(sub+"\x00"+group)) }

// lowerID is how Check names a resource it knows only by its key.
func lowerID(id service.ResourceID) string {
	return service.ResourceID{Subscription: strings.ToLower(id.Subscription), Group: strings.ToLower(id.Group),
		Kind: id.Kind, Name: strings.ToLower(id.Name)}.String()
}

// wantProblems checks that rep lists each of want (an id and a part of
// the problem) and nothing else.
func wantProblems(t *testing.T, rep service.CheckReport, want ...service.CheckProblem) {
	t.Helper()
	found := make([]bool, len(rep.Problems))
	for _, w := range want {
		hit := false
		for i, p := range rep.Problems {
			if p.ID == w.ID && strings.Contains(p.Problem, w.Problem) {
				hit, found[i] = true, true
			}
		}
		if !hit {
			t.Errorf("Check lacks %s: %q; problems:\n%s", w.ID, w.Problem, problemList(rep))
		}
	}
	for i, p := range rep.Problems {
		if !found[i] {
			t.Errorf("Check reports %s: %s, want no such problem", p.ID, p.Problem)
		}
	}
}

func problemList(rep service.CheckReport) string {
	var b strings.Builder
	for _, p := range rep.Problems {
		fmt.Fprintf(&b, "\t%s: %s\n", p.ID, p.Problem)
	}
	return b.String()
}

// TestCheckClean: a service with one of everything checks clean, and
// counts what it read.
func TestCheckClean(t *testing.T) {
	c := newChecked(t)
	rep := c.check(t)
	wantProblems(t, rep)
	// d, att, i1, i2, full, c1 and c2; c2 holds no image yet, and the copy
	// line holds the region's volume.
	want := service.CheckReport{Groups: 6, Resources: 7, Deployments: 1, Grants: 1, FamilyKeys: 4, CopyLines: 1, Images: 7, Problems: rep.Problems}
	if fmt.Sprint(rep) != fmt.Sprint(want) {
		t.Errorf("Check() = %+v, want %+v", rep, want)
	}
	// A deleted disk takes its image along; its snapshots stay.
	if _, err := c.s.Delete(t.Context(), c.disk.ID()); err != nil {
		t.Fatal(err)
	}
	if rep := c.check(t); len(rep.Problems) != 0 || rep.Images != 6 {
		t.Errorf("after deleting the disk: %d images, problems:\n%s", rep.Images, problemList(rep))
	}
}

// TestCheckFindsDamage: each kind of damage, made by changing raw keys or
// the engine behind the service's back, is reported against the right id.
func TestCheckFindsDamage(t *testing.T) {
	p := func(id, problem string) service.CheckProblem { return service.CheckProblem{ID: id, Problem: problem} }
	tests := []struct {
		name   string
		damage func(t *testing.T, c *checked) []service.CheckProblem
	}{
		{"record without its image", func(t *testing.T, c *checked) []service.CheckProblem {
			for _, r := range []*service.Resource{c.full, c.attached} {
				if err := c.e.Delete(t.Context(), r.Image); err != nil {
					t.Fatal(err)
				}
			}
			return []service.CheckProblem{
				p(c.full.ID().String(), fmt.Sprintf("its image %d does not exist", c.full.Image)),
				p(c.attached.ID().String(), fmt.Sprintf("its image %d does not exist", c.attached.Image)),
			}
		}},
		{"image no record holds", func(t *testing.T, c *checked) []service.CheckProblem {
			id, err := c.e.CreateVolume(t.Context(), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			return []service.CheckProblem{p(fmt.Sprintf("image %d", id), "no record holds this volume")}
		}},
		{"image held twice and of the wrong kind", func(t *testing.T, c *checked) []service.CheckProblem {
			c.editRecord(t, c.full.ID(), func(r *service.Resource) { r.Image = c.disk.Image })
			return []service.CheckProblem{
				p(c.full.ID().String(), fmt.Sprintf("its image %d is held by another record too", c.disk.Image)),
				p(c.full.ID().String(), fmt.Sprintf("its image %d is a volume, not a snapshot", c.disk.Image)),
				p(fmt.Sprintf("image %d", c.full.Image), "no record holds this snapshot"),
			}
		}},
		{"record without any image", func(t *testing.T, c *checked) []service.CheckProblem {
			c.editRecord(t, c.inc2.ID(), func(r *service.Resource) { r.Image = 0 })
			return []service.CheckProblem{
				p(c.inc2.ID().String(), "it holds no image"),
				p(fmt.Sprintf("image %d", c.inc2.Image), "no record holds this snapshot"),
			}
		}},
		{"incremental snapshot without its family key", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Delete(famKey(c.inc2.FamilyID, c.inc2.ID())) })
			return []service.CheckProblem{p(c.inc2.ID().String(), "its family key (family \""+c.inc2.FamilyID+"\") is missing")}
		}},
		{"family key without its snapshot", func(t *testing.T, c *checked) []service.CheckProblem {
			ghost := snapID("Ghost")
			c.update(t, func(tx meta.Tx) error { return tx.Put(famKey(c.inc1.FamilyID, ghost), nil) })
			return []service.CheckProblem{p(lowerID(ghost), "but it does not exist")}
		}},
		{"family key of a full snapshot", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Put(famKey(c.inc1.FamilyID, c.full.ID()), nil) })
			return []service.CheckProblem{p(lowerID(c.full.ID()), "it is not an incremental snapshot")}
		}},
		{"family id mismatch", func(t *testing.T, c *checked) []service.CheckProblem {
			c.editRecord(t, c.inc2.ID(), func(r *service.Resource) { r.FamilyID = "elsewhere" })
			return []service.CheckProblem{
				p(lowerID(c.inc2.ID()), "but its family is \"elsewhere\""),
				p(c.inc2.ID().String(), "its family key (family \"elsewhere\") is missing"),
			}
		}},
		{"grant key of a record that does not exist", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Put(grantKey("g0"), resKey(snapID("gone"))) })
			return []service.CheckProblem{p("grant g0", "names "+lowerID(snapID("gone"))+", which does not exist")}
		}},
		{"grant key left by a record that has no grant", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Put(grantKey("g1"), resKey(c.disk.ID())) })
			return []service.CheckProblem{p("grant g1", "which has no grant")}
		}},
		{"grant key of another grant", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Put(grantKey("g2"), resKey(c.inc1.ID())) })
			return []service.CheckProblem{p("grant g2", "whose grant is "+c.inc1.Grant.ID)}
		}},
		{"grant without its key", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Delete(grantKey(c.inc1.Grant.ID)) })
			return []service.CheckProblem{p(c.inc1.ID().String(), "the index key of its grant "+c.inc1.Grant.ID+" is missing")}
		}},
		{"grant whose key names another record", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Put(grantKey(c.inc1.Grant.ID), resKey(c.inc2.ID())) })
			return []service.CheckProblem{
				p(c.inc1.ID().String(), "the index key of its grant "+c.inc1.Grant.ID+" names "+lowerID(c.inc2.ID())),
				p("grant "+c.inc1.Grant.ID, "which has no grant"),
			}
		}},
		{"copy line naming a copy that does not exist", func(t *testing.T, c *checked) []service.CheckProblem {
			line := c.editLine(t, func(l map[string]any) { l["active"] = snapID("nothing").String() })
			return []service.CheckProblem{
				p(line, "its active copy "+snapID("nothing").String()+" does not exist"),
				p(c.copying.ID().String(), "it is being copied, but no copy line names it active"),
			}
		}},
		{"copy line naming a finished copy", func(t *testing.T, c *checked) []service.CheckProblem {
			line := c.editLine(t, func(l map[string]any) { l["active"] = c.copied.ID().String() })
			return []service.CheckProblem{
				p(line, "its active copy "+c.copied.ID().String()+" is not being copied"),
				p(c.copying.ID().String(), "it is being copied, but no copy line names it active"),
			}
		}},
		{"copy line without its volume", func(t *testing.T, c *checked) []service.CheckProblem {
			var vol float64
			line := c.editLine(t, func(l map[string]any) { vol = l["volume"].(float64) })
			if err := c.e.Delete(t.Context(), engine.ID(vol)); err != nil {
				t.Fatal(err)
			}
			return []service.CheckProblem{p(line, fmt.Sprintf("its image %d does not exist", int64(vol)))}
		}},
		{"attached snapshot", func(t *testing.T, c *checked) []service.CheckProblem {
			c.editRecord(t, c.full.ID(), func(r *service.Resource) { r.Attached = &service.Attachment{Holder: "x"} })
			return []service.CheckProblem{p(c.full.ID().String(), "only a disk can be")}
		}},
		{"resources and deployment without their group", func(t *testing.T, c *checked) []service.CheckProblem {
			c.update(t, func(tx meta.Tx) error { return tx.Delete(groupKey(sub, "rg")) })
			var want []service.CheckProblem
			for _, r := range []*service.Resource{c.disk, c.attached, c.inc1, c.inc2, c.full} {
				want = append(want, p(r.ID().String(), "its resource group does not exist"))
			}
			return append(want, p(service.GroupID(sub, "rg")+"/providers/Microsoft.Resources/deployments/dep", "its resource group does not exist"))
		}},
		{"record that does not decode", func(t *testing.T, c *checked) []service.CheckProblem {
			bad := diskID("Bad")
			c.update(t, func(tx meta.Tx) error { return tx.Put(resKey(bad), []byte("{")) })
			return []service.CheckProblem{p(lowerID(bad), "does not decode")}
		}},
		{"record under another's key", func(t *testing.T, c *checked) []service.CheckProblem {
			other := diskID("other")
			c.update(t, func(tx meta.Tx) error {
				b, err := tx.Get(resKey(c.disk.ID()))
				if err != nil {
					return err
				}
				return tx.Put(resKey(other), b)
			})
			return []service.CheckProblem{
				p(c.disk.ID().String(), "stored under the key of "+lowerID(other)),
				p(c.disk.ID().String(), fmt.Sprintf("its image %d is held by another record too", c.disk.Image)),
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecked(t)
			want := tc.damage(t, c)
			wantProblems(t, c.check(t), want...)
		})
	}
}

// editLine rewrites the one copy line and returns the id Check gives it.
func (c *checked) editLine(t *testing.T, edit func(l map[string]any)) string {
	t.Helper()
	var id string
	c.update(t, func(tx meta.Tx) error {
		var key, val []byte
		if err := tx.Scan([]byte("sY"), []byte("sZ"), func(k, v []byte) error {
			key, val = append([]byte(nil), k...), append([]byte(nil), v...)
			return nil
		}); err != nil {
			return err
		}
		l := map[string]any{}
		if err := json.Unmarshal(val, &l); err != nil {
			return err
		}
		edit(l)
		b, err := json.Marshal(l)
		if err != nil {
			return err
		}
		id = "copy line " + strings.ReplaceAll(string(key[2:]), "\x00", "/")
		return tx.Put(key, b)
	})
	return id
}

// FuzzCheck: Check reads a record of any shape in any of the service's key
// spaces, and neither fails nor panics on it: damage is a problem to
// report, not a reason to stop.
func FuzzCheck(f *testing.F) {
	spaces := []string{"sG", "sD", "sR", "sF", "sA", "sY"}
	disk := diskID("d")
	rec := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(byte(0), []byte(sub+"\x00new"), rec(service.Group{Subscription: sub, Name: "new", Location: "eastus"}))
	f.Add(byte(1), []byte(sub+"\x00gone\x00dep"), rec(service.Deployment{Subscription: sub, Group: "gone", Name: "dep"}))
	f.Add(byte(2), resKey(disk)[2:], rec(service.Resource{Kind: service.KindDisk, Subscription: sub, Group: "rg", Name: "d", Image: 1,
		Grant: &service.Grant{ID: "g"}, Attached: &service.Attachment{Holder: "h"}}))
	f.Add(byte(2), resKey(snapID("c"))[2:], rec(service.Resource{Kind: service.KindSnapshot, Subscription: sub, Group: "rg", Name: "c",
		Incremental: true, FamilyID: "f", Copy: &service.CopyState{}}))
	f.Add(byte(3), famKey("f", snapID("s"))[2:], []byte{})
	f.Add(byte(4), []byte("g"), resKey(disk))
	f.Add(byte(5), []byte(sub+"\x00f\x00westus"), rec(map[string]any{"volume": 1, "familyId": "h", "active": snapID("c").String()}))
	f.Fuzz(func(t *testing.T, space byte, key, value []byte) {
		c := &checked{fixture: newFixture(t, nil)}
		k := append([]byte(spaces[int(space)%len(spaces)]), key...)
		existed := false
		c.update(t, func(tx meta.Tx) error {
			_, err := tx.Get(k)
			existed = err == nil
			return tx.Put(k, value)
		})
		rep := c.check(t)
		want := 7 // the fixture's 6 groups and the fuzzed record
		if existed {
			want = 6
		}
		if n := rep.Groups + rep.Deployments + rep.Resources + rep.FamilyKeys + rep.Grants + rep.CopyLines; n != want {
			t.Errorf("Check read %d records, want %d", n, want)
		}
	})
}
