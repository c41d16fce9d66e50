package service

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

const keyGrant = "sA" // sA grantID → resource key

func grantKey(id string) []byte { return []byte(keyGrant + id) }

// maxGrantSeconds bounds a grant's duration (int32 seconds, as ARM's).
const maxGrantSeconds = 1<<31 - 1

// GrantAccess starts a SAS access to a disk or snapshot (beginGetAccess).
// Read is for disks and snapshots; Write is for an Upload disk awaiting its
// image and, as deltadisk's extension, for any unattached disk.
func (s *Service) GrantAccess(ctx context.Context, id ResourceID, access string, seconds int64) (*Resource, error) {
	switch {
	case strings.EqualFold(access, AccessRead):
		access = AccessRead
	case strings.EqualFold(access, AccessWrite):
		access = AccessWrite
	default:
		return nil, invalid("access", "access must be Read or Write; got '%s'.", access)
	}
	if seconds < 1 || seconds > maxGrantSeconds {
		return nil, invalid("durationInSeconds", "durationInSeconds must be from 1 to %d; got %d.", maxGrantSeconds, seconds)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	now := s.now()
	kind := strings.TrimSuffix(string(r.Kind), "s")
	switch {
	case r.Image == 0:
		return nil, notAllowed("Snapshot '%s' is a copy that holds no data yet (or failed); grant access once its copy is complete.", r.Name)
	case r.Attached != nil:
		return nil, notAllowed("Disk '%s' is attached (held by %s); no access can be granted until it is detached.", r.Name, r.Attached.Holder)
	case r.GrantActive(now):
		return nil, notAllowed("The %s '%s' already has an active SAS (state %s); only one is allowed at a time. Revoke it first.", kind, r.Name, r.State(now))
	case r.Kind == KindSnapshot && access == AccessWrite:
		return nil, notAllowed("A snapshot is read-only: grant Read access to snapshot '%s'.", r.Name)
	case r.AwaitingUpload && access == AccessRead:
		return nil, notAllowed("Disk '%s' is awaiting its upload (state ReadyToUpload): grant Write access and upload the VHD first.", r.Name)
	}
	if r.Incremental {
		n, err := s.activeInFamily(ctx, r.FamilyID, now)
		if err != nil {
			return nil, err
		}
		if n >= s.policy.MaxSASPerFamily {
			return nil, notAllowed("%d snapshots of the incremental family of snapshot '%s' already have an active SAS; at most %d may at a time. Revoke one first.",
				n, r.Name, s.policy.MaxSASPerFamily)
		}
	}
	r.Grant = &Grant{ID: randomID(), Access: access, Start: now.UTC().Truncate(time.Second), Expiry: now.UTC().Add(time.Duration(seconds) * time.Second).Truncate(time.Second)}
	err = s.meta.Update(ctx, func(tx meta.Tx) error {
		if err := tx.Put(grantKey(r.Grant.ID), resourceKey(r.ID())); err != nil {
			return err
		}
		return putRecord(tx, resourceKey(r.ID()), r)
	})
	if err != nil {
		return nil, err
	}
	return r, nil
}

// activeInFamily counts a family's snapshots with a grant in force.
func (s *Service) activeInFamily(ctx context.Context, family string, now time.Time) (int, error) {
	n := 0
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		n = 0
		p := familyPrefix(family)
		return tx.Scan(p, prefixEnd(p), func(k, _ []byte) error {
			var r Resource
			ok, err := getRecord(tx, k[len(p):], &r)
			if err != nil || !ok {
				return err
			}
			if r.GrantActive(now) {
				n++
			}
			return nil
		})
	})
	return n, err
}

// RevokeAccess ends a SAS access (endGetAccess); every SAS of the grant
// stops working. For an Upload disk it finalises the upload: a valid
// fixed VHD footer makes the disk Unattached, otherwise it stays
// ReadyToUpload and RevokeAccess returns the reason, after revoking.
func (s *Service) RevokeAccess(ctx context.Context, id ResourceID) (*Resource, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var old string
	if r.Grant != nil {
		old = r.Grant.ID
	}
	r.Grant = nil
	var uploadErr error
	if r.AwaitingUpload {
		if uploadErr = uploadValid(r); uploadErr == nil {
			r.AwaitingUpload = false
		} else {
			uploadErr = &Error{Kind: ErrInvalid, Code: "BadRequest", Message: "Disk '" + r.Name + "' stays ReadyToUpload: " + uploadErr.Error()}
		}
	}
	err = s.meta.Update(ctx, func(tx meta.Tx) error {
		if old != "" {
			if err := tx.Delete(grantKey(old)); err != nil {
				return err
			}
		}
		return putRecord(tx, resourceKey(r.ID()), r)
	})
	if err != nil {
		return nil, err
	}
	return r, uploadErr
}

const keySystemGrant = "sS" // sS grantID → systemGrant

// systemGrant is a read grant the server gives itself (the transport of a
// cross-region copy): invisible in diskState and outside every limit.
type systemGrant struct {
	Key    []byte    `json:"key"`
	Expiry time.Time `json:"expiry"`
}

// SystemGrant starts a read grant on a snapshot for the server's own use.
func (s *Service) SystemGrant(ctx context.Context, id ResourceID, d time.Duration) (*Grant, error) {
	now := s.now().UTC().Truncate(time.Second)
	g := &Grant{ID: randomID(), Access: AccessRead, Start: now.Add(-time.Minute), Expiry: now.Add(d)}
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		var r Resource
		if ok, err := getRecord(tx, resourceKey(id), &r); err != nil || !ok {
			if err == nil {
				err = resourceNotFound(id)
			}
			return err
		}
		return putRecord(tx, []byte(keySystemGrant+g.ID), systemGrant{Key: resourceKey(id), Expiry: g.Expiry})
	})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// endSystemGrants ends the system grants of an earlier run: the copies
