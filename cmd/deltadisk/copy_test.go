package main_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
)

// TestCopyStart copies a chain of incremental snapshots of a 1 GiB disk
// with 1 % changed between each (64 KiB-aligned writes) into another region
// one by one, through the data plane, and checks that only the changes
// travel, that each copy reads byte-identical to its source, that the
// copies form a family whose diffs match the source's, and the refusals.
func TestCopyStart(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "east", "eastus")
	c.group(t, "west", "westus")
	disk := c.emptyDisk(t, "east", "d", 1)
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const block = 64 << 10
	change := func(round int) int64 { // ~1 % of the disk in 64 KiB blocks
		sas := c.grantSAS(t, "east", "d", true, armcompute.AccessLevelWrite)
		pc := srv.pageClient(sas)
		n := int64(0)
		for range 160 {
			p := blobData(block, byte(round))
			uploadPages(t, pc, p, rng.Int64N((1<<30)/block)*block)
			n += block
		}
		c.revokeSAS(t, "east", "d", true)
		return n
	}
	copyOf := func(name, source string) armcompute.Snapshot {
		t.Helper()
		p, err := c.snapshots.BeginCreateOrUpdate(ctx, "west", name, armcompute.Snapshot{Location: to.Ptr("westus"),
			Properties: &armcompute.SnapshotProperties{Incremental: to.Ptr(true),
				CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopyStart), SourceResourceID: to.Ptr(source)}}}, nil)
		if err != nil {
			t.Fatalf("CopyStart %s: %v", name, err)
		}
		if _, err := p.PollUntilDone(ctx, nil); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(60 * time.Second); ; {
			s, err := c.snapshots.Get(ctx, "west", name, nil)
			if err != nil {
				t.Fatal(err)
			}
			if e := s.Properties.CopyCompletionError; e != nil {
				t.Fatalf("copy %s failed: %s %s", name, *e.ErrorCode, *e.ErrorMessage)
			}
			if p := s.Properties.CompletionPercent; p != nil && *p == 100 {
				return s.Snapshot
			}
			if time.Now().After(deadline) {
				t.Fatalf("copy %s stuck at %v%%", name, *s.Properties.CompletionPercent)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	usage := func(id string) map[string]any {
		resp, body := srv.do(http.MethodGet, id+"/usage?api-version=2024-03-02", tok.Token, nil)
		var u map[string]any
		if err := json.Unmarshal(body, &u); resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("usage: %d %s", resp.StatusCode, body)
		}
		cp, _ := u["copy"].(map[string]any)
		return cp
	}

	var sources []armcompute.Snapshot
	var ratios []string
	for i := 1; i <= 5; i++ {
		changed := change(i)
		src := c.mustSnapshot(t, "east", fmt.Sprintf("s%d", i), *disk.ID)
		cp := copyOf(fmt.Sprintf("c%d", i), *src.ID)
		sources = append(sources, src)
		acct := usage(*cp.ID)
		read := int64(acct["bytesRead"].(float64))
		if i > 1 {
			ratio := float64(read) / float64(changed)
			ratios = append(ratios, fmt.Sprintf("%.3f", ratio))
			if ratio > 1.05 {
				t.Errorf("copy %d shipped %d bytes for %d changed (%.3f×); want at most 1.05×", i, read, changed, ratio)
			}
		}
		if *cp.Properties.IncrementalSnapshotFamilyID == *src.Properties.IncrementalSnapshotFamilyID {
			t.Errorf("the copy shares its source's family id")
		}
		a := srv.pageClient(c.grantSAS(t, "east", *src.Name, false, armcompute.AccessLevelRead))
		b := srv.pageClient(c.grantSAS(t, "west", *cp.Name, false, armcompute.AccessLevelRead))
		h := hashData(t, 1<<30, a, b)
		if h[0] != h[1] {
			t.Fatalf("copy %d reads differently from its source", i)
		}
		c.revokeSAS(t, "east", *src.Name, false)
		c.revokeSAS(t, "west", *cp.Name, false)
	}
	t.Logf("bytes shipped / bytes changed for copies 2-5: %s", strings.Join(ratios, ", "))

	// The copies in region B form a family: a diff between two of them is
	// the diff between their sources.
	a1 := c.grantSAS(t, "east", "s2", false, armcompute.AccessLevelRead)
	a3 := c.grantSAS(t, "east", "s4", false, armcompute.AccessLevelRead)
	b1 := c.grantSAS(t, "west", "c2", false, armcompute.AccessLevelRead)
	b3 := c.grantSAS(t, "west", "c4", false, armcompute.AccessLevelRead)
	if da, db := pageRanges(t, srv.pageClient(a3), a1, 0), pageRanges(t, srv.pageClient(b3), b1, 0); strings.Join(da, ",") != strings.Join(db, ",") || len(da) == 0 {
		t.Errorf("diff of copies c2→c4 = %v, want the sources' %v", db, da)
	}

	// Refusals: out of order, a full snapshot, an api-version before CopyStart.
	_, err = c.snapshots.BeginCreateOrUpdate(ctx, "west", "late", armcompute.Snapshot{Location: to.Ptr("westus"),
		Properties: &armcompute.SnapshotProperties{Incremental: to.Ptr(true),
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopyStart), SourceResourceID: sources[1].ID}}}, nil)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	full := c.mustSnapshotFull(t, "east", "full", *disk.ID)
	_, err = c.snapshots.BeginCreateOrUpdate(ctx, "west", "fromfull", armcompute.Snapshot{Location: to.Ptr("westus"),
		Properties: &armcompute.SnapshotProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopyStart), SourceResourceID: full.ID}}}, nil)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	body := `{"location":"westus","properties":{"incremental":true,"creationData":{"createOption":"CopyStart","sourceResourceId":"` + *sources[4].ID + `"}}}`
	resp, out := srv.do(http.MethodPut, "/subscriptions/"+srv.creds.SubscriptionID+"/resourceGroups/west/providers/Microsoft.Compute/snapshots/old?api-version=2020-06-30", tok.Token, []byte(body))
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(out), "2020-12-01") {
		t.Errorf("CopyStart at api-version 2020-06-30 = %d %s, want 400 naming 2020-12-01", resp.StatusCode, out)
	}
}

func (c clients) mustSnapshotFull(t *testing.T, rg, name, source string) armcompute.Snapshot {
	t.Helper()
	s, err := c.snapshot(t.Context(), rg, name, source, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestCLISnapshotCopy: `deltadisk snapshot copy` starts a CopyStart copy and
// follows it to the end, printing the finished copy.
func TestCLISnapshotCopy(t *testing.T) {
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "east", "eastus")
	disk := c.emptyDisk(t, "east", "d", 1)
	c.mustSnapshot(t, "east", "s1", *disk.ID)
	cmd := exec.Command(binary, "snapshot", "copy", "--data-dir", srv.dir, "-g", "east", "-n", "s1", "--to-region", "westus",
		"--query", "[name, completionPercent, incremental]", "-o", "tsv")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("snapshot copy: %v\n%s", err, out)
	}
	if got := strings.Join(strings.Fields(string(out)), " "); got != "s1-westus 100 true" {
		t.Errorf("snapshot copy printed %q", out)
	}
	s, err := c.snapshots.Get(t.Context(), "east", "s1-westus", nil)
	if err != nil || *s.Location != "westus" || *s.Properties.CompletionPercent != 100 {
		t.Fatalf("the copy: %v", err)
	}
}
