package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// Spec is what a PUT of a disk or snapshot asks for.
type Spec struct {
	Location     string
	Tags         map[string]string
	Sku          string // empty: the default for the resource
	CreationData CreationData
	DiskSizeGB   int64 // 0: absent
	Incremental  bool
	OSType       string
	// HyperVGeneration defaults to V1.
	HyperVGeneration string
	// APIVersion is the request's, for the options that need a newer one.
	APIVersion string
}

// Patch is what a PATCH changes; nil or zero fields stay as they are.
type Patch struct {
	Tags       map[string]string // nil: unchanged
	Sku        string
	DiskSizeGB int64
}

// Size limits.
const (
	maxDiskSizeGB   = 32767
	minUploadBytes  = 20<<20 + vhd.FooterSize
	maxUploadBytes  = 32<<40 + vhd.FooterSize
	uploadSizeUnit  = 1 << 20
	createEmpty     = "Empty"
	createCopy      = "Copy"
	createUpload    = "Upload"
	createCopyStart = "CopyStart"
)

var (
	diskSkus     = []string{"Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS", "StandardSSD_ZRS", "PremiumV2_LRS"}
	snapshotSkus = []string{"Standard_LRS", "Premium_LRS", "Standard_ZRS"}
)

// canonical returns the list's spelling of s, compared case-insensitively.
func canonical(list []string, s string) (string, bool) {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return v, true
		}
	}
	return "", false
}

func resourceNotFound(id ResourceID) error {
	return notFound("ResourceNotFound", "The Resource '%s/%s' under resource group '%s' was not found.", id.Kind.Type(), id.Name, id.Group)
}

// Get returns a disk or snapshot.
func (s *Service) Get(ctx context.Context, id ResourceID) (*Resource, error) {
	var r *Resource
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		var err error
		r, err = s.load(tx, id)
		return err
	})
	return r, err
}

// NoteReplication fills in r.Zones and r.Replication from the engine:
// where the data lies and whether every zone of the resource's sku holds
// it yet. Only what shows a resource needs it, so Get leaves it out.
func (s *Service) NoteReplication(ctx context.Context, r *Resource) error {
	if r.Image == 0 {
		return nil
	}
	info, err := s.engine.Stat(ctx, r.Image)
	if errors.Is(err, engine.ErrNotFound) {
		return nil // deleted meanwhile; the record goes with it
	}
	if err != nil {
		return err
	}
	r.Zones = info.Zones
	if info.Pending {
		r.Replication = &Replication{Percent: info.Percent}
	}
	return nil
}

// load reads a resource, settling a grant that has expired; the change
// is persisted by the next mutation.
func (s *Service) load(tx meta.Tx, id ResourceID) (*Resource, error) {
	var r Resource
	found, err := getRecord(tx, resourceKey(id), &r)
	if err != nil {
		return nil, err
	}
	if !found {
		var g Group
		if ok, err := getRecord(tx, groupKey(id.Subscription, id.Group), &g); err != nil {
			return nil, err
		} else if !ok {
			return nil, groupNotFound(id.Group)
		}
		return nil, resourceNotFound(id)
	}
	s.settle(&r)
	return &r, nil
}

// settle ends an expired grant as a revoke would.
func (s *Service) settle(r *Resource) {
	if r.Grant == nil || r.GrantActive(s.now()) {
		return
	}
	r.Grant = nil
	if r.AwaitingUpload && uploadValid(r) == nil {
		r.AwaitingUpload = false
	}
}

// uploadValid checks the footer an upload wrote past the disk's data.
func uploadValid(r *Resource) error {
	f, err := vhd.Parse(r.Footer)
	if err != nil {
		if len(r.Footer) == 0 {
			return errors.New("no VHD footer was uploaded: the last 512 bytes of the upload must be a fixed VHD footer")
		}
		return fmt.Errorf("the uploaded VHD footer is not a valid fixed VHD footer: %v", err)
	}
	if f.CurrentSize != r.SizeBytes {
		return fmt.Errorf("the uploaded VHD footer says %d bytes, the disk holds %d", f.CurrentSize, r.SizeBytes)
	}
	return nil
}

