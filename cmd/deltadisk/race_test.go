package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
)

// The service's race tests (internal/service/race_test.go) again, through
// the real binary and the Azure SDK: what a client sees when it fires the
// requests a rule guards all at once. Every answer must be the rule's own
// (success or 409 OperationNotAllowed): a 500 or a 503 here is a request
// that the server could not place before or after the others.

// raceRoundsAPI is fewer rounds than the service tests run: each request
// here crosses TLS and the whole server.
const raceRoundsAPI = 3

// noRetryClients are ARM clients that do not retry: the SDK retries 500
// and 503 by default, which would hide them from the count.
func (s *server) noRetryClients(t *testing.T) clients {
	t.Helper()
	opts := s.armOptions()
	opts.Retry = policy.RetryOptions{MaxRetries: -1}
	cred := s.defaultCredential()
	sub := s.creds.SubscriptionID
	g, err := armresources.NewResourceGroupsClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	d, err := armcompute.NewDisksClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := armcompute.NewSnapshotsClient(sub, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return clients{g, d, sn}
}

// raceAll runs fns in goroutines released together by closing one
// channel, and waits for all of them.
func raceAll(fns ...func()) {
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

// apiOutcome names an answer for counting: "ok", or the status and ARM
// code of an error answer, or the error itself when there was none.
func apiOutcome(err error) string {
	var re *azcore.ResponseError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &re):
		return fmt.Sprintf("%d %s", re.StatusCode, re.ErrorCode)
	}
	return err.Error()
}

// outcomes counts answers by operation; goroutines add to it.
type outcomes struct {
	mu sync.Mutex
	m  map[string]map[string]int
}

func (o *outcomes) add(op string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]map[string]int{}
	}
	if o.m[op] == nil {
		o.m[op] = map[string]int{}
	}
	o.m[op][apiOutcome(err)]++
}

// post sends an ARM POST without the SDK (attach and detach are
// deltadisk's own actions) and returns its answer as an error, nil for a
// 200. It does not fail the test, so goroutines may call it.
func (s *server) post(ctx context.Context, path, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(s.creds.ResourceManagerURL, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return &azcore.ResponseError{StatusCode: resp.StatusCode, ErrorCode: e.Error.Code}
}

func (c clients) grantRead(ctx context.Context, rg, name string, disk bool) error {
	data := armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](3600)}
	if disk {
		p, err := c.disks.BeginGrantAccess(ctx, rg, name, data, nil)
		if err == nil {
			_, err = p.PollUntilDone(ctx, nil)
		}
		return err
	}
	p, err := c.snapshots.BeginGrantAccess(ctx, rg, name, data, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, nil)
	}
	return err
}

func (c clients) revokeDisk(ctx context.Context, rg, name string) error {
	p, err := c.disks.BeginRevokeAccess(ctx, rg, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, nil)
	}
	return err
}

func (c clients) deleteDisk(ctx context.Context, rg, name string) error {
	p, err := c.disks.BeginDelete(ctx, rg, name, nil)
	if err == nil {
		_, err = p.PollUntilDone(ctx, nil)
	}
	return err
}

