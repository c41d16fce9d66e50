package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armresources"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/resources/armsubscriptions"
)

// Principals and subscriptions the config file adds.
const (
	secondSub    = "22222222-2222-2222-2222-222222222222"
	secondClient = "aaaaaaaa-0000-0000-0000-000000000002"
	readerClient = "aaaaaaaa-0000-0000-0000-000000000003"
	secret       = "test-secret-0123456789"
)

func writeConfig(t *testing.T, dir string, policy map[string]any) string {
	t.Helper()
	cfg := map[string]any{
		"subscriptions": []map[string]any{{"subscriptionId": secondSub, "displayName": "second"}},
		"principals": []map[string]any{
			{"clientId": secondClient, "clientSecret": secret, "roles": []map[string]any{{"role": "Owner", "scope": "/subscriptions/" + secondSub}}},
		},
		"policy": policy,
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type clients struct {
	groups    *armresources.ResourceGroupsClient
	disks     *armcompute.DisksClient
	snapshots *armcompute.SnapshotsClient
}

func (s *server) clients(sub string, cred azcore.TokenCredential) clients {
	s.t.Helper()
	g, err := armresources.NewResourceGroupsClient(sub, cred, s.armOptions())
	if err != nil {
		s.t.Fatal(err)
	}
	d, err := armcompute.NewDisksClient(sub, cred, s.armOptions())
	if err != nil {
		s.t.Fatal(err)
	}
	sn, err := armcompute.NewSnapshotsClient(sub, cred, s.armOptions())
	if err != nil {
		s.t.Fatal(err)
	}
	return clients{g, d, sn}
}

func (c clients) group(t *testing.T, name, location string) {
	t.Helper()
	if _, err := c.groups.CreateOrUpdate(t.Context(), name, armresources.ResourceGroup{Location: to.Ptr(location)}, nil); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
}

func (c clients) emptyDisk(t *testing.T, rg, name string, gb int32) armcompute.Disk {
	t.Helper()
	poller, err := c.disks.BeginCreateOrUpdate(t.Context(), rg, name, armcompute.Disk{
		Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)},
			DiskSizeGB:   to.Ptr(gb),
		},
	}, nil)
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	res, err := poller.PollUntilDone(t.Context(), nil)
	if err != nil {
		t.Fatalf("create disk %s: %v", name, err)
	}
	return res.Disk
}

func (c clients) snapshot(ctx context.Context, rg, name, source string, incremental bool) (armcompute.Snapshot, error) {
	poller, err := c.snapshots.BeginCreateOrUpdate(ctx, rg, name, armcompute.Snapshot{
		Location: to.Ptr("eastus"),
		Properties: &armcompute.SnapshotProperties{
			CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(source)},
			Incremental:  to.Ptr(incremental),
		},
	}, nil)
	if err != nil {
		return armcompute.Snapshot{}, err
	}
	res, err := poller.PollUntilDone(ctx, nil)
	return res.Snapshot, err
}

// wantARMError checks an SDK error's status and ARM code.
func wantARMError(t *testing.T, err error, status int, code string) {
	t.Helper()
	var re *azcore.ResponseError
	if !errors.As(err, &re) || re.StatusCode != status || re.ErrorCode != code {
		t.Fatalf("got %v, want HTTP %d %s", err, status, code)
	}
}

