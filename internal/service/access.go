package service

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
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
	var out *Resource
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		now := s.now()
		kind := strings.TrimSuffix(string(r.Kind), "s")
		switch {
		case r.Image == 0:
			return notAllowed("Snapshot '%s' is a copy that holds no data yet (or failed); grant access once its copy is complete.", r.Name)
		case r.Attached != nil:
			return notAllowed("Disk '%s' is attached (held by %s); no access can be granted until it is detached.", r.Name, r.Attached.Holder)
		case r.GrantActive(now):
			return notAllowed("The %s '%s' already has an active SAS (state %s); only one is allowed at a time. Revoke it first.", kind, r.Name, r.State(now))
		case r.Kind == KindSnapshot && access == AccessWrite:
			return notAllowed("A snapshot is read-only: grant Read access to snapshot '%s'.", r.Name)
		case r.AwaitingUpload && access == AccessRead:
			return notAllowed("Disk '%s' is awaiting its upload (state ReadyToUpload): grant Write access and upload the VHD first.", r.Name)
		}
		if r.Incremental {
			n, err := activeInFamily(tx, r.FamilyID, now)
			if err != nil {
				return err
			}
			if n >= s.policy.MaxSASPerFamily {
				return notAllowed("%d snapshots of the incremental family of snapshot '%s' already have an active SAS; at most %d may at a time. Revoke one first.",
					n, r.Name, s.policy.MaxSASPerFamily)
			}
		}
		r.Grant = &Grant{ID: randomID(), Access: access, Start: now.UTC().Truncate(time.Second), Expiry: now.UTC().Add(time.Duration(seconds) * time.Second).Truncate(time.Second)}
		if err := tx.Put(grantKey(r.Grant.ID), resourceKey(r.ID())); err != nil {
			return err
		}
		out = r
		return putResource(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// dropGrantKey deletes the key of the grant id's stored record holds, in
// force or expired: load settles an expired grant away, but not its key.
func dropGrantKey(tx meta.Tx, id ResourceID) error {
	var stored Resource
	if ok, err := getRecord(tx, resourceKey(id), &stored); err != nil || !ok || stored.Grant == nil {
		return err
	}
	return tx.Delete(grantKey(stored.Grant.ID))
}

// putResource stores r over its record, deleting the key of a grant the
// record held and r no longer does (revoked, or expired and settled by
// load), so that no grant key outlives its grant.
func putResource(tx meta.Tx, r *Resource) error {
	var stored Resource
	ok, err := getRecord(tx, resourceKey(r.ID()), &stored)
	if err != nil {
		return err
	}
	if ok && stored.Grant != nil && (r.Grant == nil || r.Grant.ID != stored.Grant.ID) {
		if err := tx.Delete(grantKey(stored.Grant.ID)); err != nil {
			return err
		}
	}
	return putRecord(tx, resourceKey(r.ID()), r)
}

// activeInFamily counts a family's snapshots with a grant in force.
func activeInFamily(tx meta.Tx, family string, now time.Time) (int, error) {
	n := 0
	p := familyPrefix(family)
	err := tx.Scan(p, prefixEnd(p), func(k, _ []byte) error {
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
	return n, err
}

// RevokeAccess ends a SAS access (endGetAccess); every SAS of the grant
// stops working. For an Upload disk it finalises the upload: a valid
// fixed VHD footer makes the disk Unattached, otherwise it stays
// ReadyToUpload and RevokeAccess returns the reason, after revoking.
func (s *Service) RevokeAccess(ctx context.Context, id ResourceID) (*Resource, error) {
	var out *Resource
	var uploadErr error
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		r.Grant = nil
		uploadErr = nil
		if r.AwaitingUpload {
			if uploadErr = uploadValid(r); uploadErr == nil {
				r.AwaitingUpload = false
			} else {
				uploadErr = &Error{Kind: ErrInvalid, Code: "BadRequest", Message: "Disk '" + r.Name + "' stays ReadyToUpload: " + uploadErr.Error()}
			}
		}
		out = r
		return putResource(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return out, uploadErr
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
	var parsed []ResourceID
	for _, raw := range ids {
		id, err := ParseResourceID(raw)
		if err != nil {
			return invalid("resources", "%v", err)
		}
		if !strings.EqualFold(id.Subscription, sub) || !strings.EqualFold(id.Group, group) {
			return invalid("resources", "Resource '%s' is not in resource group '%s'.", raw, group)
		}
		parsed = append(parsed, id)
	}
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var g, target Group
		if ok, err := getRecord(tx, groupKey(sub, group), &g); err != nil || !ok {
			if err == nil {
				err = groupNotFound(group)
			}
			return err
		}
		if ok, err := getRecord(tx, groupKey(tsub, tgroup), &target); err != nil || !ok {
			if err == nil {
				err = groupNotFound(tgroup)
			}
			return err
		}
		now := s.now()
		for _, id := range parsed {
			r, err := s.load(tx, id)
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
			if err := dropGrantKey(tx, r.ID()); err != nil { // an expired grant's
				return err
			}
			from := resourceKey(r.ID())
			r.Group = target.Name
			to := resourceKey(r.ID())
			var existing Resource
			if ok, err := getRecord(tx, to, &existing); err != nil {
				return err
			} else if ok {
				return &Error{Kind: ErrConflict, Code: "Conflict", Message: "Resource group '" + target.Name + "' already holds '" + r.Name + "'."}
			}
			if err := tx.Delete(from); err != nil {
				return err
			}
			if err := putRecord(tx, to, r); err != nil {
				return err
			}
		}
		return nil
	})
}

// clearWindow is the most a clear changes in one commit: any range this
// long touches at most 4096 blocks, which one guarded commit holds.
const clearWindow = 4095 * engine.BlockSize

// WritePages writes a Put Page into the blob of the disk behind grant:
// data at [off, off+n) (zeros when data is nil), the part past the disk's
// bytes into an Upload disk's VHD footer. check vets the resource as the
// commit sees it (the data plane's conditions and rules). The grant, the
// disk's state, check and the new version are checked and written in the
// one transaction that commits the blocks, so a revoke that commits first
// makes the write fail whole, and one that commits after finds it done.
// It returns the resource as the write left it.
func (s *Service) WritePages(ctx context.Context, res *Resource, off, n int64, data []byte, check func(*Resource) error) (*Resource, error) {
	if res.Grant == nil {
		return nil, notFound("GrantNotFound", "The access grant does not exist or was revoked.")
	}
	var out *Resource
	// vet loads the disk as the commit sees it and applies the rules.
	vet := func(tx meta.Tx) (*Resource, error) {
		r, err := s.grantTarget(tx, res.Grant.ID)
		if err != nil {
			return nil, err
		}
		switch {
		case r.Image != res.Image || r.SizeBytes != res.SizeBytes:
			// Neither changes while a grant is in force; a record that
			// differs is another disk's.
			return nil, notFound("GrantNotFound", "The access grant's disk changed.")
		case r.Grant.Access != AccessWrite:
			return nil, notAllowed("The grant of disk '%s' is for reading; writing needs a Write grant.", r.Name)
		}
		return r, check(r)
	}
	guard := func(tx meta.Tx) error {
		r, err := vet(tx)
		if err != nil {
			return err
		}
		if end := off + n; end > r.SizeBytes {
			if !r.AwaitingUpload {
				return notAllowed("Disk '%s' is not awaiting an upload; its VHD footer is the server's.", r.Name)
			}
			fo := max(off, r.SizeBytes)
			if end-r.SizeBytes > vhd.FooterSize {
				return invalid("range", "The footer is %d bytes; a write to %d reaches past it.", vhd.FooterSize, end)
			}
			footer := make([]byte, vhd.FooterSize)
			copy(footer, r.Footer)
			if data != nil {
				copy(footer[fo-r.SizeBytes:end-r.SizeBytes], data[fo-off:])
			} else {
				clear(footer[fo-r.SizeBytes : end-r.SizeBytes])
			}
			r.Footer = footer
		}
		r.Version++
		r.Modified = s.now().UTC()
		out = r
		// vet found the stored grant in force and kept it: no grant key
		// to drop, so no second read of the record on every Put Page.
		return putRecord(tx, resourceKey(r.ID()), r)
	}
	var err error
	switch dataEnd := min(off+n, res.SizeBytes); {
	case off >= dataEnd: // the footer alone
		err = s.meta.Update(ctx, guard)
	case data == nil:
		// A clear may span the whole disk, more blocks with data than one
		// commit holds: it goes in windows that always fit, each vetted in
		// its commit, the last recording the write. (Azure's clear of a
		// large range is not atomic either.)
		for lo := off; lo < dataEnd && err == nil; lo += clearWindow {
			hi := min(lo+clearWindow, dataEnd)
			g := guard
			if hi < dataEnd {
				g = func(tx meta.Tx) error { _, err := vet(tx); return err }
			}
			err = s.engine.ZeroIf(ctx, res.Image, lo, hi-lo, g)
		}
	default:
		err = s.engine.WriteAtIf(ctx, res.Image, data[:dataEnd-off], off, guard)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// grantTarget loads the resource a user grant in force gives access to.
func (s *Service) grantTarget(tx meta.Tx, grant string) (*Resource, error) {
	key, err := tx.Get(grantKey(grant))
	if errors.Is(err, meta.ErrNotFound) {
		return nil, notFound("GrantNotFound", "The access grant does not exist or was revoked.")
	}
	if err != nil {
		return nil, err
	}
	var r Resource
	ok, err := getRecord(tx, key, &r)
	if err == nil && !ok {
		err = notFound("GrantNotFound", "The resource of the access grant no longer exists.")
	}
	if err != nil {
		return nil, err
	}
	if r.Grant == nil || r.Grant.ID != grant || !r.GrantActive(s.now()) {
		return nil, notFound("GrantNotFound", "The access grant has expired or was revoked.")
	}
	return &r, nil
}
