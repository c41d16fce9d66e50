package service

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Subscriptions returns the subscriptions served here.
func (s *Service) Subscriptions() []Subscription { return slices.Clone(s.subs) }

// Subscription returns one subscription.
func (s *Service) Subscription(id string) (Subscription, error) {
	for _, sub := range s.subs {
		if strings.EqualFold(sub.ID, id) {
			return sub, nil
		}
	}
	return Subscription{}, notFound("SubscriptionNotFound", "The subscription '%s' could not be found.", id)
}

// Region returns a location's region, or an InvalidParameter error.
func (s *Service) Region(location string) (Region, error) {
	r, ok := s.regions[NormalizeLocation(location)]
	if !ok {
		if location == "" {
			return Region{}, invalid("location", "The location is required.")
		}
		return Region{}, invalid("location", "The location '%s' is not available. Known locations are configured regions such as eastus.", location)
	}
	return r, nil
}

// PutGroup creates a resource group or updates its tags. It reports
// whether the group was created.
func (s *Service) PutGroup(ctx context.Context, sub, name, location string, tags map[string]string) (*Group, bool, error) {
	if _, err := s.Subscription(sub); err != nil {
		return nil, false, err
	}
	if !ValidGroupName(name) {
		return nil, false, invalid("resourceGroupName", "Resource group name '%s' is invalid: use 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.", name)
	}
	if _, err := s.Region(location); err != nil {
		return nil, false, err
	}
	if err := checkTags(tags); err != nil {
		return nil, false, err
	}
	var g Group
	created := false
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		found, err := getRecord(tx, groupKey(sub, name), &g)
		if err != nil {
			return err
		}
		created = !found
		if found && NormalizeLocation(g.Location) != NormalizeLocation(location) {
			return &Error{Kind: ErrConflict, Code: "InvalidResourceGroupLocation", Target: "location",
				Message: "Invalid resource group location '" + location + "'. The Resource group already exists in location '" + g.Location + "'."}
		}
		if !found {
			g = Group{Subscription: sub, Name: name, Location: location}
		}
		g.Tags = tags
		return putRecord(tx, groupKey(sub, name), &g)
	})
	if err != nil {
		return nil, false, err
	}
	return &g, created, nil
}

// GetGroup returns a resource group.
func (s *Service) GetGroup(ctx context.Context, sub, name string) (*Group, error) {
	var g Group
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		found, err := getRecord(tx, groupKey(sub, name), &g)
		if err == nil && !found {
			err = groupNotFound(name)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &g, nil
}

func groupNotFound(name string) error {
	return notFound("ResourceGroupNotFound", "Resource group '%s' could not be found.", name)
}

// ListGroups returns a subscription's resource groups in name order.
func (s *Service) ListGroups(ctx context.Context, sub string) ([]*Group, error) {
	if _, err := s.Subscription(sub); err != nil {
		return nil, err
	}
	var out []*Group
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		out = out[:0]
		p := groupsPrefix(sub)
		return tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var g Group
			if err := unmarshal(k, v, &g); err != nil {
				return err
			}
			out = append(out, &g)
			return nil
		})
	})
	return out, err
}

// DeleteGroup deletes a resource group with every disk and snapshot in it,
// active grants included, and its deployments' records. It reports whether the group existed.
func (s *Service) DeleteGroup(ctx context.Context, sub, name string) (bool, error) {
	found := false
	var rels []engine.Release
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		rels = rels[:0]
		var g Group
		var err error
		if found, err = getRecord(tx, groupKey(sub, name), &g); err != nil || !found {
			return err
		}
		var members []*Resource
		p := resourcesPrefix(sub, name, "")
		if err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var r Resource
			if err := unmarshal(k, v, &r); err != nil {
				return err
			}
			members = append(members, &r)
			return nil
		}); err != nil {
			return err
		}
		for _, r := range members {
			if r.Attached != nil {
				return notAllowed("Disk '%s' in resource group '%s' is attached (held by %s); detach it before deleting the group.", r.Name, name, r.Attached.Holder)
			}
		}
		for _, r := range members {
			rel, err := s.deleteTx(tx, r)
			if err != nil {
				return err
			}
			rels = append(rels, rel)
		}
		var keys [][]byte
		p = deploymentsPrefix(sub, name)
		if err := tx.Scan(p, prefixEnd(p), func(k, _ []byte) error {
			keys = append(keys, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range append(keys, groupKey(sub, name)) {
			if err := tx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return found, err
	}
	s.collect(ctx, rels...)
	return found, nil
}

// prefixEnd returns the smallest key above every key starting with p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

var errStop = errors.New("stop")
