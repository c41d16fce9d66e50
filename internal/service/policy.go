package service

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/engine"
)

// Policy holds the rules of the incremental-snapshot feature that an
// operator may tune. DefaultPolicy gives the product definition's values.
type Policy struct {
	// IncrementalRegions are the normalised locations that offer
	// incremental snapshots.
	IncrementalRegions []string `json:"incrementalRegions"`
	// MaxIncrementalPerDisk bounds the incremental snapshots of one disk.
	MaxIncrementalPerDisk int `json:"maxIncrementalPerDisk"`
	// SnapshotRateCount incremental snapshots of one disk are allowed per
	// SnapshotRateWindow.
	SnapshotRateCount  int      `json:"snapshotRateCount"`
	SnapshotRateWindow Duration `json:"snapshotRateWindow"`
	// MaxSASPerFamily bounds the snapshots of one family with an active SAS.
	MaxSASPerFamily int `json:"maxSASPerFamily"`
	// MaxCopiesPerRegion bounds concurrent CopyStart copies per subscription
	// and region.
	MaxCopiesPerRegion int `json:"maxCopiesPerRegion"`
	// AllowIncrementalAfterResize lifts the rule that a resized disk takes
	// no more incremental snapshots.
	AllowIncrementalAfterResize bool `json:"allowIncrementalAfterResize"`
	// ListPageSize is how many resources a list answer holds before a
	// nextLink.
	ListPageSize int `json:"listPageSize"`
}

// DefaultPolicy returns the product definition's rules.
func DefaultPolicy() Policy {
	return Policy{
		IncrementalRegions:    []string{"eastus", "eastus2", "centralus", "westcentralus", "canadaeast", "canadacentral", "northeurope"},
		MaxIncrementalPerDisk: 200,
		SnapshotRateCount:     7,
		SnapshotRateWindow:    Duration(5 * time.Minute),
		MaxSASPerFamily:       5,
		MaxCopiesPerRegion:    100,
		ListPageSize:          100,
	}
}

// Validate reports the first unusable field.
func (p Policy) Validate() error {
	switch {
	case p.MaxIncrementalPerDisk < 1:
		return errors.New("policy: maxIncrementalPerDisk must be at least 1")
	case p.SnapshotRateCount < 1 || p.SnapshotRateWindow <= 0:
		return errors.New("policy: snapshotRateCount and snapshotRateWindow must be positive")
	case p.MaxSASPerFamily < 1:
		return errors.New("policy: maxSASPerFamily must be at least 1")
	case p.MaxCopiesPerRegion < 1:
		return errors.New("policy: maxCopiesPerRegion must be at least 1")
	case p.ListPageSize < 1:
		return errors.New("policy: listPageSize must be at least 1")
	}
	for _, r := range p.IncrementalRegions {
		if NormalizeLocation(r) != r {
			return fmt.Errorf("policy: incrementalRegions: %q is not a normalised location (%q)", r, NormalizeLocation(r))
		}
	}
	return nil
}

// Region is a location and its availability zones (0: none, LRS only).
type Region struct {
	Name  string `json:"name"`
	Zones int    `json:"zones"`
}

// ZoneNames names the region's zone stores: "eastus-1" to "eastus-3" for a
// region with three zones, the region's own name for one without.
func (r Region) ZoneNames() []string {
	if r.Zones == 0 {
		return []string{r.Name}
	}
	out := make([]string, r.Zones)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", r.Name, i+1)
	}
	return out
}

// Zones lists every zone of the regions, each with the store open returns
// for it: what [engine.Config] needs for the regions.
func Zones(regions []Region, open func(zone string) (*chunks.Store, error)) ([]engine.Zone, error) {
	var out []engine.Zone
	for _, r := range regions {
		for _, name := range r.ZoneNames() {
			store, err := open(name)
			if err != nil {
				return nil, fmt.Errorf("zone %s: %w", name, err)
			}
			out = append(out, engine.Zone{Name: name, Store: store})
		}
	}
	return out, nil
}

// Placement returns the zones that hold data of the given sku in the
// region: every zone for zone-redundant storage, the first for locally
// redundant.
func (r Region) Placement(sku string) []string {
	zones := r.ZoneNames()
	if strings.HasSuffix(sku, "_ZRS") {
		return zones
	}
	return zones[:1]
}

// DefaultRegions returns Azure's public regions; eastus, eastus2,
// centralus, northeurope and canadacentral have three zones.
func DefaultRegions() []Region {
	names := []string{
		"eastus", "eastus2", "centralus", "northcentralus", "southcentralus", "westcentralus", "westus", "westus2", "westus3",
		"canadacentral", "canadaeast", "brazilsouth", "brazilsoutheast", "mexicocentral",
		"northeurope", "westeurope", "uksouth", "ukwest", "francecentral", "francesouth", "germanywestcentral", "germanynorth",
		"norwayeast", "norwaywest", "swedencentral", "switzerlandnorth", "switzerlandwest", "polandcentral", "italynorth", "spaincentral",
		"eastasia", "southeastasia", "japaneast", "japanwest", "koreacentral", "koreasouth", "centralindia", "southindia", "westindia",
		"australiaeast", "australiasoutheast", "australiacentral", "australiacentral2", "uaenorth", "uaecentral",
		"southafricanorth", "southafricawest", "qatarcentral", "israelcentral", "newzealandnorth",
	}
	zoned := []string{"eastus", "eastus2", "centralus", "northeurope", "canadacentral"}
	out := make([]Region, 0, len(names))
	for _, n := range names {
		r := Region{Name: n}
		if slices.Contains(zoned, n) {
			r.Zones = 3
		}
		out = append(out, r)
	}
	return out
}

// NormalizeLocation maps a display name such as "East US" to "eastus".
// Locations compare normalised but are echoed as the caller sent them.
func NormalizeLocation(s string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), " ", ""))
}

// Duration is a time.Duration written in JSON as a Go duration string
// ("5m", "90s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = Duration(v)
	return nil
}
