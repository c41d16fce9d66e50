package service_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"sync"
	"testing"

	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/service"
)

// The rules a race can break each read state and then write it: 7
// incremental snapshots per disk per rate window, 5 SAS per family, one
// grant at a time, no delete of an attached or granted disk. These tests
// fire the operations a rule guards all at once and count what got
// through; a rule that reads stale state lets through more than it allows.
// The TwoServices variants send the requests in turn to two Service values
// opened on one store and one engine, as two server processes sharing a
// store would: there no in-process lock can hold a rule, only the store's
// transactions.

// raceRounds repeats each race with fresh disks: one round may interleave
// harmlessly, twenty rarely all do.
const raceRounds = 20

// services returns n Service values on f's stores: f.s and n-1 more
// opened on its configuration.
func (f *fixture) services(t *testing.T, n int) []*service.Service {
	t.Helper()
	out := []*service.Service{f.s}
	for len(out) < n {
		s, err := service.Open(t.Context(), f.s.Config())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// race runs fns in goroutines released together by closing one channel,
// so that they start as nearly at once as the scheduler allows, and waits
// for all of them.
func race(fns ...func()) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, fn := range fns {
		wg.Go(func() {
			<-start
			fn()
		})
	}
	close(start)
	wg.Wait()
}

// outcome names a result for counting: "ok", the ARM code of a domain
// refusal of the expected kind, or the whole error for anything else, so
// that an unexpected error shows in the tally as itself.
func outcome(err error) string {
	var se *service.Error
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &se) && se.Code == "OperationNotAllowed" && errors.Is(err, service.ErrConflict),
		errors.As(err, &se) && se.Code == "ResourceNotFound" && errors.Is(err, service.ErrNotFound):
		return se.Code
	}
	return "unexpected: " + err.Error()
}

func tally(errs []error) map[string]int {
	out := map[string]int{}
	for _, err := range errs {
		out[outcome(err)]++
	}
	return out
}

// onlyExpected reports the outcomes in got that are not among allowed.
func onlyExpected(got map[string]int, allowed ...string) error {
	rest := maps.Clone(got)
	for _, a := range allowed {
		delete(rest, a)
	}
	if len(rest) != 0 {
		return fmt.Errorf("unexpected outcomes %v (all: %v)", rest, got)
	}
	return nil
}

func incrementalSpec(disk *service.Resource) service.Spec {
	return service.Spec{Location: "eastus", Incremental: true,
		CreationData: service.CreationData{CreateOption: "Copy", SourceResourceID: disk.ID().String()}}
}

