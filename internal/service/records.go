package service

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Service key spaces share the meta store with the engine's; they start
// with 's' (the engine's are upper case). Names are lower-cased in keys, so
// lookups are case-insensitive, and kept as given in the records.
const (
	keyGroup    = "sG" // sG sub 0 group → Group
	keyResource = "sR" // sR sub 0 group 0 kind 0 name → Resource
	keyFamily   = "sF" // sF familyID 0 resource key → empty
)

func groupKey(sub, group string) []byte {
	return []byte(keyGroup + strings.ToLower(sub) + "\x00" + strings.ToLower(group))
}

func groupsPrefix(sub string) []byte { return []byte(keyGroup + strings.ToLower(sub) + "\x00") }

func resourceKey(id ResourceID) []byte {
	return []byte(keyResource + strings.ToLower(id.Subscription) + "\x00" + strings.ToLower(id.Group) + "\x00" +
		string(id.Kind) + "\x00" + strings.ToLower(id.Name))
}

// resourcesPrefix selects a subscription's resources, or one group's when
// group is set, or one kind in one group when kind is set too.
func resourcesPrefix(sub, group string, kind Kind) []byte {
	p := keyResource + strings.ToLower(sub) + "\x00"
	if group != "" {
		p += strings.ToLower(group) + "\x00"
		if kind != "" {
			p += string(kind) + "\x00"
		}
	}
	return []byte(p)
}

func familyKey(family string, id ResourceID) []byte {
	return append([]byte(keyFamily+family+"\x00"), resourceKey(id)...)
}

func familyPrefix(family string) []byte { return []byte(keyFamily + family + "\x00") }

// Group is a resource group.
type Group struct {
	Subscription string            `json:"subscription"`
	Name         string            `json:"name"`
	Location     string            `json:"location"`
	Tags         map[string]string `json:"tags,omitempty"`
}

// ID returns the group's ARM id.
func (g *Group) ID() string { return GroupID(g.Subscription, g.Name) }

// CreationData says how a disk or snapshot was made.
type CreationData struct {
	CreateOption     string `json:"createOption"`
	SourceResourceID string `json:"sourceResourceId,omitempty"`
	SourceUniqueID   string `json:"sourceUniqueId,omitempty"`
	UploadSizeBytes  int64  `json:"uploadSizeBytes,omitempty"`
}

// Grant is an active SAS access to a disk or snapshot.
type Grant struct {
	ID     string    `json:"id"`
	Access string    `json:"access"` // Read or Write
	Start  time.Time `json:"start"`
	Expiry time.Time `json:"expiry"`
}

// Resource is a disk or a snapshot.
type Resource struct {
	Kind         Kind              `json:"kind"`
	Subscription string            `json:"subscription"`
	Group        string            `json:"group"`
	Name         string            `json:"name"`
	Location     string            `json:"location"` // as the caller sent it
	Tags         map[string]string `json:"tags,omitempty"`
	Sku          string            `json:"sku"`
	UniqueID     string            `json:"uniqueId"`
	TimeCreated  time.Time         `json:"timeCreated"`
	SizeBytes    int64             `json:"sizeBytes"`
	CreationData CreationData      `json:"creationData"`
	Incremental  bool              `json:"incremental,omitempty"`
	// FamilyID: a disk's id for the family of its incremental snapshots
	// (new at every creation, like uniqueId); a snapshot's family.
	FamilyID         string `json:"familyId,omitempty"`
	OSType           string `json:"osType,omitempty"`
	HyperVGeneration string `json:"hyperVGeneration,omitempty"`
	// Image is the engine volume (disk) or snapshot holding the data.
	Image engine.ID `json:"image"`
	// Resized records that a disk grew after creation.
	Resized bool `json:"resized,omitempty"`
	// AwaitingUpload is set on an Upload disk until a valid image is
	// uploaded and access revoked.
	AwaitingUpload bool `json:"awaitingUpload,omitempty"`
	// Footer holds the 512 bytes written past an Upload disk's data.
	Footer []byte `json:"footer,omitempty"`
	Grant  *Grant `json:"grant,omitempty"`
	// Copy is set on the target of a CopyStart copy; until it is done the
	// snapshot holds no data (Image is 0).
	Copy *CopyState `json:"copy,omitempty"`
	// Attached is set while the disk is attached (exported over NBD).
	Attached *Attachment `json:"attached,omitempty"`
	// Version counts data-plane writes and Modified is the last one's time
	// (TimeCreated before any): the blob's ETag and Last-Modified.
	Version  int64     `json:"version,omitempty"`
	Modified time.Time `json:"modified,omitzero"`
	// RecentSnapshots are the times of a disk's incremental snapshots
	// inside the policy's rate window.
	RecentSnapshots []time.Time `json:"recentSnapshots,omitempty"`

	// Zones and Replication come from the engine (NoteReplication; List
	// fills them in), never from the record: the zone stores that hold
	// the data, and whether some of them are still being filled.
	Zones       []string     `json:"-"`
	Replication *Replication `json:"-"`
}

// Replication is the background filling of a resource's zones.
type Replication struct {
	Percent float64
}

// ID returns the resource's id.
func (r *Resource) ID() ResourceID {
	return ResourceID{Subscription: r.Subscription, Group: r.Group, Kind: r.Kind, Name: r.Name}
}

// DiskSizeGB is the size in whole GiB, rounded up.
func (r *Resource) DiskSizeGB() int64 { return (r.SizeBytes + 1<<30 - 1) >> 30 }

// GrantActive reports whether a grant is in force at now.
func (r *Resource) GrantActive(now time.Time) bool {
	return r.Grant != nil && now.Before(r.Grant.Expiry)
}

// State is the diskState ARM shows.
func (r *Resource) State(now time.Time) string {
	active := r.GrantActive(now)
	switch {
	case r.Attached != nil:
		return "Attached"
	case active && r.Grant.Access == AccessWrite:
		return "ActiveUpload"
	case r.AwaitingUpload:
		return "ReadyToUpload"
	case active:
		return "ActiveSAS"
	}
	return "Unattached"
}

// Access levels of a grant.
const (
	AccessRead  = "Read"
	AccessWrite = "Write"
)

func getRecord(tx meta.Tx, key []byte, v any) (bool, error) {
	b, err := tx.Get(key)
	if errors.Is(err, meta.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("service: record %q does not decode: %w", key, err)
	}
	return true, nil
}

func putRecord(tx meta.Tx, key []byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return tx.Put(key, b)
}
