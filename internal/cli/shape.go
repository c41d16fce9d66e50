package cli

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
)

// az prints a resource as the Python SDK's model turned into a dict: the
// wire JSON with a disk's or snapshot's "properties" hoisted to the top
// level (the models are flattened), every attribute of the model present
// (null when the service sent none), keys in camelCase of the Python
// attribute names (diskSizeGB becomes diskSizeGb), and resourceGroup
// added from the id. The functions here make the same shape from the Go
// SDK's models, so that --query expressions and jq filters written for az
// work unchanged.

// Keys az prints for a disk or a snapshot even when the service sends no
// value for them.
var (
	diskKeys = []string{
		"id", "name", "type", "location", "tags", "sku", "zones", "extendedLocation", "managedBy", "managedByExtended",
		"creationData", "diskSizeGb", "diskSizeBytes", "uniqueId", "provisioningState", "timeCreated", "diskState",
		"osType", "hyperVGeneration", "purchasePlan", "supportedCapabilities", "encryptionSettingsCollection",
		"diskIopsReadWrite", "diskMBpsReadWrite", "diskIopsReadOnly", "diskMBpsReadOnly", "encryption", "maxShares",
		"shareInfo", "networkAccessPolicy", "diskAccessId", "burstingEnabled", "burstingEnabledTime", "tier",
		"propertyUpdatesInProgress", "supportsHibernation", "securityProfile", "completionPercent",
		"publicNetworkAccess", "dataAccessAuthMode", "optimizedForFrequentAttach", "lastOwnershipUpdateTime",
	}
	snapshotKeys = []string{
		"id", "name", "type", "location", "tags", "sku", "extendedLocation", "managedBy", "creationData",
		"diskSizeGb", "diskSizeBytes", "uniqueId", "provisioningState", "timeCreated", "diskState", "osType",
		"hyperVGeneration", "purchasePlan", "supportedCapabilities", "encryptionSettingsCollection", "incremental",
		"incrementalSnapshotFamilyId", "encryption", "networkAccessPolicy", "diskAccessId", "securityProfile",
		"supportsHibernation", "publicNetworkAccess", "completionPercent", "copyCompletionError", "dataAccessAuthMode",
	}
	creationDataKeys = []string{
		"createOption", "sourceResourceId", "sourceUniqueId", "sourceUri", "storageAccountId", "uploadSizeBytes",
		"imageReference", "galleryImageReference", "logicalSectorSize", "securityDataUri", "performancePlus",
		"elasticSanResourceId", "provisionedBandwidthCopySpeed",
	}
	groupKeys  = []string{"id", "name", "type", "location", "tags", "managedBy", "properties"}
	accessKeys = []string{"accessSas", "securityDataAccessSas"}
)

// azNames are the wire names whose az spelling differs. (The Go SDK also
// writes lastOwnershipUpdateTime with a capital L.)
var azNames = map[string]string{
	"diskSizeGB":              "diskSizeGb",
	"diskIOPSReadWrite":       "diskIopsReadWrite",
	"diskIOPSReadOnly":        "diskIopsReadOnly",
	"LastOwnershipUpdateTime": "lastOwnershipUpdateTime",
	"accessSAS":               "accessSas",
	"securityDataAccessSAS":   "securityDataAccessSas",
}

// timeKeys hold times, which az prints as Python's isoformat does.
var timeKeys = []string{"timeCreated", "lastOwnershipUpdateTime", "burstingEnabledTime"}

// computeShape is az's shape of an armcompute Disk or Snapshot; keys are
// diskKeys or snapshotKeys.
func computeShape(v any, keys []string) (map[string]any, error) {
	m, err := wireMap(v)
	if err != nil {
		return nil, err
	}
	if props, ok := m["properties"].(map[string]any); ok {
		delete(m, "properties")
		for k, p := range props {
			m[k] = p
		}
	}
	m = renameKeys(m)
	fillNull(m, keys)
	if cd, ok := m["creationData"].(map[string]any); ok {
		fillNull(cd, creationDataKeys)
	}
	for _, k := range timeKeys {
		if s, ok := m[k].(string); ok {
			m[k] = pythonTime(s)
		}
	}
	m["resourceGroup"] = nil
	if id, ok := m["id"].(string); ok {
		if rid, err := arm.ParseResourceID(id); err == nil {
			m["resourceGroup"] = rid.ResourceGroupName
		}
	}
	return m, nil
}

// plainShape is az's shape of a model that is not flattened (a resource
// group, an access grant).
func plainShape(v any, keys []string) (map[string]any, error) {
	m, err := wireMap(v)
	if err != nil {
		return nil, err
	}
	m = renameKeys(m)
	fillNull(m, keys)
	return m, nil
}

// wireMap is a model's wire JSON as a map, through the SDK's MarshalJSON.
func wireMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m == nil {
		return nil, fmt.Errorf("empty answer from the server: %s", b)
	}
	return m, nil
}

func renameKeys(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		if n, ok := azNames[k]; ok {
			k = n
		}
		if sub, ok := v.(map[string]any); ok && k != "tags" {
			v = renameKeys(sub)
		}
		out[k] = v
	}
	return out
}

func fillNull(m map[string]any, keys []string) {
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			m[k] = nil
		}
	}
}

// pythonTime reformats an RFC 3339 time as Python's isoformat, which az
// prints: "2026-11-26T12:00:00.123456+00:00", the fraction only when
// there is one.
func pythonTime(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	t = t.UTC()
	if t.Nanosecond()/1000 != 0 {
		return t.Format("2006-01-02T15:04:05.000000-07:00")
	}
	return t.Format("2006-01-02T15:04:05-07:00")
}