// checkConsistent asserts that service.Check and the engine's check find
// nothing, and that every disk and snapshot List shows reads back by its
// id (Check reads the records; List and Get are what clients see).
func (f *fixture) checkConsistent(t *testing.T) {
	t.Helper()
	ctx := t.Context()
	rep, err := f.s.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rep.Problems {
		t.Errorf("service check: %s: %s", p.ID, p.Problem)
	}
	erep, err := f.e.Check(ctx, engine.CheckOptions{})
	if err == nil {
		err = erep.Err()
	}
	if err != nil {
		t.Errorf("engine check: %v", err)
	}
	for _, kind := range []service.Kind{service.KindDisk, service.KindSnapshot} {
		for next := ""; ; {
			page, n, err := f.s.List(ctx, sub, "", kind, next, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range page {
				if got, err := f.s.Get(ctx, r.ID()); err != nil || got.UniqueID != r.UniqueID {
					t.Errorf("listed %s does not read back: %v", r.ID(), err)
				}
			}
			if next = n; next == "" {
				break
			}
		}
	}
}

// TestRaceSnapshotRate: 16 incremental snapshots of one disk at once,
// inside one rate window (the fixture's clock stands still): exactly 7
// are made and 9 refused as the rule says, none fails otherwise.
func TestRaceSnapshotRate(t *testing.T) { testRaceSnapshotRate(t, 1) }

func TestRaceSnapshotRateTwoServices(t *testing.T) { testRaceSnapshotRate(t, 2) }

func testRaceSnapshotRate(t *testing.T, n int) {
	ctx := t.Context()
	f := newFixture(t, nil)
	svcs := f.services(t, n)
	const creates = 16
	limit := f.s.Policy().SnapshotRateCount
	for round := range raceRounds {
		d := f.disk(t, diskID(fmt.Sprintf("d%d", round)), 1)
		errs := make([]error, creates)
		fns := make([]func(), creates)
		for i := range fns {
			s := svcs[i%n]
			fns[i] = func() {
				_, errs[i] = s.Put(ctx, snapID(fmt.Sprintf("d%d-s%d", round, i)), incrementalSpec(d))
			}
		}
		race(fns...)
		want := map[string]int{"ok": limit, "OperationNotAllowed": creates - limit}
		if got := tally(errs); !maps.Equal(got, want) {
			t.Fatalf("round %d: %d incremental snapshots of one disk at once: %v, want %v", round, creates, got, want)
		}
		for i, err := range errs {
			_, gerr := f.s.Get(ctx, snapID(fmt.Sprintf("d%d-s%d", round, i)))
			if (err == nil) != (gerr == nil) {
				t.Fatalf("round %d: snapshot %d: create said %v, Get says %v", round, i, err, gerr)
			}
		}
		got, err := f.s.Get(ctx, d.ID())
		if err != nil {
			t.Fatal(err)
		}
		if len(got.RecentSnapshots) != limit {
			t.Fatalf("round %d: disk records %d recent snapshots, want %d", round, len(got.RecentSnapshots), limit)
		}
	}
	f.checkConsistent(t)
}

// TestRaceFamilyGrants: read grants on 7 snapshots of one family at once:
// exactly 5 (the family's SAS limit) are given, 2 refused.
func TestRaceFamilyGrants(t *testing.T) { testRaceFamilyGrants(t, 1) }

func TestRaceFamilyGrantsTwoServices(t *testing.T) { testRaceFamilyGrants(t, 2) }

func testRaceFamilyGrants(t *testing.T, n int) {
	ctx := t.Context()
	f := newFixture(t, nil)
	svcs := f.services(t, n)
	const snaps = 7
	limit := f.s.Policy().MaxSASPerFamily
	for round := range raceRounds {
		d := f.disk(t, diskID(fmt.Sprintf("d%d", round)), 1)
		ids := make([]service.ResourceID, snaps)
		for i := range ids {
			ids[i] = snapID(fmt.Sprintf("d%d-s%d", round, i))
			if _, err := f.s.Put(ctx, ids[i], incrementalSpec(d)); err != nil {
				t.Fatal(err)
			}
		}
		errs := make([]error, snaps)
		grants := make([]string, snaps)
		fns := make([]func(), snaps)
		for i := range fns {
			s := svcs[i%n]
			fns[i] = func() {
				r, err := s.GrantAccess(ctx, ids[i], "Read", 3600)
				if errs[i] = err; err == nil {
					grants[i] = r.Grant.ID
				}
			}
		}
		race(fns...)
		want := map[string]int{"ok": limit, "OperationNotAllowed": snaps - limit}
		if got := tally(errs); !maps.Equal(got, want) {
			t.Fatalf("round %d: read grants on %d snapshots of one family at once: %v, want %v", round, snaps, got, want)
		}
		active := 0
		for i, id := range ids {
			r, err := f.s.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if r.GrantActive(f.now) {
				active++
			}
			if grants[i] == "" {
				continue
			}
			if got, err := f.s.ResolveGrant(ctx, grants[i]); err != nil || got.Name != id.Name {
				t.Fatalf("round %d: grant given on %s does not resolve: %v, %v", round, id.Name, got, err)
			}
		}
		if active != limit {
			t.Fatalf("round %d: %d snapshots of the family hold a SAS, want %d", round, active, limit)
		}
	}
	f.checkConsistent(t)
}

// TestRaceDeleteDisk: a disk's delete races read grants, attaches and
// incremental snapshots of it, each grant revoked and each attach
// detached by the goroutine that made it. The delete is retried while it
// is refused (the disk is held) and once more after the others are done,
// so it ends with the disk gone. Then no record of the disk comes back,
// every snapshot that was made reads the disk's data, and no grant made
// on the disk still resolves.
func TestRaceDeleteDisk(t *testing.T) { testRaceDeleteDisk(t, 1) }

func TestRaceDeleteDiskTwoServices(t *testing.T) { testRaceDeleteDisk(t, 2) }

func testRaceDeleteDisk(t *testing.T, n int) {
	ctx := t.Context()
	f := newFixture(t, nil)
	svcs := f.services(t, n)
	const (
		granters  = 2
		attachers = 2
		snappers  = 4
	)
	for round := range raceRounds {
		d := f.disk(t, diskID(fmt.Sprintf("d%d", round)), 1)
		data := bytes.Repeat([]byte{byte(round + 1), 0xd7}, 32<<10)
		if err := f.e.WriteAt(ctx, d.Image, data, 0); err != nil {
			t.Fatal(err)
		}
		var (
			mu       sync.Mutex
			outcomes = map[string]map[string]int{} // operation → outcome → count
			grantIDs []string
			snaps    []service.ResourceID
		)
		note := func(op string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if outcomes[op] == nil {
				outcomes[op] = map[string]int{}
			}
			outcomes[op][outcome(err)]++
		}
		var fns []func()
		for i := range granters {
			s := svcs[i%n]
			fns = append(fns, func() {
				r, err := s.GrantAccess(ctx, d.ID(), "Read", 3600)
				note("grant", err)
				if err != nil {
					return
				}
				mu.Lock()
				grantIDs = append(grantIDs, r.Grant.ID)
				mu.Unlock()
				_, err = svcs[(i+1)%n].RevokeAccess(ctx, d.ID())
				note("revoke", err)
			})
		}
		for i := range attachers {
			s := svcs[i%n]
			fns = append(fns, func() {
				_, err := s.Attach(ctx, d.ID(), fmt.Sprintf("holder%d", i))
				note("attach", err)
				if err != nil {
					return
				}
				r, err := svcs[(i+1)%n].Detach(ctx, d.ID())
				if err == nil && r.Attached != nil {
					err = fmt.Errorf("detached disk still held by %s", r.Attached.Holder)
				}
				note("detach", err)
			})
		}
		for i := range snappers {
			s := svcs[i%n]
			id := snapID(fmt.Sprintf("d%d-s%d", round, i))
			fns = append(fns, func() {
				_, err := s.Put(ctx, id, incrementalSpec(d))
				note("snapshot", err)
				if err == nil {
					mu.Lock()
					snaps = append(snaps, id)
					mu.Unlock()
				}
			})
		}
		// The others signal their end so that the deleter's retries are
		// bounded: one last attempt after they are all done.
		others := make(chan struct{})
		var wg sync.WaitGroup
		for i, fn := range fns {
			wg.Add(1)
			fns[i] = func() { defer wg.Done(); fn() }
		}
		go func() { wg.Wait(); close(others) }()
		deleted := false
		fns = append(fns, func() {
			for attempt := 0; ; attempt++ {
				last := false
				select {
				case <-others:
					last = true
				default:
				}
				existed, err := svcs[attempt%n].Delete(ctx, d.ID())
				if err == nil || outcome(err) != "OperationNotAllowed" || last {
					note("delete", err)
					deleted = err == nil && existed
					return
				}
			}
		})
		race(fns...)
		t.Logf("round %d: %v", round, outcomes)

		for op, allowed := range map[string][]string{
			"grant":    {"ok", "OperationNotAllowed", "ResourceNotFound"},
			"attach":   {"ok", "OperationNotAllowed", "ResourceNotFound"},
			"snapshot": {"ok", "ResourceNotFound"},
			"revoke":   {"ok"},
			"detach":   {"ok"},
			"delete":   {"ok"},
		} {
			if err := onlyExpected(outcomes[op], allowed...); err != nil {
				t.Errorf("round %d: %s: %v", round, op, err)
			}
		}
		if !deleted {
			state := "gone"
			if r, err := f.s.Get(ctx, d.ID()); err == nil {
				state = fmt.Sprintf("%s, attached %+v, grant %+v", r.State(f.now), r.Attached, r.Grant)
			}
			t.Errorf("round %d: the delete did not delete the disk, now %s (outcomes %v)", round, state, outcomes)
		}
		if _, err := f.s.Get(ctx, d.ID()); outcome(err) != "ResourceNotFound" {
			t.Errorf("round %d: Get(deleted disk) = %v, want ResourceNotFound (a racing write brought its record back)", round, err)
		}
		for _, g := range grantIDs {
			if _, err := f.s.ResolveGrant(ctx, g); !errors.Is(err, service.ErrNotFound) {
				t.Errorf("round %d: ResolveGrant(a grant on the deleted disk) = %v, want GrantNotFound", round, err)
			}
		}
		for _, id := range snaps {
			r, err := f.s.Get(ctx, id)
			if err != nil {
				t.Errorf("round %d: snapshot %s was made but is gone: %v", round, id.Name, err)
				continue
			}
			got := make([]byte, len(data))
			if err := f.e.ReadAt(ctx, r.Image, got, 0); err != nil || !bytes.Equal(got, data) {
				t.Errorf("round %d: snapshot %s does not read the disk's data (err %v)", round, id.Name, err)
			}
		}
		f.checkConsistent(t)
		if t.Failed() {
			t.FailNow()
		}
	}
}