// TestRaceRulesAPI: 16 incremental snapshots of one disk at once give 7
// snapshots and 9 answers 409 OperationNotAllowed; read grants on 7
// snapshots of one family at once give 5 SAS and 2 refusals; a disk's
// delete racing grants, attaches and snapshots of it leaves no disk,
// every snapshot made readable with the disk's data, and the engine's
// and the service's checks clean.
func TestRaceRulesAPI(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	// A day-long window keeps the default count (7) without making the
	// outcome depend on how fast the requests run.
	srv := startServer(t, dir, writeConfig(t, dir, map[string]any{"snapshotRateWindow": "24h"}))
	c := srv.noRetryClients(t)
	c.group(t, "rg", "eastus")
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("snapshot rate", func(t *testing.T) {
		const creates, allowed = 16, 7
		for round := range raceRoundsAPI {
			disk := c.emptyDisk(t, "rg", fmt.Sprintf("rate%d", round), 1)
			var got outcomes
			fns := make([]func(), creates)
			for i := range fns {
				fns[i] = func() {
					_, err := c.snapshot(ctx, "rg", fmt.Sprintf("rate%d-s%d", round, i), *disk.ID, true)
					got.add("snapshot", err)
				}
			}
			raceAll(fns...)
			want := map[string]int{"ok": allowed, "409 OperationNotAllowed": creates - allowed}
			if !maps.Equal(got.m["snapshot"], want) {
				t.Fatalf("round %d: %d incremental snapshots of one disk at once: %v, want %v", round, creates, got.m["snapshot"], want)
			}
		}
	})

	t.Run("family grants", func(t *testing.T) {
		const snaps, allowed = 7, 5
		for round := range raceRoundsAPI {
			disk := c.emptyDisk(t, "rg", fmt.Sprintf("fam%d", round), 1)
			for i := range snaps {
				c.mustSnapshot(t, "rg", fmt.Sprintf("fam%d-s%d", round, i), *disk.ID)
			}
			var got outcomes
			fns := make([]func(), snaps)
			for i := range fns {
				fns[i] = func() { got.add("grant", c.grantRead(ctx, "rg", fmt.Sprintf("fam%d-s%d", round, i), false)) }
			}
			raceAll(fns...)
			want := map[string]int{"ok": allowed, "409 OperationNotAllowed": snaps - allowed}
			if !maps.Equal(got.m["grant"], want) {
				t.Fatalf("round %d: read grants on %d snapshots of one family at once: %v, want %v", round, snaps, got.m["grant"], want)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		for round := range raceRoundsAPI {
			raceDeleteAPI(t, srv, c, tok.Token, round)
		}
	})

	resp, body := srv.do(http.MethodPost, "/deltadisk/admin/check?api-version=2024-03-02", tok.Token, nil)
	var rep struct {
		Problems []string
		Service  *struct{ Problems []json.RawMessage }
	}
	err = json.Unmarshal(body, &rep)
	if resp.StatusCode != http.StatusOK || err != nil || len(rep.Problems) != 0 || rep.Service == nil || len(rep.Service.Problems) != 0 {
		t.Fatalf("admin check = %d %s", resp.StatusCode, body)
	}
}

// raceDeleteAPI races a disk's delete against 2 grant-then-revoke, 2
// attach-then-detach and 4 snapshot clients; the delete is retried while
// it is refused, and once more after the others are done.
func raceDeleteAPI(t *testing.T, srv *server, c clients, token string, round int) {
	ctx := t.Context()
	name := fmt.Sprintf("del%d", round)
	disk := c.emptyDisk(t, "rg", name, 1)
	data := bytes.Repeat([]byte{byte(round + 1), 0x5a}, 32<<10)
	uploadPages(t, srv.pageClient(c.grantSAS(t, "rg", name, true, armcompute.AccessLevelWrite)), data, 0)
	c.revokeSAS(t, "rg", name, true)

	var got outcomes
	var mu sync.Mutex
	var made []string
	var others sync.WaitGroup
	var fns []func()
	for range 2 {
		fns = append(fns, func() {
			err := c.grantRead(ctx, "rg", name, true)
			got.add("grant", err)
			if err == nil {
				got.add("revoke", c.revokeDisk(ctx, "rg", name))
			}
		})
	}
	for range 2 {
		fns = append(fns, func() {
			err := srv.post(ctx, *disk.ID+"/attach?api-version=2024-03-02", token)
			got.add("attach", err)
			if err == nil {
				got.add("detach", srv.post(ctx, *disk.ID+"/detach?api-version=2024-03-02", token))
			}
		})
	}
	for i := range 4 {
		snap := fmt.Sprintf("%s-s%d", name, i)
		fns = append(fns, func() {
			_, err := c.snapshot(ctx, "rg", snap, *disk.ID, true)
			got.add("snapshot", err)
			if err == nil {
				mu.Lock()
				made = append(made, snap)
				mu.Unlock()
			}
		})
	}
	for i, fn := range fns {
		others.Add(1)
		fns[i] = func() { defer others.Done(); fn() }
	}
	done := make(chan struct{})
	go func() { others.Wait(); close(done) }()
	fns = append(fns, func() {
		for {
			last := false
			select {
			case <-done:
				last = true
			default:
			}
			err := c.deleteDisk(ctx, "rg", name)
			if apiOutcome(err) != "409 OperationNotAllowed" || last {
				got.add("delete", err)
				return
			}
		}
	})
	raceAll(fns...)
	t.Logf("round %d: %v", round, got.m)

	for op, allowed := range map[string][]string{
		"grant":    {"ok", "409 OperationNotAllowed", "404 ResourceNotFound"},
		"attach":   {"ok", "409 OperationNotAllowed", "404 ResourceNotFound"},
		"snapshot": {"ok", "404 ResourceNotFound"},
		"revoke":   {"ok"},
		"detach":   {"ok"},
		"delete":   {"ok"},
	} {
		rest := maps.Clone(got.m[op])
		for _, a := range allowed {
			delete(rest, a)
		}
		if len(rest) != 0 {
			t.Errorf("round %d: %s: unexpected answers %v (all: %v)", round, op, rest, got.m)
		}
	}
	_, err := c.disks.Get(ctx, "rg", name, nil)
	if apiOutcome(err) != "404 ResourceNotFound" {
		t.Errorf("round %d: GET of the deleted disk = %v, want 404 ResourceNotFound", round, err)
	}
	for _, snap := range made {
		pc := srv.pageClient(c.grantSAS(t, "rg", snap, false, armcompute.AccessLevelRead))
		if b := readRange(t, pc, 0, int64(len(data))); !bytes.Equal(b, data) {
			t.Errorf("round %d: snapshot %s does not hold the disk's data", round, snap)
		}
		c.revokeSAS(t, "rg", snap, false)
	}
	if t.Failed() {
		t.FailNow()
	}
}
