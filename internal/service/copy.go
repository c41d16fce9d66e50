package service

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta"
)

// Cross-region copy (createOption CopyStart), as Azure does it: the target
// snapshot exists at once, and its data arrives in the background through
// a Transport that could cross a network (the page-blob data plane: a diff
// against the previously copied snapshot, then ranged reads). The copies of
// one family into one region accumulate in a volume of that region, whose
// snapshots form the region's family of the disk, so diffs between them
// work as between their sources.

// Transport moves a source snapshot's data to the copier.
type Transport interface {
	// Changes lists the ranges of src that differ from prev (all that src
	// holds when prev is nil), inside src's data (not its footer).
	Changes(ctx context.Context, src, prev *Resource) ([]engine.Extent, error)
	// Read fills p with src's bytes at off.
	Read(ctx context.Context, src *Resource, p []byte, off int64) error
}

// CopyState is a CopyStart copy's progress on its target snapshot.
type CopyState struct {
	Percent float64    `json:"percent"`
	Done    bool       `json:"done,omitempty"`
	Error   *CopyError `json:"error,omitempty"`
	// NextExtent is the first of the diff's extents not yet applied: a
	// restart resumes there.
	NextExtent int `json:"nextExtent,omitempty"`
	// BytesRead crossed the transport; BytesWritten were written (or
	// cleared) in the target region; DiffBytes is what the diff listed.
	BytesRead    int64     `json:"bytesRead"`
	BytesWritten int64     `json:"bytesWritten"`
	DiffBytes    int64     `json:"diffBytes"`
	Full         bool      `json:"full,omitempty"` // no earlier copy to diff against
	Started      time.Time `json:"started"`
	Finished     time.Time `json:"finished,omitzero"`
}

// CopyError is why a copy failed, as Azure's copyCompletionError shows it.
type CopyError struct {
	ErrorCode    string `json:"errorCode"`
	ErrorMessage string `json:"errorMessage"`
}

const keyCopyLine = "sY" // sY sub 0 sourceFamily 0 region → copyLine

func copyLineKey(sub, family, region string) []byte {
	return []byte(keyCopyLine + strings.ToLower(sub) + "\x00" + family + "\x00" + region)
}

// copyLine is one family's copies into one region.
type copyLine struct {
	Volume   engine.ID `json:"volume"`
	FamilyID string    `json:"familyId"` // the family the copies form there
	// LastSource is the last source snapshot copied, and its creation time:
	// copies go in creation order, each diffed against the last.
	LastSource     string    `json:"lastSource,omitempty"`
	LastSourceTime time.Time `json:"lastSourceTime,omitzero"`
	// Active is the target being copied now; one at a time.
	Active string `json:"active,omitempty"`
}

// minCopyStartVersion is the first api-version with CopyStart.
const minCopyStartVersion = "2020-12-01"

