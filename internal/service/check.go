package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// CheckReport is what [Service.Check] found: how many records of each kind
// it read, and every disagreement among them and with the engine's images.
type CheckReport struct {
	Groups      int `json:"groups"`
	Resources   int `json:"resources"`
	Deployments int `json:"deployments"`
	// Grants counts grant index keys; FamilyKeys incremental snapshots'
	// family keys.
	Grants     int `json:"grants"`
	FamilyKeys int `json:"familyKeys"`
	CopyLines  int `json:"copyLines"`
	Images     int `json:"images"`
	// Problems lists every disagreement, in the order the check met them.
	Problems []CheckProblem `json:"problems"`
}

// CheckProblem is one disagreement.
type CheckProblem struct {
	// ID names the record at fault: a resource's, group's or deployment's
	// ARM id, "image 7", "grant <id>" or "copy line <sub>/<family>/<region>".
	ID      string `json:"id"`
	Problem string `json:"problem"`
}

// imageUse is what Check keeps of each engine image while it walks the
// records: its kind and whether a record holds it yet.
type imageUse struct {
	kind engine.Kind
	held bool
}

// Check verifies that the service's records agree with each other and with
// the engine's images: every resource holds an image of its kind that no
// other record holds and that exists, every image is held by a record,
// every incremental snapshot has its family key and every family key its
// snapshot, grants and their index keys name each other, copy lines and
// running copies name each other, attachments are on disks and every
// resource and deployment is in a group that exists. It changes nothing.
//
// It reads everything in one metadata view, so it sees one state; an
// operation that spans transactions can show as a problem while it runs.
// Memory: one entry per engine image (its id, kind and a flag: 20 to 40
// bytes with the map's overhead) and the ids of the copies running; every
// other record is streamed and checked against the records it names by
// point reads.
func (s *Service) Check(ctx context.Context) (CheckReport, error) {
	var rep CheckReport
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		rep = CheckReport{Problems: []CheckProblem{}}
		c := checker{tx: tx, rep: &rep, images: make(map[engine.ID]imageUse)}
		if err := s.engine.ScanImages(tx, func(id engine.ID, kind engine.Kind) error {
			c.images[id] = imageUse{kind: kind}
			return nil
		}); err != nil {
			return err
		}
		rep.Images = len(c.images)
		for _, step := range []func() error{c.copyLines, c.groups, c.deployments, c.resources, c.familyKeys, c.grantKeys} {
			if err := step(); err != nil {
				return err
			}
		}
		c.unheldImages()
		return nil
	})
	return rep, err
}

// checker holds one Check's state inside its view.
type checker struct {
	tx     meta.Tx
	rep    *CheckReport
	images map[engine.ID]imageUse
	// copying holds the lower-cased ids of the copy targets copy lines
	// name as active.
	copying map[string]bool
	// group and groupFound cache the last group looked up: a group's
	// resources are adjacent in key order.
	group      string
	groupFound bool
}

func (c *checker) bad(id, format string, args ...any) {
	c.rep.Problems = append(c.rep.Problems, CheckProblem{ID: id, Problem: fmt.Sprintf(format, args...)})
}

func (c *checker) scan(prefix string, fn func(k, v []byte) error) error {
	p := []byte(prefix)
	return c.tx.Scan(p, prefixEnd(p), fn)
}

// hold records that a record holds image id, and reports an image that is
// missing, of the wrong kind or held twice.
func (c *checker) hold(who string, id engine.ID, want engine.Kind) {
	img, ok := c.images[id]
	if !ok {
		c.bad(who, "its image %d does not exist", id)
		return
	}
	if img.held {
		c.bad(who, "its image %d is held by another record too", id)
	}
	if img.kind != want {
		c.bad(who, "its image %d is a %s, not a %s", id, img.kind, want)
	}
	img.held = true
	c.images[id] = img
}

func (c *checker) copyLines() error {
	c.copying = make(map[string]bool)
	return c.scan(keyCopyLine, func(k, v []byte) error {
		c.rep.CopyLines++
		who := "copy line " + strings.ReplaceAll(string(k[len(keyCopyLine):]), "\x00", "/")
		var l copyLine
		if err := unmarshal(k, v, &l); err != nil {
			c.bad(who, "%v", err)
			return nil
		}
		c.hold(who, l.Volume, engine.KindVolume)
		if l.Active == "" {
			return nil
		}
		id, err := ParseResourceID(l.Active)
		if err != nil {
			c.bad(who, "its active copy %q is not a resource id", l.Active)
			return nil
		}
		var r Resource
		switch ok, err := getRecord(c.tx, resourceKey(id), &r); {
		case err != nil:
			c.bad(who, "%v", err)
		case !ok:
			c.bad(who, "its active copy %s does not exist", l.Active)
		case r.Copy == nil || r.Copy.Done:
			c.bad(who, "its active copy %s is not being copied", l.Active)
		default:
			c.copying[strings.ToLower(id.String())] = true
		}
		return nil
	})
}

func (c *checker) groups() error {
	return c.scan(keyGroup, func(k, v []byte) error {
		c.rep.Groups++
		var g Group
		if err := unmarshal(k, v, &g); err != nil {
			c.bad(displayKey(k), "%v", err)
		} else if !bytes.Equal(k, groupKey(g.Subscription, g.Name)) {
			c.bad(g.ID(), "stored under the key %q", k)
		}
		return nil
	})
}

