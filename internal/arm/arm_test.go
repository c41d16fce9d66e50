package arm

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/deltadisk/deltadisk/internal/service"
)

func TestAPIVersion(t *testing.T) {
	tests := []struct {
		v    string
		code string // "" = accepted
	}{
		{"2024-03-02", ""}, {"2019-03-01", ""}, {"2031-12-31", ""}, {"2024-03-02-preview", ""},
		{"", "MissingApiVersionParameter"}, {"2018-06-01", "InvalidApiVersionParameter"},
		{"2024-13-01", "InvalidApiVersionParameter"}, {"latest", "InvalidApiVersionParameter"},
		{"2024-03-02x", "InvalidApiVersionParameter"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(http.MethodGet, "/x?api-version="+tc.v, nil)
		if tc.v == "" {
			r = httptest.NewRequest(http.MethodGet, "/x", nil)
		}
		c := &call{r: r}
		_, err := c.apiVersion(minComputeVersion)
		var ae *apiError
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("apiVersion(%q) = %v, want accepted", tc.v, err)
		case tc.code != "" && (!errors.As(err, &ae) || ae.code != tc.code || ae.status != http.StatusBadRequest):
			t.Errorf("apiVersion(%q) = %v, want 400 %s", tc.v, err, tc.code)
		}
	}
}

func TestRouteMatching(t *testing.T) {
	rt := newRoute("/Subscriptions/S1//resourceGroups/My-RG/providers/Microsoft.Compute/Disks/Disk1/")
	if !rt.is("subscriptions", "*", "resourcegroups", "*", "providers", "microsoft.compute", "disks", "*") {
		t.Fatalf("route %v does not match the disk pattern", rt.lower)
	}
	if rt.segs[3] != "My-RG" || rt.segs[7] != "Disk1" {
		t.Errorf("names lost their case: %v", rt.segs)
	}
	if rt.is("subscriptions", "*") {
		t.Errorf("a longer path matched a shorter pattern")
	}
}

// FuzzDecodePut: any body either decodes into a PUT or is refused with an
// ARM error of status 400 or 413; nothing panics.
func FuzzDecodePut(f *testing.F) {
	f.Add([]byte(`{"location":"eastus","sku":{"name":"Standard_LRS"},"properties":{"creationData":{"createOption":"Empty"},"diskSizeGB":4}}`))
	f.Add([]byte(`{"location":1}`))
	f.Add([]byte(`{"properties":{"diskSizeGB":"x"}}`))
	f.Add([]byte(``))
	f.Add([]byte(`[`))
	f.Add([]byte(`{"location":"eastus"}{"location":"westus"}`))
	f.Add([]byte(`{"location":"eastus"} x`))
	f.Add([]byte(`{"tags":{"a/b":"v"},"location":"eastus","properties":{"creationData":{"createOption":"Empty"}}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var b putBody
		err := decode(bytes.NewReader(body), &b)
		if err == nil {
			// One JSON value and nothing after it, or it is refused.
			if !json.Valid(body) {
				t.Fatalf("decode(%q) accepted a body that is not one JSON value", body)
			}
			// A spec that passes has tags within ARM's limits.
			if _, err := specOf(&b, service.KindDisk); err == nil && len(b.Tags) > 50 {
				t.Fatalf("specOf accepted %d tags", len(b.Tags))
			}
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || (ae.status != http.StatusBadRequest && ae.status != http.StatusRequestEntityTooLarge) {
			t.Fatalf("decode(%q) = %v, want an ARM 400/413 error", body, err)
		}
		if ae.code != "InvalidRequestContent" && ae.code != "RequestEntityTooLarge" {
			t.Fatalf("decode(%q) code %q", body, ae.code)
		}
	})
}

// FuzzRoute: path splitting never panics and keeps every non-empty
// segment, lower-cased in the matching copy.
func FuzzRoute(f *testing.F) {
	f.Add("/subscriptions/s/resourceGroups/rg")
	f.Add("//a///B/")
	f.Fuzz(func(t *testing.T, path string) {
		rt := newRoute(path)
		if len(rt.segs) != len(rt.lower) {
			t.Fatalf("segments %d, lower %d", len(rt.segs), len(rt.lower))
		}
		for i, s := range rt.segs {
			if s == "" || strings.ToLower(s) != rt.lower[i] {
				t.Fatalf("segment %d of %q: %q / %q", i, path, s, rt.lower[i])
			}
		}
	})
}