// copyStart creates the target of a cross-region copy; Put queues the copy
// once the transaction has committed.
func (s *Service) copyStart(tx meta.Tx, r *Resource, region Region, spec Spec) (*Resource, error) {
	if r.Kind != KindSnapshot {
		return nil, invalid("properties.creationData.createOption", "createOption CopyStart creates a snapshot, not a disk.")
	}
	if spec.APIVersion != "" && spec.APIVersion < minCopyStartVersion {
		return nil, invalid("api-version", "createOption CopyStart needs api-version %s or later; the request used %s.", minCopyStartVersion, spec.APIVersion)
	}
	srcID, err := ParseResourceID(spec.CreationData.SourceResourceID)
	if err != nil || srcID.Kind != KindSnapshot {
		return nil, invalid("properties.creationData.sourceResourceId", "createOption CopyStart needs sourceResourceId, the id of an incremental snapshot.")
	}
	if !strings.EqualFold(srcID.Subscription, r.Subscription) {
		return nil, notAllowed("The source '%s' is in another subscription; CopyStart copies within a subscription.", srcID)
	}
	src, err := s.load(tx, srcID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, notFound("ResourceNotFound", "The source snapshot '%s' was not found.", srcID)
		}
		return nil, err
	}
	switch {
	case !src.Incremental:
		return nil, notAllowed("CopyStart copies incremental snapshots; '%s' is a full snapshot.", src.Name)
	case src.Copy != nil && !src.Copy.Done:
		return nil, notAllowed("Snapshot '%s' is itself still being copied (%.0f%%); copy it once it is complete.", src.Name, src.Copy.Percent)
	case src.Copy != nil && src.Copy.Error != nil:
		return nil, notAllowed("Snapshot '%s' is a failed copy and holds no data.", src.Name)
	}
	sku := "Standard_LRS"
	if region.Zones > 0 {
		sku = "Standard_ZRS"
	}
	if spec.Sku != "" {
		c, ok := canonical([]string{"Standard_LRS", "Standard_ZRS"}, spec.Sku)
		if !ok || (c == "Standard_ZRS" && region.Zones == 0) {
			return nil, invalid("sku.name", "A copied incremental snapshot uses Standard_LRS, or Standard_ZRS where the region has zones; not '%s' in '%s'.", spec.Sku, region.Name)
		}
		sku = c
	}
	active, err := activeCopies(tx, r.Subscription, region.Name)
	if err != nil {
		return nil, err
	}
	if active >= s.policy.MaxCopiesPerRegion {
		return nil, notAllowed("%d copies into region '%s' are running in this subscription; at most %d may run at a time.", active, region.Name, s.policy.MaxCopiesPerRegion)
	}
	lineKey := copyLineKey(r.Subscription, src.FamilyID, NormalizeLocation(region.Name))
	var line copyLine
	if _, err := getRecord(tx, lineKey, &line); err != nil {
		return nil, err
	}
	switch {
	case line.Active != "":
		return nil, notAllowed("A copy of this disk's snapshots into region '%s' is running (%s); copies of one disk run one at a time.", region.Name, line.Active)
	case line.LastSource != "" && !src.TimeCreated.After(line.LastSourceTime):
		return nil, notAllowed("Snapshot '%s' is not newer than '%s', the last one copied into region '%s'; copies go in creation order.", src.Name, line.LastSource, region.Name)
	}
	if line.Volume == 0 {
		// The region's copy of the disk; each copied snapshot is placed
		// by its own sku when it is sealed.
		if line.Volume, err = s.engine.CreateVolumeTx(tx, src.SizeBytes, region.Placement(sku)...); err != nil {
			return nil, err
		}
		line.FamilyID = uuid.NewString()
	} else if err := s.engine.GrowTx(tx, line.Volume, src.SizeBytes); err != nil && !errors.Is(err, engine.ErrBadSize) {
		// The region's volume grows to hold the source; ErrBadSize says
		// it is larger already, and stays so.
		return nil, err
	}
	r.Sku, r.SizeBytes, r.Incremental, r.FamilyID, r.OSType = sku, src.SizeBytes, true, line.FamilyID, src.OSType
	r.CreationData.SourceResourceID, r.CreationData.SourceUniqueID = src.ID().String(), src.UniqueID
	r.Copy = &CopyState{Started: s.now().UTC()}
	line.Active = r.ID().String()
	if err := putRecord(tx, lineKey, &line); err != nil {
		return nil, err
	}
	if err := putRecord(tx, resourceKey(r.ID()), r); err != nil {
		return nil, err
	}
	return r, tx.Put(familyKey(r.FamilyID, r.ID()), nil)
}

// activeCopies counts the copies running into a region in a subscription.
func activeCopies(tx meta.Tx, sub, region string) (int, error) {
	n := 0
	p := resourcesPrefix(sub, "", "")
	err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
		var r Resource
		if err := unmarshal(k, v, &r); err != nil {
			return err
		}
		if r.Copy != nil && !r.Copy.Done && NormalizeLocation(r.Location) == NormalizeLocation(region) {
			n++
		}
		return nil
	})
	return n, err
}

// copier runs copies in the background once StartCopier gave it a
// transport; copies queued before that wait.
type copier struct {
	mu        sync.Mutex
	transport Transport
	ctx       context.Context
	running   map[string]bool
	wg        sync.WaitGroup
	// lines serialises the copiers of one copy line (a disk into a
	// region): a copy whose target was deleted runs on until its next
	// save notices, and must not write the region's volume beside the
	// next copy of the line.
	lines sync.Map // line key → *sync.Mutex
}

// StartCopier starts copying through t: first the copies a restart
// interrupted, then each new one. It returns a function that stops the
// copies and waits for them (they resume at the next start).
func (s *Service) StartCopier(ctx context.Context, t Transport) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	s.copies.mu.Lock()
	s.copies.transport, s.copies.ctx = t, ctx
	s.copies.running = make(map[string]bool)
	s.copies.mu.Unlock()
	var pending []ResourceID
	_ = s.meta.View(ctx, func(tx meta.Tx) error {
		pending = pending[:0]
		p := []byte(keyResource)
		return tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
			var r Resource
			if err := unmarshal(k, v, &r); err == nil && r.Copy != nil && !r.Copy.Done {
				pending = append(pending, r.ID())
			}
			return nil
		})
	})
	for _, id := range pending {
		s.log.Info("resuming a copy", "snapshot", id.String())
		s.queueCopy(id)
	}
	return func() {
		cancel()
		s.copies.wg.Wait()
	}
}