// List returns up to limit resources of kind in a subscription, or in one
// of its groups, after the opaque token after; it also returns the token
// of the next page, empty on the last.
func (s *Service) List(ctx context.Context, sub, group string, kind Kind, after string, limit int) ([]*Resource, string, error) {
	if _, err := s.Subscription(sub); err != nil {
		return nil, "", err
	}
	if limit <= 0 {
		limit = s.policy.ListPageSize
	}
	start := resourcesPrefix(sub, group, kind)
	end := prefixEnd(start)
	if after != "" {
		k, err := hex.DecodeString(after)
		if err != nil || string(k) < string(start) || (end != nil && string(k) >= string(end)) {
			return nil, "", invalid("$skiptoken", "The $skiptoken is not one this server issued.")
		}
		start = append(k, 0)
	}
	var out []*Resource
	var next string
	err := s.meta.View(ctx, func(tx meta.Tx) error {
		out, next = out[:0], ""
		if group != "" {
			var g Group
			if ok, err := getRecord(tx, groupKey(sub, group), &g); err != nil || !ok {
				if err == nil {
					err = groupNotFound(group)
				}
				return err
			}
		}
		var last []byte
		err := tx.Scan(start, end, func(k, v []byte) error {
			var r Resource
			if err := unmarshal(k, v, &r); err != nil {
				return err
			}
			if r.Kind != kind {
				return nil
			}
			if len(out) == limit {
				next = hex.EncodeToString(last)
				return errStop
			}
			s.settle(&r)
			out = append(out, &r)
			last = append(last[:0], k...)
			return nil
		})
		if errors.Is(err, errStop) {
			err = nil
		}
		return err
	})
	if err != nil {
		return nil, "", err
	}
	for _, r := range out {
		if err := s.NoteReplication(ctx, r); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}

func unmarshal(k, v []byte, dst any) error {
	if err := json.Unmarshal(v, dst); err != nil {
		return fmt.Errorf("service: record %q does not decode: %w", k, err)
	}
	return nil
}

// Put creates a disk or snapshot, or updates the mutable parts of an
// existing one (a PUT is create-or-update).
func (s *Service) Put(ctx context.Context, id ResourceID, spec Spec) (*Resource, error) {
	if !ValidName(id.Name) {
		return nil, invalid("name", "The name '%s' is invalid: use 1-80 letters, digits, '_', '.' or '-', starting with a letter or digit and ending with a letter, digit or '_'.", id.Name)
	}
	if _, err := s.Subscription(id.Subscription); err != nil {
		return nil, err
	}
	spec, err := CheckSpec(spec)
	if err != nil {
		return nil, err
	}
	region, err := s.Region(spec.Location)
	if err != nil {
		return nil, err
	}
	opt, ok := canonical([]string{createEmpty, createCopy, createUpload, createCopyStart}, spec.CreationData.CreateOption)
	if opt == createCopy {
		release, err := s.holdSource(ctx, id, spec)
		if err != nil {
			return nil, err
		}
		defer release()
	}
	var out *Resource
	err = s.meta.Update(ctx, func(tx meta.Tx) error {
		existing, err := s.load(tx, id)
		switch {
		case err == nil:
			out, err = s.updateTx(tx, existing, spec)
			return err
		case !errors.Is(err, ErrNotFound):
			return err
		}
		var se *Error
		if errors.As(err, &se) && se.Code == "ResourceGroupNotFound" {
			return err
		}
		r := &Resource{
			Kind: id.Kind, Subscription: id.Subscription, Group: id.Group, Name: id.Name,
			Location: spec.Location, Tags: spec.Tags, UniqueID: uuid.NewString(), TimeCreated: s.now().UTC(),
			OSType: spec.OSType, HyperVGeneration: spec.HyperVGeneration,
		}
		if r.HyperVGeneration == "" {
			r.HyperVGeneration = "V1"
		}
		if !ok {
			return invalid("properties.creationData.createOption", "createOption '%s' is not supported; use Empty, Copy or Upload.", spec.CreationData.CreateOption)
		}
		r.CreationData.CreateOption = opt
		switch {
		case opt == createCopyStart:
			out, err = s.copyStart(tx, r, region, spec)
		case opt == createCopy:
			out, err = s.createCopy(tx, r, region, spec)
		case id.Kind == KindSnapshot:
			err = invalid("properties.creationData.createOption", "A snapshot is created with createOption Copy from a disk or snapshot, not %s.", opt)
		case opt == createEmpty:
			out, err = s.createEmpty(tx, r, region, spec)
		default:
			out, err = s.createUpload(tx, r, region, spec)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	// Work that follows the commit: what the transaction may have placed
	// needs replicating, and a CopyStart target its copy.
	s.engine.Kick()
	if out.Copy != nil && !out.Copy.Done {
		s.queueCopy(out.ID())
	}
	return out, nil
}

func (s *Service) diskSku(region Region, sku string) (string, error) {
	if sku == "" {
		return "Standard_LRS", nil
	}
	c, ok := canonical(diskSkus, sku)
	if !ok {
		return "", invalid("sku.name", "The disk sku '%s' is not valid; valid skus are %s.", sku, strings.Join(diskSkus, ", "))
	}
	if strings.HasSuffix(c, "_ZRS") && region.Zones == 0 {
		return "", invalid("sku.name", "The sku %s needs availability zones, and region '%s' has none.", c, region.Name)
	}
	return c, nil
}

func (s *Service) createEmpty(tx meta.Tx, r *Resource, region Region, spec Spec) (*Resource, error) {
	if spec.DiskSizeGB < 1 || spec.DiskSizeGB > maxDiskSizeGB {
		return nil, invalid("properties.diskSizeGB", "diskSizeGB must be a whole number of GiB from 1 to %d for createOption Empty; got %d.", maxDiskSizeGB, spec.DiskSizeGB)
	}
	sku, err := s.diskSku(region, spec.Sku)
	if err != nil {
		return nil, err
	}
	r.Sku, r.SizeBytes, r.FamilyID = sku, spec.DiskSizeGB<<30, uuid.NewString()
	if r.Image, err = s.engine.CreateVolumeTx(tx, r.SizeBytes, region.Placement(sku)...); err != nil {
		return nil, err
	}
	return r, s.insert(tx, r, nil)
}

func (s *Service) createUpload(tx meta.Tx, r *Resource, region Region, spec Spec) (*Resource, error) {
	n := spec.CreationData.UploadSizeBytes
	if n < minUploadBytes || n > maxUploadBytes || (n-vhd.FooterSize)%uploadSizeUnit != 0 {
		return nil, invalid("properties.creationData.uploadSizeBytes",
			"uploadSizeBytes must be the VHD's size including its 512-byte footer: a multiple of 1 MiB from 20 MiB to 32 TiB, plus 512; got %d.", n)
	}
	sku, err := s.diskSku(region, spec.Sku)
	if err != nil {
		return nil, err
	}
	r.Sku, r.SizeBytes, r.FamilyID, r.AwaitingUpload = sku, n-vhd.FooterSize, uuid.NewString(), true
	r.CreationData.UploadSizeBytes = n
	if r.Image, err = s.engine.CreateVolumeTx(tx, r.SizeBytes, region.Placement(sku)...); err != nil {
		return nil, err
	}
	return r, s.insert(tx, r, nil)
}

// holdSource commits what an attached source disk's writes left buffered
// and holds its writes until release: a snapshot or copy then holds every
// write its holder was answered before the copy was asked for. A source
// that is no disk, or not attached, holds nothing, and so does one of
// another subscription: the transaction refuses it, and its writes are
// none of the caller's business.
func (s *Service) holdSource(ctx context.Context, id ResourceID, spec Spec) (release func(), err error) {
	none := func() {}
	srcID, err := ParseResourceID(spec.CreationData.SourceResourceID)
	if err != nil || !strings.EqualFold(srcID.Subscription, id.Subscription) {
		return none, nil
	}
	var image engine.ID
	err = s.meta.View(ctx, func(tx meta.Tx) error {
		src, err := s.load(tx, srcID)
		if err == nil && src.Kind == KindDisk && src.Attached != nil {
			image = src.Image
		}
		return nil
	})
	if err != nil || image == 0 {
		return none, err
	}
	return s.engine.Hold(ctx, image)
}

// createCopy makes a disk or snapshot from a source disk or snapshot.
func (s *Service) createCopy(tx meta.Tx, r *Resource, region Region, spec Spec) (*Resource, error) {
	srcID, err := ParseResourceID(spec.CreationData.SourceResourceID)
	if err != nil {
		return nil, invalid("properties.creationData.sourceResourceId", "createOption Copy needs sourceResourceId, the id of a disk or snapshot: %v.", err)
	}
	if !strings.EqualFold(srcID.Subscription, r.Subscription) {
		return nil, notAllowed("The source '%s' is in subscription %s; a disk or snapshot is copied only from a source in its own subscription (%s).", srcID, srcID.Subscription, r.Subscription)
	}
	src, err := s.load(tx, srcID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, notFound("ResourceNotFound", "The source resource '%s' was not found.", srcID)
		}
		return nil, err
	}
	r.CreationData.SourceResourceID = src.ID().String()
	r.CreationData.SourceUniqueID = src.UniqueID
	if src.Image == 0 {
		return nil, notAllowed("The source snapshot '%s' is a copy that holds no data yet (or failed); use it once its copy is complete.", src.Name)
	}
	if src.AwaitingUpload {
		return nil, notAllowed("The source disk '%s' is awaiting an upload (state %s) and holds no data to copy.", src.Name, src.State(s.now()))
	}
	if r.Kind == KindDisk {
		return s.copyToDisk(tx, r, region, spec, src)
	}
	if spec.Incremental {
		return s.incrementalSnapshot(tx, r, region, spec, src)
	}
	return s.fullSnapshot(tx, r, region, spec, src)
}

func (s *Service) copyToDisk(tx meta.Tx, r *Resource, region Region, spec Spec, src *Resource) (*Resource, error) {
	sku, err := s.diskSku(region, spec.Sku)
	if err != nil {
		return nil, err
	}
	if NormalizeLocation(r.Location) != NormalizeLocation(src.Location) {
		return nil, invalid("location", "A disk is created from a source in its own region (%s), not %s; copy the snapshot to %s with CopyStart first.", src.Location, r.Location, r.Location)
	}
	r.Sku, r.SizeBytes, r.FamilyID = sku, src.SizeBytes, uuid.NewString()
	if spec.DiskSizeGB != 0 {
		if spec.DiskSizeGB<<30 < src.SizeBytes || spec.DiskSizeGB > maxDiskSizeGB {
			return nil, invalid("properties.diskSizeGB", "diskSizeGB %d cannot hold the source's %d bytes (or exceeds %d).", spec.DiskSizeGB, src.SizeBytes, maxDiskSizeGB)
		}
		r.SizeBytes = spec.DiskSizeGB << 30
	}
	if r.OSType == "" {
		r.OSType = src.OSType
	}
	if r.Image, err = s.engine.CloneTx(tx, src.Image, r.SizeBytes, region.Placement(sku)...); err != nil {
		return nil, err
	}
	return r, s.insert(tx, r, nil)
}

func (s *Service) fullSnapshot(tx meta.Tx, r *Resource, region Region, spec Spec, src *Resource) (*Resource, error) {
	sku := "Standard_LRS"
	if spec.Sku != "" {
		var ok bool
		if sku, ok = canonical(snapshotSkus, spec.Sku); !ok {
			return nil, invalid("sku.name", "The snapshot sku '%s' is not valid; valid skus are %s.", spec.Sku, strings.Join(snapshotSkus, ", "))
		}
	}
	if sku == "Standard_ZRS" && region.Zones == 0 {
		return nil, invalid("sku.name", "Standard_ZRS needs availability zones, and region '%s' has none.", region.Name)
	}
	if NormalizeLocation(r.Location) != NormalizeLocation(src.Location) {
		return nil, invalid("location", "A snapshot is created in its source's region (%s), not %s.", src.Location, r.Location)
	}
	r.Sku, r.SizeBytes = sku, src.SizeBytes
	if r.OSType == "" {
		r.OSType = src.OSType
	}
	var err error
	if r.Image, err = s.engine.FreezeTx(tx, src.Image, region.Placement(sku)...); err != nil {
		return nil, err
	}
	return r, s.insert(tx, r, nil)
}

// incrementalSnapshot applies every rule of the feature, then seals the
// disk's head generation.
func (s *Service) incrementalSnapshot(tx meta.Tx, r *Resource, region Region, spec Spec, disk *Resource) (*Resource, error) {
	now := s.now()
	if disk.Kind != KindDisk {
		return nil, notAllowed("An incremental snapshot is taken of a disk; '%s' is a snapshot. Create a full snapshot from it, or an incremental snapshot of its disk.", disk.ID())
	}
	if !slices.Contains(s.policy.IncrementalRegions, NormalizeLocation(disk.Location)) {
		return nil, notAllowed("Incremental snapshots are not offered in region '%s'; they are offered in %s.", disk.Location, strings.Join(s.policy.IncrementalRegions, ", "))
	}
	if NormalizeLocation(r.Location) != NormalizeLocation(disk.Location) {
		return nil, invalid("location", "An incremental snapshot is created in its disk's region (%s), not %s; copy it to another region with CopyStart.", disk.Location, r.Location)
	}
	if disk.Resized && !s.policy.AllowIncrementalAfterResize {
		return nil, notAllowed("Disk '%s' was resized; incremental snapshots are not allowed after a disk is resized.", disk.Name)
	}
	if disk.GrantActive(now) && disk.Grant.Access == AccessWrite {
		return nil, notAllowed("Disk '%s' is in state %s; revoke its write access before taking a snapshot.", disk.Name, disk.State(now))
	}
	sku := "Standard_LRS"
	if region.Zones > 0 {
		sku = "Standard_ZRS"
	}
	if spec.Sku != "" {
		c, ok := canonical([]string{"Standard_LRS", "Standard_ZRS"}, spec.Sku)
		if !ok {
			return nil, invalid("sku.name", "Incremental snapshots use standard HDD storage: sku Standard_LRS or Standard_ZRS, not '%s'.", spec.Sku)
		}
		if c == "Standard_ZRS" && region.Zones == 0 {
			return nil, invalid("sku.name", "Standard_ZRS needs availability zones, and region '%s' has none.", region.Name)
		}
		sku = c
	}
	window := time.Duration(s.policy.SnapshotRateWindow)
	recent := slices.DeleteFunc(slices.Clone(disk.RecentSnapshots), func(t time.Time) bool { return now.Sub(t) >= window })
	if len(recent) >= s.policy.SnapshotRateCount {
		return nil, notAllowed("Disk '%s' already has %d incremental snapshots created in the last %v; at most %d are allowed per %v. Retry later.",
			disk.Name, len(recent), window, s.policy.SnapshotRateCount, window)
	}
	n, err := familySize(tx, disk.FamilyID)
	if err != nil {
		return nil, err
	}
	if n >= s.policy.MaxIncrementalPerDisk {
		return nil, notAllowed("Disk '%s' has %d incremental snapshots; at most %d are allowed per disk. Delete some first.", disk.Name, n, s.policy.MaxIncrementalPerDisk)
	}
	r.Sku, r.SizeBytes, r.Incremental, r.FamilyID = sku, disk.SizeBytes, true, disk.FamilyID
	if r.OSType == "" {
		r.OSType = disk.OSType
	}
	// A zone-redundant snapshot of a locally-redundant disk is taken at
	// once; the engine fills the other zones in the background.
	if r.Image, err = s.engine.SnapshotTx(tx, disk.Image, region.Placement(sku)...); err != nil {
		return nil, err
	}
	disk.RecentSnapshots = append(recent, now.UTC())
	return r, s.insert(tx, r, disk)
}

// familySize counts the incremental snapshots of a family.
func familySize(tx meta.Tx, family string) (int, error) {
	n := 0
	p := familyPrefix(family)
	err := tx.Scan(p, prefixEnd(p), func(_, _ []byte) error { n++; return nil })
	return n, err
}

// insert stores a new resource (and an updated source disk) in the
// transaction that made its image.
func (s *Service) insert(tx meta.Tx, r *Resource, disk *Resource) error {
	if err := putRecord(tx, resourceKey(r.ID()), r); err != nil {
		return err
	}
	if r.Incremental {
		if err := tx.Put(familyKey(r.FamilyID, r.ID()), nil); err != nil {
			return err
		}
	}
	if disk != nil {
		return putResource(tx, disk)
	}
	return nil
}

// updateTx applies a PUT to an existing resource: only tags, sku and a
// larger size may change.
func (s *Service) updateTx(tx meta.Tx, r *Resource, spec Spec) (*Resource, error) {
	changed := func(target, was, now string) error {
		return &Error{Kind: ErrConflict, Code: "PropertyChangeNotAllowed", Target: target,
			Message: fmt.Sprintf("Changing property '%s' is not allowed: it is '%s', the request says '%s'.", target, was, now)}
	}
	cd := spec.CreationData
	if !strings.EqualFold(cd.CreateOption, r.CreationData.CreateOption) {
		return nil, changed("creationData.createOption", r.CreationData.CreateOption, cd.CreateOption)
	}
	if cd.SourceResourceID != "" && !strings.EqualFold(cd.SourceResourceID, r.CreationData.SourceResourceID) {
		return nil, changed("creationData.sourceResourceId", r.CreationData.SourceResourceID, cd.SourceResourceID)
	}
	if NormalizeLocation(spec.Location) != NormalizeLocation(r.Location) {
		return nil, changed("location", r.Location, spec.Location)
	}
	if r.Kind == KindSnapshot && spec.Incremental != r.Incremental {
		return nil, changed("incremental", fmt.Sprint(r.Incremental), fmt.Sprint(spec.Incremental))
	}
	p := Patch{Tags: spec.Tags, Sku: spec.Sku}
	if p.Tags == nil {
		p.Tags = map[string]string{}
	}
	if r.Kind == KindDisk && cd.CreateOption != createUpload {
		p.DiskSizeGB = spec.DiskSizeGB
	}
	return s.patchTx(tx, r, p)
}

// Patch updates tags, sku or size of a disk or snapshot.
func (s *Service) Patch(ctx context.Context, id ResourceID, p Patch) (*Resource, error) {
	if err := checkTags(p.Tags); err != nil {
		return nil, err
	}
	var out *Resource
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		r, err := s.load(tx, id)
		if err != nil {
			return err
		}
		out, err = s.patchTx(tx, r, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.engine.Kick() // a sku change may have placed the data in new zones
	return out, nil
}

func (s *Service) patchTx(tx meta.Tx, r *Resource, p Patch) (*Resource, error) {
	region, err := s.Region(r.Location)
	if err != nil {
		return nil, err
	}
	if p.Tags != nil {
		r.Tags = p.Tags
	}
	if p.Sku != "" {
		switch {
		case r.Kind == KindDisk:
			if r.Sku, err = s.diskSku(region, p.Sku); err != nil {
				return nil, err
			}
		case r.Incremental:
			c, ok := canonical([]string{"Standard_LRS", "Standard_ZRS"}, p.Sku)
			if !ok {
				return nil, invalid("sku.name", "Incremental snapshots use sku Standard_LRS or Standard_ZRS, not '%s'.", p.Sku)
			}
			r.Sku = c
		default:
			c, ok := canonical(snapshotSkus, p.Sku)
			if !ok {
				return nil, invalid("sku.name", "The snapshot sku '%s' is not valid; valid skus are %s.", p.Sku, strings.Join(snapshotSkus, ", "))
			}
			r.Sku = c
		}
		if r.Sku == "Standard_ZRS" && region.Zones == 0 {
			return nil, invalid("sku.name", "Standard_ZRS needs availability zones, and region '%s' has none.", region.Name)
		}
		// A change between LRS and ZRS moves the data: the engine fills
		// the new zones in the background (completionPercent shows it).
		if r.Image != 0 {
			if err := s.engine.PlaceTx(tx, r.Image, region.Placement(r.Sku)...); err != nil {
				return nil, err
			}
		}
	}
	if p.DiskSizeGB != 0 && p.DiskSizeGB<<30 != r.SizeBytes {
		if err := s.resize(tx, r, p.DiskSizeGB); err != nil {
			return nil, err
		}
	}
	return r, putResource(tx, r)
}

func (s *Service) resize(tx meta.Tx, r *Resource, gb int64) error {
	now := s.now()
	switch {
	case r.Kind != KindDisk:
		return notAllowed("A snapshot's size cannot change.")
	case gb > maxDiskSizeGB || gb < 1:
		return invalid("properties.diskSizeGB", "diskSizeGB must be from 1 to %d; got %d.", maxDiskSizeGB, gb)
	case gb<<30 < r.SizeBytes:
		return notAllowed("Disk '%s' is %d GiB; shrinking a disk is not allowed.", r.Name, r.DiskSizeGB())
	case r.GrantActive(now) || r.AwaitingUpload || r.Attached != nil:
		return notAllowed("Disk '%s' is in state %s; a disk is resized only when Unattached.", r.Name, r.State(now))
	}
	if err := s.engine.GrowTx(tx, r.Image, gb<<30); err != nil {
		return err
	}
	r.SizeBytes, r.Resized = gb<<30, true
	return nil
}

// Delete deletes a disk or snapshot and reports whether it existed.
// Deleting a disk leaves its incremental snapshots intact.
func (s *Service) Delete(ctx context.Context, id ResourceID) (bool, error) {
	found := false
	var rel engine.Release
	err := s.meta.Update(ctx, func(tx meta.Tx) error {
		found, rel = false, engine.Release{}
		r, err := s.load(tx, id)
		if errors.Is(err, ErrNotFound) {
			var se *Error
			if errors.As(err, &se) && se.Code == "ResourceGroupNotFound" {
				return err
			}
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		now := s.now()
		if r.Attached != nil {
			return notAllowed("Disk '%s' is attached (held by %s); detach it before deleting it.", r.Name, r.Attached.Holder)
		}
		if r.GrantActive(now) {
			return notAllowed("%s '%s' has an active SAS (state %s); revoke access before deleting it.", strings.TrimSuffix(string(r.Kind), "s"), r.Name, r.State(now))
		}
		rel, err = s.deleteTx(tx, r)
		return err
	})
	if err != nil {
		return found, err
	}
	s.collect(ctx, rel)
	return found, nil
}

// deleteTx removes a resource's records and marks its image deleted in the
// same transaction; the image's blocks are collected after the commit
// (collect), or at the next start if the process dies first.
func (s *Service) deleteTx(tx meta.Tx, r *Resource) (engine.Release, error) {
	if err := dropGrantKey(tx, r.ID()); err != nil {
		return engine.Release{}, err
	}
	if r.Incremental {
		if err := tx.Delete(familyKey(r.FamilyID, r.ID())); err != nil {
			return engine.Release{}, err
		}
	}
	if r.Copy != nil && !r.Copy.Done {
		if err := s.releaseLines(tx, r.ID()); err != nil {
			return engine.Release{}, err
		}
	}
	if err := tx.Delete(resourceKey(r.ID())); err != nil {
		return engine.Release{}, err
	}
	if r.Image == 0 { // a copy target still waiting for its data
		return engine.Release{}, nil
	}
	return s.engine.DeleteTx(tx, r.Image)
}

// collect frees what committed deletions released. The deletion stands
// whatever happens here: a failure is logged, and the engine finishes the
// collection at its next start.
func (s *Service) collect(ctx context.Context, rels ...engine.Release) {
	for _, rel := range rels {
		if err := s.engine.Collect(context.WithoutCancel(ctx), rel); err != nil {
			s.log.Error("collecting a deleted image's blocks failed; the next start resumes it", "err", err)
		}
	}
}

// reconcile deletes engine images that no resource references.
func (s *Service) reconcile(ctx context.Context) error {
	images, err := s.engine.List(ctx)
	if err != nil {
		return err
	}
	used := make(map[engine.ID]bool)
	err = s.meta.View(ctx, func(tx meta.Tx) error {
		clear(used)
		p := []byte(keyResource)
		err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var r Resource
			if err := unmarshal(k, v, &r); err != nil {
				return err
			}
			used[r.Image] = true
			return nil
		})
		if err != nil {
			return err
		}
		p = []byte(keyCopyLine)
		return tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var l copyLine
			if err := unmarshal(k, v, &l); err != nil {
				return err
			}
			used[l.Volume] = true
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, img := range images {
		if !used[img.ID] {
			s.log.Info("deleting an image no resource references (left by an interrupted operation)", "image", img.ID)
			if err := s.engine.Delete(ctx, img.ID); err != nil {
				return err
			}
		}
	}
	return nil
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