// that used them hold them no more.
func (s *Service) endSystemGrants(ctx context.Context) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var keys [][]byte
		p := []byte(keySystemGrant)
		if err := tx.Scan(p, prefixEnd(p), func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// EndSystemGrant ends a grant SystemGrant started.
func (s *Service) EndSystemGrant(ctx context.Context, grantID string) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error { return tx.Delete([]byte(keySystemGrant + grantID)) })
}

// ResolveGrant returns the resource a grant gives access to, if the grant
// is still in force; the data plane calls it on every request.
func (s *Service) ResolveGrant(ctx context.Context, grantID string) (*Resource, error) {
	var r Resource
	system := false
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		key, err := tx.Get(grantKey(grantID))
		if errors.Is(err, meta.ErrNotFound) {
			var sg systemGrant
			ok, err := getRecord(tx, []byte(keySystemGrant+grantID), &sg)
			if err != nil {
				return err
			}
			if !ok || !s.now().Before(sg.Expiry) {
				return notFound("GrantNotFound", "The access grant does not exist or was revoked.")
			}
			system = true
			key = sg.Key
		} else if err != nil {
			return err
		}
		ok, err := getRecord(tx, key, &r)
		if err == nil && !ok {
			err = notFound("GrantNotFound", "The resource of the access grant no longer exists.")
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if system {
		return &r, nil
	}
	if r.Grant == nil || r.Grant.ID != grantID || !r.GrantActive(s.now()) {
		return nil, notFound("GrantNotFound", "The access grant has expired or was revoked.")
	}
	return &r, nil
}

// Move moves disks and full snapshots from one resource group to another
// of the same subscription (the moveResources action). It moves all or
// nothing.
func (s *Service) Move(ctx context.Context, sub, group, targetGroupID string, ids []string) error {
	tsub, tgroup, err := ParseGroupID(targetGroupID)
	if err != nil {
		return invalid("targetResourceGroup", "%v", err)
	}
	if !strings.EqualFold(tsub, sub) {
		return notAllowed("Moving resources to another subscription (%s) is not allowed.", tsub)
	}
	if len(ids) == 0 {
		return invalid("resources", "No resources to move.")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.GetGroup(ctx, sub, group); err != nil {
		return err
	}
	target, err := s.GetGroup(ctx, tsub, tgroup)
	if err != nil {
		return err
	}
	now := s.now()
	var moving []*Resource
	for _, raw := range ids {
		id, err := ParseResourceID(raw)
		if err != nil {
			return invalid("resources", "%v", err)
		}
		if !strings.EqualFold(id.Subscription, sub) || !strings.EqualFold(id.Group, group) {
			return invalid("resources", "Resource '%s' is not in resource group '%s'.", raw, group)
		}
		r, err := s.Get(ctx, id)
		if err != nil {
			return err
		}
		switch {
		case r.Attached != nil:
			return notAllowed("Disk '%s' is attached; detach it before moving it.", r.Name)
		case r.Incremental:
			return notAllowed("Incremental snapshot '%s' cannot be moved to another resource group or subscription.", r.Name)
		case r.GrantActive(now):
			return notAllowed("'%s' has an active SAS; revoke access before moving it.", r.Name)
		}
		moving = append(moving, r)
	}
	// Records are rewritten outside the transaction's closure, which may
	// run more than once.
	type move struct {
		from, to []byte
		rec      Resource
	}
	var moves []move
	for _, r := range moving {
		m := move{from: resourceKey(r.ID()), rec: *r}
		m.rec.Group = target.Name
		m.to = resourceKey(m.rec.ID())
		moves = append(moves, m)
	}
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		for _, m := range moves {
			var existing Resource
			if ok, err := getRecord(tx, m.to, &existing); err != nil {
				return err
			} else if ok {
				return &Error{Kind: ErrConflict, Code: "Conflict", Message: "Resource group '" + target.Name + "' already holds '" + m.rec.Name + "'."}
			}
			if err := tx.Delete(m.from); err != nil {
				return err
			}
			if err := putRecord(tx, m.to, &m.rec); err != nil {
				return err
			}
		}
		return nil
	})
}

// WriteFooter writes p at offset off of the 512 bytes an upload writes past
// an Upload disk's data: the VHD footer that revoking access validates.
func (s *Service) WriteFooter(ctx context.Context, id ResourceID, off int, p []byte) error {
	if off < 0 || off+len(p) > vhd.FooterSize {
		return invalid("range", "The footer is %d bytes; a write at %d of %d bytes does not fit.", vhd.FooterSize, off, len(p))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, err := s.Get(ctx, id)
	if err != nil {
		return err
	}
	if !r.AwaitingUpload {
		return notAllowed("Disk '%s' is not awaiting an upload; its VHD footer is the server's.", r.Name)
	}
	if len(r.Footer) != vhd.FooterSize {
		r.Footer = make([]byte, vhd.FooterSize)
	}
	copy(r.Footer[off:], p)
	r.Version++
	r.Modified = s.now().UTC()
	return s.meta.Update(ctx, func(tx meta.Tx) error { return putRecord(tx, resourceKey(r.ID()), r) })
}

// NoteWrite records that a disk's data changed through the data plane, so
// that its ETag and Last-Modified change.
func (s *Service) NoteWrite(ctx context.Context, id ResourceID) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		r.Version++
		r.Modified = s.now().UTC()
		return putRecord(tx, resourceKey(r.ID()), r)
	})
}