func (s *Service) queueCopy(id ResourceID) {
	c := &s.copies
	c.mu.Lock()
	defer c.mu.Unlock()
	key := strings.ToLower(id.String())
	if c.transport == nil || c.running[key] || c.ctx.Err() != nil {
		return
	}
	c.running[key] = true
	c.wg.Go(func() {
		err := s.runCopy(c.ctx, id, c.transport)
		if err != nil && c.ctx.Err() == nil {
			s.log.Error("copy failed", "snapshot", id.String(), "err", err)
		}
		c.mu.Lock()
		delete(c.running, key)
		c.mu.Unlock()
	})
}

// copyPiece bounds one transport read.
const copyPiece = 4 << 20

// runCopy applies the diff from the last copied snapshot to the region's
// volume, verifies it, and seals it as the target's data.
func (s *Service) runCopy(ctx context.Context, id ResourceID, t Transport) error {
	target, err := s.Get(ctx, id)
	if err != nil || target.Copy == nil || target.Copy.Done {
		return err
	}
	region := NormalizeLocation(target.Location)
	srcID, err := ParseResourceID(target.CreationData.SourceResourceID)
	if err != nil {
		return err
	}
	src, err := s.Get(ctx, srcID)
	if err != nil || src.UniqueID != target.CreationData.SourceUniqueID {
		return s.finishCopy(ctx, id, nil, &CopyError{ErrorCode: "CopySourceNotFound", ErrorMessage: "The source snapshot was deleted during the copy."}, nil)
	}
	lineKey := copyLineKey(target.Subscription, src.FamilyID, region)
	mu, _ := s.copies.lines.LoadOrStore(string(lineKey), new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	if target, err = s.Get(ctx, id); errors.Is(err, ErrNotFound) {
		return nil // deleted while waiting for the line
	} else if err != nil || target.Copy == nil || target.Copy.Done {
		return err
	}
	var line copyLine
	if err := s.meta.View(ctx, func(tx meta.Tx) error {
		ok, err := getRecord(tx, lineKey, &line)
		if err == nil && !ok {
			err = fmt.Errorf("service: copy line of %s is missing", id)
		}
		return err
	}); err != nil {
		return err
	}
	var prev *Resource
	if line.LastSource != "" {
		if pid, err := ParseResourceID(line.LastSource); err == nil {
			if p, err := s.Get(ctx, pid); err == nil && p.FamilyID == src.FamilyID {
				prev = p
			}
		}
	}
	extents, err := t.Changes(ctx, src, prev)
	if err != nil {
		return s.failCopy(ctx, id, err)
	}
	st := *target.Copy
	st.Full = prev == nil
	st.DiffBytes = 0
	for _, e := range extents {
		st.DiffBytes += e.Length
	}
	if st.Full && st.NextExtent == 0 {
		// A full copy lists only what the source holds, so the region's
		// volume must start empty: an earlier copy (of a since-deleted
		// snapshot, or cut short) may have left data where the source has
		// none. Zeroing touches only blocks that hold data.
		info, err := s.engine.Stat(ctx, line.Volume)
		if err != nil {
			return s.failCopy(ctx, id, err)
		}
		if err := s.engine.Zero(ctx, line.Volume, 0, info.Size); err != nil {
			return s.failCopy(ctx, id, err)
		}
	}
	buf := make([]byte, copyPiece)
	lastSave := time.Now()
	var done int64
	for i, e := range extents {
		if i < st.NextExtent {
			done += e.Length
			continue
		}
		if e.Cleared {
			if err := s.engine.Zero(ctx, line.Volume, e.Offset, e.Length); err != nil {
				return s.failCopy(ctx, id, err)
			}
			st.BytesWritten += e.Length
		} else {
			for off := e.Offset; off < e.Offset+e.Length; off += copyPiece {
				p := buf[:min(copyPiece, e.Offset+e.Length-off)]
				if err := t.Read(ctx, src, p, off); err != nil {
					return s.failCopy(ctx, id, err)
				}
				st.BytesRead += int64(len(p))
				if err := s.engine.WriteAt(ctx, line.Volume, p, off); err != nil {
					return s.failCopy(ctx, id, err)
				}
				st.BytesWritten += int64(len(p))
			}
		}
		done += e.Length
		st.NextExtent = i + 1
		if st.DiffBytes > 0 {
			// 100 is shown only once the copy is verified and sealed.
			st.Percent = min(99, float64(int(1000*float64(done)/float64(st.DiffBytes)))/10)
		}
		if time.Since(lastSave) > time.Second {
			lastSave = time.Now()
			if err := s.saveCopy(ctx, id, st); err != nil {
				return err
			}
		}
	}
	if err := s.saveCopy(ctx, id, st); err != nil {
		return err
	}
	// Verify: the region's volume must now read exactly as the source.
	// Fingerprints digest the block maps' content hashes, which every
	// write computed from the bytes it stored: equal fingerprints mean
	// equal bytes, at a cost that follows the data, not the disk's size.
	want, err := s.engine.Fingerprint(ctx, src.Image, src.SizeBytes)
	if err != nil {
		return s.failCopy(ctx, id, err)
	}
	got, err := s.engine.Fingerprint(ctx, line.Volume, src.SizeBytes)
	if err != nil {
		return s.failCopy(ctx, id, err)
	}
	if got != want {
		return s.finishCopy(ctx, id, &st, &CopyError{ErrorCode: "CopyVerificationFailed", ErrorMessage: "The copied data does not hash as the source does."}, nil)
	}
	reg, err := s.Region(target.Location)
	if err != nil {
		return s.failCopy(ctx, id, err)
	}
	// The copy's data is sealed in the transaction that marks it done, so
	// no snapshot is taken for a copy that is not recorded as finished.
	err = s.finishCopy(ctx, id, &st, nil, func(tx meta.Tx, r *Resource, l *copyLine) error {
		snap, err := s.engine.SnapshotTx(tx, line.Volume, reg.Placement(target.Sku)...)
		r.Image = snap
		l.LastSource, l.LastSourceTime = src.ID().String(), src.TimeCreated
		return err
	})
	if err != nil {
		return s.failCopy(ctx, id, err)
	}
	s.engine.Kick()
	return nil
}

func (s *Service) saveCopy(ctx context.Context, id ResourceID, st CopyState) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var r Resource
		ok, err := getRecord(tx, resourceKey(id), &r)
		if err != nil || !ok {
			if err == nil {
				err = errCopyTargetGone
			}
			return err
		}
		r.Copy = &st
		return putRecord(tx, resourceKey(id), &r)
	})
}