// inGroup reports whether a group exists, looking it up only when it is
// not the last one asked about.
func (c *checker) inGroup(sub, group string) (bool, error) {
	key := groupKey(sub, group)
	if string(key) == c.group {
		return c.groupFound, nil
	}
	_, err := c.tx.Get(key)
	if err != nil && !errors.Is(err, meta.ErrNotFound) {
		return false, err
	}
	c.group, c.groupFound = string(key), err == nil
	return c.groupFound, nil
}

func (c *checker) deployments() error {
	return c.scan(keyDeployment, func(k, v []byte) error {
		c.rep.Deployments++
		var d Deployment
		if err := unmarshal(k, v, &d); err != nil {
			c.bad(displayKey(k), "%v", err)
			return nil
		}
		ok, err := c.inGroup(d.Subscription, d.Group)
		if err == nil && !ok {
			c.bad(GroupID(d.Subscription, d.Group)+"/providers/Microsoft.Resources/deployments/"+d.Name, "its resource group does not exist")
		}
		return err
	})
}

func (c *checker) resources() error {
	return c.scan(keyResource, func(k, v []byte) error {
		c.rep.Resources++
		var r Resource
		if err := unmarshal(k, v, &r); err != nil {
			c.bad(displayKey(k), "%v", err)
			return nil
		}
		who := r.ID().String()
		if !bytes.Equal(k, resourceKey(r.ID())) {
			c.bad(who, "stored under the key of %s", displayKey(k))
		}
		if ok, err := c.inGroup(r.Subscription, r.Group); err != nil {
			return err
		} else if !ok {
			c.bad(who, "its resource group does not exist")
		}
		want := engine.KindSnapshot
		if r.Kind == KindDisk {
			want = engine.KindVolume
		}
		// Only a copy that is running or failed holds no data.
		copying := r.Copy != nil && !r.Copy.Done
		switch {
		case r.Image != 0:
			c.hold(who, r.Image, want)
		case !copying && (r.Copy == nil || r.Copy.Error == nil):
			c.bad(who, "it holds no image")
		}
		if copying && !c.copying[strings.ToLower(who)] {
			c.bad(who, "it is being copied, but no copy line names it active")
		}
		if r.Attached != nil && r.Kind != KindDisk {
			c.bad(who, "it is attached, but only a disk can be")
		}
		if r.Incremental {
			if err := c.wantKey(who, familyKey(r.FamilyID, r.ID()), nil, "its family key (family %q)", r.FamilyID); err != nil {
				return err
			}
		}
		if r.Grant != nil {
			return c.wantKey(who, grantKey(r.Grant.ID), k, "the index key of its grant %s", r.Grant.ID)
		}
		return nil
	})
}

// wantKey reports a key that is missing or, when value is set, holds
// something else.
func (c *checker) wantKey(who string, key, value []byte, what string, args ...any) error {
	got, err := c.tx.Get(key)
	switch {
	case errors.Is(err, meta.ErrNotFound):
		c.bad(who, "%s is missing", fmt.Sprintf(what, args...))
	case err != nil:
		return err
	case value != nil && !bytes.Equal(got, value):
		c.bad(who, "%s names %s", fmt.Sprintf(what, args...), displayKey(got))
	}
	return nil
}

func (c *checker) familyKeys() error {
	return c.scan(keyFamily, func(k, _ []byte) error {
		c.rep.FamilyKeys++
		family, rkey, ok := bytes.Cut(k[len(keyFamily):], []byte{0})
		if !ok {
			c.bad(displayKey(k), "a family key without a resource")
			return nil
		}
		who := displayKey(rkey)
		var r Resource
		switch ok, err := getRecord(c.tx, rkey, &r); {
		case err != nil:
			c.bad(who, "%v", err)
		case !ok:
			c.bad(who, "family %q has a key for it, but it does not exist", family)
		case !r.Incremental:
			c.bad(who, "family %q has a key for it, but it is not an incremental snapshot", family)
		case r.FamilyID != string(family):
			c.bad(who, "family %q has a key for it, but its family is %q", family, r.FamilyID)
		}
		return nil
	})
}

func (c *checker) grantKeys() error {
	return c.scan(keyGrant, func(k, v []byte) error {
		c.rep.Grants++
		grant := string(k[len(keyGrant):])
		who := "grant " + grant
		var r Resource
		switch ok, err := getRecord(c.tx, v, &r); {
		case err != nil:
			c.bad(who, "%v", err)
		case !ok:
			c.bad(who, "its index key names %s, which does not exist", displayKey(v))
		case r.Grant == nil:
			c.bad(who, "its index key names %s, which has no grant", displayKey(v))
		case r.Grant.ID != grant:
			c.bad(who, "its index key names %s, whose grant is %s", displayKey(v), r.Grant.ID)
		}
		return nil
	})
}

// unheldImages reports the images no record holds, in id order: Open's
// reconcile would delete them.
func (c *checker) unheldImages() {
	var ids []engine.ID
	for id, img := range c.images {
		if !img.held {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		c.bad(fmt.Sprintf("image %d", id), "no record holds this %s", c.images[id].kind)
	}
}

// displayKey shows a resource key as the resource's ARM id (lower-cased,
// as keys are), and any other key quoted.
func displayKey(k []byte) string {
	if rest, ok := bytes.CutPrefix(k, []byte(keyResource)); ok {
		if p := strings.Split(string(rest), "\x00"); len(p) == 4 {
			return ResourceID{Subscription: p[0], Group: p[1], Kind: Kind(p[2]), Name: p[3]}.String()
		}
	}
	return fmt.Sprintf("key %q", k)
}
