package service

import (
	"context"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Attachment says who holds an attached disk (deltadisk's NBD extension).
type Attachment struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// Attach moves an unattached disk to Attached, held by holder; the disk
// then takes no grants until Detach. Exposing its data (the NBD export) is
// the caller's.
func (s *Service) Attach(ctx context.Context, id ResourceID, holder string) (*Resource, error) {
	var out *Resource
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case r.Kind != KindDisk:
			return notAllowed("Only a disk can be attached; '%s' is a snapshot.", r.Name)
		case r.Attached != nil:
			return notAllowed("Disk '%s' is already attached (held by %s since %s); detach it first.", r.Name, r.Attached.Holder, r.Attached.Since.Format(time.RFC3339))
		case r.State(now) != "Unattached":
			return notAllowed("Disk '%s' is in state %s; only an Unattached disk can be attached.", r.Name, r.State(now))
		}
		r.Attached = &Attachment{Holder: holder, Since: now.UTC()}
		out = r
		return putResource(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Detach moves an attached disk back to Unattached. Detaching a disk that
// is not attached is not an error. The disk's version moves: it may have
// been written through its export, and a client holding its old ETag must
// not be told nothing changed.
func (s *Service) Detach(ctx context.Context, id ResourceID) (*Resource, error) {
	var out *Resource
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		out = r
		if r.Attached == nil {
			return nil
		}
		r.Attached = nil
		r.Version++
		r.Modified = s.now().UTC()
		return putResource(tx, r)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// detachAll ends the attachments a restart left behind: the exports that
// served them are gone with the old process.
func (s *Service) detachAll(ctx context.Context) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var held []Resource
		p := []byte(keyResource)
		err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var r Resource
			if err := unmarshal(k, v, &r); err != nil {
				return err
			}
			if r.Attached != nil {
				held = append(held, r)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range held {
			s.log.Info("detaching a disk whose attachment ended with the last run", "disk", r.ID().String(), "holder", r.Attached.Holder)
			r.Attached = nil
			if err := putRecord(tx, resourceKey(r.ID()), &r); err != nil {
				return err
			}
		}
		return nil
	})
}

// Usage returns a disk's or snapshot's space accounting.
func (s *Service) Usage(ctx context.Context, id ResourceID) (engine.Usage, error) {
	r, err := s.Get(ctx, id)
	if err != nil {
		return engine.Usage{}, err
	}
	if r.Image == 0 {
		return engine.Usage{Size: r.SizeBytes}, nil // a copy still waiting for its data
	}
	return s.engine.Usage(ctx, r.Image)
}
