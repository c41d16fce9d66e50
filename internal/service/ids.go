package service

import (
	"fmt"
	"strings"
)

// Kind is the type of a compute resource.
type Kind string

const (
	KindDisk     Kind = "disks"
	KindSnapshot Kind = "snapshots"
)

// Type returns the ARM type name, e.g. "Microsoft.Compute/disks".
func (k Kind) Type() string { return "Microsoft.Compute/" + string(k) }

// ResourceID names a disk or snapshot. Its parts keep the caller's case;
// comparisons are case-insensitive.
type ResourceID struct {
	Subscription string
	Group        string
	Kind         Kind
	Name         string
}

// String returns the canonical ARM id.
func (r ResourceID) String() string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s/providers/%s/%s", r.Subscription, r.Group, r.Kind.Type(), r.Name)
}

// GroupID returns the resource group's ARM id.
func GroupID(sub, group string) string {
	return fmt.Sprintf("/subscriptions/%s/resourceGroups/%s", sub, group)
}

// ParseResourceID parses a disk or snapshot id, case-insensitively.
func ParseResourceID(s string) (ResourceID, error) {
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if len(parts) != 8 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") ||
		!strings.EqualFold(parts[4], "providers") || !strings.EqualFold(parts[5], "Microsoft.Compute") {
		return ResourceID{}, fmt.Errorf("%q is not a Microsoft.Compute disk or snapshot id", s)
	}
	id := ResourceID{Subscription: parts[1], Group: parts[3], Name: parts[7]}
	switch {
	case strings.EqualFold(parts[6], "disks"):
		id.Kind = KindDisk
	case strings.EqualFold(parts[6], "snapshots"):
		id.Kind = KindSnapshot
	default:
		return ResourceID{}, fmt.Errorf("%q names a %s, not a disk or snapshot", s, parts[6])
	}
	for _, p := range []string{id.Subscription, id.Group, id.Name} {
		if p == "" {
			return ResourceID{}, fmt.Errorf("%q has an empty segment", s)
		}
	}
	return id, nil
}

// ParseGroupID parses "/subscriptions/{sub}/resourceGroups/{group}".
func ParseGroupID(s string) (sub, group string, err error) {
	parts := strings.Split(strings.TrimPrefix(s, "/"), "/")
	if len(parts) != 4 || !strings.EqualFold(parts[0], "subscriptions") || !strings.EqualFold(parts[2], "resourceGroups") || parts[1] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("%q is not a resource group id", s)
	}
	return parts[1], parts[3], nil
}

// ValidName reports whether s is a valid disk or snapshot name: 1-80
// letters, digits, '_', '.', '-'; starting with a letter or digit and ending
// with a letter, digit or '_'.
func ValidName(s string) bool {
	if len(s) < 1 || len(s) > 80 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch {
		case i == 0 && !alnum:
			return false
		case i == len(s)-1 && !alnum && c != '_':
			return false
		case !alnum && c != '_' && c != '.' && c != '-':
			return false
		}
	}
	return true
}

// ValidGroupName reports whether s is a valid resource group name: 1-90
// letters, digits, '_', '-', '.', '(', ')', not ending in '.'.
func ValidGroupName(s string) bool {
	return !strings.HasSuffix(s, ".") && armName(s, 90)
}

// armName reports whether s is 1 to max letters, digits, '_', '-', '.',
// '(' or ')': the names ARM gives resource groups and deployments.
func armName(s string, max int) bool {
	if len(s) < 1 || len(s) > max {
		return false
	}
	for _, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && !strings.ContainsRune("_-.()", c) {
			return false
		}
	}
	return true
}