// TestLifecycle drives the real binary with the official Azure SDK for Go:
// groups, every createOption, a family of incremental snapshots found by
// sourceResourceId and sourceUniqueId, deleting in the middle of the
// chain, grants, paging, the feature's rules, and a restart.
func TestLifecycle(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	srv := startServer(t, dir, writeConfig(t, dir, map[string]any{"snapshotRateCount": 4, "snapshotRateWindow": "1h", "maxIncrementalPerDisk": 5, "listPageSize": 2}))
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg1", "eastus")

	disk := c.emptyDisk(t, "rg1", "disk1", 4)
	if *disk.Properties.DiskState != armcompute.DiskStateUnattached || *disk.Properties.DiskSizeBytes != 4<<30 || *disk.Properties.UniqueID == "" {
		t.Fatalf("new disk: state %v size %v", *disk.Properties.DiskState, *disk.Properties.DiskSizeBytes)
	}
	var chain []armcompute.Snapshot
	for i := range 3 {
		s, err := c.snapshot(ctx, "rg1", fmt.Sprintf("snap%d", i), *disk.ID, true)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, s)
	}
	if p := chain[0].Properties; !*p.Incremental || *chain[0].SKU.Name != armcompute.SnapshotStorageAccountTypesStandardZRS ||
		*p.CreationData.SourceUniqueID != *disk.Properties.UniqueID || p.IncrementalSnapshotFamilyID == nil {
		t.Fatalf("incremental snapshot: %+v sku %v", *p, *chain[0].SKU.Name)
	}
	// A full snapshot, a disk from a snapshot and from a disk, an upload disk.
	full, err := c.snapshot(ctx, "rg1", "full", *chain[1].ID, false)
	if err != nil || *full.Properties.Incremental {
		t.Fatalf("full snapshot: %v", err)
	}
	for _, src := range []string{*chain[2].ID, *disk.ID, *full.ID} {
		name := "from-" + src[strings.LastIndex(src, "/")+1:]
		poller, err := c.disks.BeginCreateOrUpdate(ctx, "rg1", name, armcompute.Disk{Location: to.Ptr("eastus"),
			Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionCopy), SourceResourceID: to.Ptr(src)}}}, nil)
		if err != nil {
			t.Fatalf("disk from %s: %v", src, err)
		}
		d, err := poller.PollUntilDone(ctx, nil)
		if err != nil || *d.Properties.DiskSizeGB != 4 || !strings.EqualFold(*d.Properties.CreationData.SourceResourceID, src) {
			t.Fatalf("disk from %s: %v %+v", src, err, d.Properties)
		}
	}
	poller, err := c.disks.BeginCreateOrUpdate(ctx, "rg1", "upload", armcompute.Disk{Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionUpload), UploadSizeBytes: to.Ptr[int64](32<<20 + 512)}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	up, err := poller.PollUntilDone(ctx, nil)
	if err != nil || *up.Properties.DiskState != armcompute.DiskStateReadyToUpload || *up.Properties.DiskSizeBytes != 32<<20 {
		t.Fatalf("upload disk: %v %+v", err, up.Properties)
	}

	// The family, as users find it: incremental, sourceResourceId and
	// sourceUniqueId of the disk. Paged two at a time.
	family := func() []string {
		var names []string
		pager := c.snapshots.NewListByResourceGroupPager("rg1", nil)
		for pager.More() {
			page, err := pager.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page.Value {
				p := s.Properties
				if *p.Incremental && strings.EqualFold(*p.CreationData.SourceResourceID, *disk.ID) && *p.CreationData.SourceUniqueID == *disk.Properties.UniqueID {
					names = append(names, *s.Name)
				}
			}
		}
		return names
	}
	if got := strings.Join(family(), ","); got != "snap0,snap1,snap2" {
		t.Fatalf("family = %s", got)
	}
	// Delete the middle of the chain.
	if p, err := c.snapshots.BeginDelete(ctx, "rg1", "snap1", nil); err != nil {
		t.Fatal(err)
	} else if _, err := p.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(family(), ","); got != "snap0,snap2" {
		t.Fatalf("family after deleting snap1 = %s", got)
	}

	// Grants: a read SAS on a snapshot, one at a time; write on the upload disk.
	g, err := c.snapshots.BeginGrantAccess(ctx, "rg1", "snap2", armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](3600)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	access, err := g.PollUntilDone(ctx, nil)
	if err != nil || !strings.HasPrefix(*access.AccessSAS, srv.creds.ResourceManagerURL+"md-") || !strings.Contains(*access.AccessSAS, "sig=") {
		t.Fatalf("grant: %v %v", err, access.AccessSAS)
	}
	if s, _ := c.snapshots.Get(ctx, "rg1", "snap2", nil); *s.Properties.DiskState != armcompute.DiskStateActiveSAS {
		t.Errorf("snapshot state with a SAS = %v", *s.Properties.DiskState)
	}
	_, err = c.snapshots.BeginGrantAccess(ctx, "rg1", "snap2", armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelRead), DurationInSeconds: to.Ptr[int32](60)}, nil)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	if p, err := c.snapshots.BeginRevokeAccess(ctx, "rg1", "snap2", nil); err != nil {
		t.Fatal(err)
	} else if _, err := p.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.disks.BeginGrantAccess(ctx, "rg1", "upload", armcompute.GrantAccessData{Access: to.Ptr(armcompute.AccessLevelWrite), DurationInSeconds: to.Ptr[int32](3600)}, nil); err != nil {
		t.Fatal(err)
	}
	if d, _ := c.disks.Get(ctx, "rg1", "upload", nil); *d.Properties.DiskState != armcompute.DiskStateActiveUpload {
		t.Errorf("upload disk state with a write SAS = %v", *d.Properties.DiskState)
	}

	// Rules through the API.
	_, err = c.snapshot(ctx, "rg1", "inc-of-snap", *chain[0].ID, true)
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	for i := 3; i < 5; i++ { // the rate rule allows 4 per hour: snap0-2 and one more
		_, err = c.snapshot(ctx, "rg1", fmt.Sprintf("snap%d", i), *disk.ID, true)
		if i == 3 && err != nil {
			t.Fatal(err)
		}
	}
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed")
	resize, err := c.disks.BeginUpdate(ctx, "rg1", "disk1", armcompute.DiskUpdate{Properties: &armcompute.DiskUpdateProperties{DiskSizeGB: to.Ptr[int32](2)}}, nil)
	if err == nil {
		_, err = resize.PollUntilDone(ctx, nil)
	}
	wantARMError(t, err, http.StatusConflict, "OperationNotAllowed") // shrinking
	_, err = c.disks.BeginCreateOrUpdate(ctx, "rg1", "bad_name-", armcompute.Disk{Location: to.Ptr("eastus"),
		Properties: &armcompute.DiskProperties{CreationData: &armcompute.CreationData{CreateOption: to.Ptr(armcompute.DiskCreateOptionEmpty)}, DiskSizeGB: to.Ptr[int32](1)}}, nil)
	wantARMError(t, err, http.StatusBadRequest, "InvalidParameter")
	_, err = c.disks.Get(ctx, "rg1", "nope", nil)
	wantARMError(t, err, http.StatusNotFound, "ResourceNotFound")
	_, err = c.disks.Get(ctx, "nope", "disk1", nil)
	wantARMError(t, err, http.StatusNotFound, "ResourceGroupNotFound")

	// Everything survives a restart.
	before, _ := c.snapshots.Get(ctx, "rg1", "snap2", nil)
	srv.restart()
	c = srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	after, err := c.snapshots.Get(ctx, "rg1", "snap2", nil)
	if err != nil || *after.Properties.UniqueID != *before.Properties.UniqueID {
		t.Fatalf("after restart: %v", err)
	}
	if d, _ := c.disks.Get(ctx, "rg1", "upload", nil); *d.Properties.DiskState != armcompute.DiskStateActiveUpload {
		t.Errorf("grant lost in restart: state %v", *d.Properties.DiskState)
	}
	// Deleting the group deletes what is in it.
	dp, err := c.groups.BeginDelete(ctx, "rg1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.PollUntilDone(ctx, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.disks.Get(ctx, "rg1", "disk1", nil)
	wantARMError(t, err, http.StatusNotFound, "ResourceGroupNotFound")
}