var errCopyTargetGone = errors.New("service: copy target deleted")

// failCopy marks a copy failed with err's message (the target stays,
// holding no data, as Azure shows a failed copy).
func (s *Service) failCopy(ctx context.Context, id ResourceID, err error) error {
	if ctx.Err() != nil {
		return ctx.Err() // stopping: the copy resumes at the next start
	}
	ce := &CopyError{ErrorCode: "CopyFailed", ErrorMessage: "The copy failed: " + err.Error()}
	var se *Error
	if errors.As(err, &se) {
		ce.ErrorMessage = se.Message
	}
	if ferr := s.finishCopy(ctx, id, nil, ce, nil); ferr != nil {
		return ferr
	}
	return err
}

// finishCopy ends a copy, successful (ce nil) or not, releasing its line.
// st, when set, replaces the recorded progress; seal, when set, records the
// copied data (on success).
func (s *Service) finishCopy(ctx context.Context, id ResourceID, st *CopyState, ce *CopyError, seal func(meta.Tx, *Resource, *copyLine) error) error {
	return s.meta.Update(ctx, func(tx meta.Tx) error {
		var r Resource
		ok, err := getRecord(tx, resourceKey(id), &r)
		if err != nil {
			return err
		}
		srcID, _ := ParseResourceID(r.CreationData.SourceResourceID)
		var src Resource
		if ok {
			ok, err = getRecord(tx, resourceKey(srcID), &src)
			if err != nil {
				return err
			}
		}
		if !ok {
			return s.releaseLines(tx, id)
		}
		lineKey := copyLineKey(r.Subscription, src.FamilyID, NormalizeLocation(r.Location))
		var line copyLine
		if _, err := getRecord(tx, lineKey, &line); err != nil {
			return err
		}
		next := *r.Copy
		if st != nil {
			next = *st
		}
		if seal != nil {
			if err := seal(tx, &r, &line); err != nil {
				return err
			}
		}
		next.Done, next.Finished, next.Error = true, s.now().UTC(), ce
		if ce == nil {
			next.Percent = 100
		}
		r.Copy = &next
		if strings.EqualFold(line.Active, id.String()) {
			line.Active = ""
		}
		if err := putRecord(tx, lineKey, &line); err != nil {
			return err
		}
		return putRecord(tx, resourceKey(id), &r)
	})
}

// releaseLines clears any copy line whose active copy is id (its target or
// source is gone).
func (s *Service) releaseLines(tx meta.Tx, id ResourceID) error {
	var keys [][]byte
	var lines []copyLine
	p := []byte(keyCopyLine)
	if err := tx.Scan(p, prefixEnd(p), func(k, v []byte) error {
		var l copyLine
		if err := unmarshal(k, v, &l); err != nil {
			return err
		}
		if strings.EqualFold(l.Active, id.String()) {
			l.Active = ""
			keys = append(keys, append([]byte(nil), k...))
			lines = append(lines, l)
		}
		return nil
	}); err != nil {
		return err
	}
	for i, k := range keys {
		if err := putRecord(tx, k, &lines[i]); err != nil {
			return err
		}
	}
	return nil
}