// TestScopes: a second principal sees only its own subscription, a Reader
// cannot write, and calls without a valid token are refused with 401.
func TestScopes(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	cfg := map[string]any{
		"subscriptions": []map[string]any{{"subscriptionId": secondSub, "displayName": "second"}},
		"principals": []map[string]any{
			{"clientId": secondClient, "clientSecret": secret, "roles": []map[string]any{{"role": "Owner", "scope": "/subscriptions/" + secondSub}}},
			{"clientId": readerClient, "clientSecret": secret, "roles": []map[string]any{{"role": "Reader", "scope": "/subscriptions/" + secondSub}}},
		},
	}
	b, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, dir, path)
	first := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	first.group(t, "private", "eastus")
	first.emptyDisk(t, "private", "d", 1)

	second := srv.credential(secondClient, secret)
	subs, err := armsubscriptions.NewClient(second, srv.armOptions())
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	pager := subs.NewListPager(nil)
	for pager.More() {
		page, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page.Value {
			seen = append(seen, *s.SubscriptionID)
		}
	}
	if strings.Join(seen, ",") != secondSub {
		t.Fatalf("second principal sees subscriptions %v, want only %s", seen, secondSub)
	}
	intruder := srv.clients(srv.creds.SubscriptionID, second)
	_, err = intruder.disks.Get(ctx, "private", "d", nil)
	wantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")
	pg := intruder.disks.NewListPager(nil)
	_, err = pg.NextPage(ctx)
	wantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")

	own := srv.clients(secondSub, second)
	own.group(t, "mine", "eastus")
	reader := srv.clients(secondSub, srv.credential(readerClient, secret))
	if _, err := reader.groups.Get(ctx, "mine", nil); err != nil {
		t.Fatalf("reader cannot read: %v", err)
	}
	_, err = reader.groups.CreateOrUpdate(ctx, "theirs", armresources.ResourceGroup{Location: to.Ptr("eastus")}, nil)
	wantARMError(t, err, http.StatusForbidden, "AuthorizationFailed")

	// No token, a forged one, one for another audience.
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	path = "/subscriptions/" + srv.creds.SubscriptionID + "/resourcegroups?api-version=2021-04-01"
	for name, token := range map[string]string{"none": "", "forged": tok.Token[:len(tok.Token)-4] + "AAAA", "garbage": "x.y.z"} {
		resp, body := srv.do(http.MethodGet, path, token, nil)
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || !strings.Contains(string(body), `"error"`) {
			t.Errorf("%s token: %d %q %s", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
	}
	if resp, body := srv.do(http.MethodGet, path, tok.Token, nil); resp.StatusCode != http.StatusOK {
		t.Errorf("valid token refused: %d %s", resp.StatusCode, body)
	}
}

// TestWireErrors covers what the SDK never sends: bad api-versions, bad
// JSON, wrong types, oversize bodies.
func TestWireErrors(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	sub := "/subscriptions/" + srv.creds.SubscriptionID
	if resp, body := srv.do(http.MethodPut, sub+"/resourcegroups/rg?api-version=2021-04-01", tok.Token, []byte(`{"location":"eastus"}`)); resp.StatusCode != http.StatusCreated {
		t.Fatalf("create group: %d %s", resp.StatusCode, body)
	}
	disk := sub + "/resourceGroups/rg/providers/Microsoft.Compute/disks/d"
	tests := []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"missing api-version", "GET", disk, "", 400, "MissingApiVersionParameter"},
		{"too old api-version", "GET", disk + "?api-version=2018-06-01", "", 400, "InvalidApiVersionParameter"},
		{"malformed api-version", "GET", disk + "?api-version=latest", "", 400, "InvalidApiVersionParameter"},
		{"malformed JSON", "PUT", disk + "?api-version=2024-03-02", `{"location":`, 400, "InvalidRequestContent"},
		{"wrong type", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","properties":{"diskSizeGB":"four","creationData":{"createOption":"Empty"}}}`, 400, "InvalidRequestContent"},
		{"missing location", "PUT", disk + "?api-version=2024-03-02", `{"properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}`, 400, "InvalidParameter"},
		{"missing creationData", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus"}`, 400, "InvalidParameter"},
		{"size 0", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","properties":{"diskSizeGB":0,"creationData":{"createOption":"Empty"}}}`, 400, "InvalidParameter"},
		{"unknown type", "GET", sub + "/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines?api-version=2024-03-02", "", 404, "InvalidResourceType"},
		{"oversize body", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","tags":{"x":"` + strings.Repeat("a", 5<<20) + `"}}`, 413, "RequestEntityTooLarge"},
		{"future api-version", "GET", disk + "?api-version=2031-01-01", "", 404, "ResourceNotFound"},
		{"repeated api-version", "GET", disk + "?api-version=2024-03-02&api-version=2024-03-02", "", 400, "InvalidApiVersionParameter"},
		{"trailing data", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}{"location":"westus"}`, 400, "InvalidRequestContent"},
		{"trailing garbage", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}} x`, 400, "InvalidRequestContent"},
		{"51 tags", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","tags":{` + manyTags(51) + `},"properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}`, 400, "InvalidParameter"},
		{"tag value of 300", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","tags":{"k":"` + strings.Repeat("v", 300) + `"},"properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}`, 400, "InvalidParameter"},
		{"tag name of 600", "PUT", disk + "?api-version=2024-03-02", `{"location":"eastus","tags":{"` + strings.Repeat("k", 600) + `":"v"},"properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}`, 400, "InvalidParameter"},
		{"group with 51 tags", "PUT", sub + "/resourcegroups/rg?api-version=2021-04-01", `{"location":"eastus","tags":{` + manyTags(51) + `}}`, 400, "InvalidParameter"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body []byte
			if tc.body != "" {
				body = []byte(tc.body)
			}
			resp, out := srv.do(tc.method, tc.path, tok.Token, body)
			var e struct {
				Error struct{ Code string } `json:"error"`
			}
			_ = json.Unmarshal(out, &e)
			if resp.StatusCode != tc.status || e.Error.Code != tc.code {
				t.Fatalf("%s %s = %d %s, want %d %s", tc.method, tc.path[:min(len(tc.path), 100)], resp.StatusCode, out[:min(len(out), 300)], tc.status, tc.code)
			}
		})
	}
	// Nothing was written by the refused PUTs.
	if resp, _ := srv.do(http.MethodGet, disk+"?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("a refused PUT created the disk: %d", resp.StatusCode)
	}

	// A body that says it is not JSON is refused before it is read;
	// application/json with parameters, and no type at all, are read.
	create := []byte(`{"location":"eastus","properties":{"diskSizeGB":4,"creationData":{"createOption":"Empty"}}}`)
	for _, tc := range []struct {
		contentType string
		status      int
	}{
		{"text/plain", http.StatusUnsupportedMediaType},
		{"application/x-www-form-urlencoded", http.StatusUnsupportedMediaType},
		{"application/jsonx", http.StatusUnsupportedMediaType},
		{"application/json; charset=utf-8", http.StatusOK},
		{"", http.StatusOK},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, strings.TrimSuffix(srv.creds.ResourceManagerURL, "/")+disk+"?api-version=2024-03-02", bytes.NewReader(create))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		if tc.contentType != "" {
			req.Header.Set("Content-Type", tc.contentType)
		}
		resp, err := srv.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.status == http.StatusUnsupportedMediaType && !strings.Contains(string(out), `"UnsupportedMediaType"`)) {
			t.Fatalf("PUT with Content-Type %q = %d %s, want %d", tc.contentType, resp.StatusCode, out, tc.status)
		}
		if tc.status != http.StatusOK {
			if resp, _ := srv.do(http.MethodGet, disk+"?api-version=2024-03-02", tok.Token, nil); resp.StatusCode != http.StatusNotFound {
				t.Fatalf("a PUT refused for its Content-Type created the disk: %d", resp.StatusCode)
			}
		}
	}

	// PATCH diskSizeGB 0 (or below) is a request, not an absent field.
	for _, gb := range []string{"0", "-1"} {
		resp, out := srv.do(http.MethodPatch, disk+"?api-version=2024-03-02", tok.Token, []byte(`{"properties":{"diskSizeGB":`+gb+`}}`))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(out), `"InvalidParameter"`) {
			t.Fatalf("PATCH diskSizeGB %s = %d %s, want 400 InvalidParameter", gb, resp.StatusCode, out)
		}
	}
	resp, out := srv.do(http.MethodGet, disk+"?api-version=2024-03-02", tok.Token, nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), `"diskSizeGB":4`) {
		t.Fatalf("after refused PATCHes: %d %s", resp.StatusCode, out)
	}
}

// manyTags returns the members of a JSON object of n tags.
func manyTags(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"t%d":"v"`, i)
	}
	return b.String()
}

// TestExtensions: the usage endpoint and attach refusals of disks and
// snapshots.
func TestExtensions(t *testing.T) {
	ctx := t.Context()
	srv := startServer(t, t.TempDir(), "")
	c := srv.clients(srv.creds.SubscriptionID, srv.defaultCredential())
	c.group(t, "rg", "eastus")
	disk := c.emptyDisk(t, "rg", "d", 2)
	snap, err := c.snapshot(ctx, "rg", "s", *disk.ID, true)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := srv.defaultCredential().GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{srv.creds.Audience + ".default"}})
	if err != nil {
		t.Fatal(err)
	}
	resp, body := srv.do(http.MethodGet, *snap.ID+"/usage?api-version=2024-03-02", tok.Token, nil)
	var u map[string]int64
	if err := json.Unmarshal(body, &u); resp.StatusCode != http.StatusOK || err != nil || u["sizeBytes"] != 2<<30 {
		t.Fatalf("usage = %d %s", resp.StatusCode, body)
	}
	for _, k := range []string{"allocatedBytes", "changedBytes", "exclusiveBytes", "exclusiveStoredBytes"} {
		if _, ok := u[k]; !ok {
			t.Errorf("usage lacks %s: %s", k, body)
		}
	}
	resp, body = srv.do(http.MethodPost, *snap.ID+"/attach?api-version=2024-03-02", tok.Token, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("attach of a snapshot = %d %s, want 404 (no such action on snapshots)", resp.StatusCode, body)
	}
}
