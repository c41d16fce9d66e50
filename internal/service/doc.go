// Package service holds deltadisk's domain rules: subscriptions, resource
// groups, disks and snapshots with their lifecycle, families, grants and
// every restriction of the incremental-snapshot feature. It stores its
// records in the meta store beside the engine's and drives the engine for
// data. Refusals are *Error values whose Kind the API layers map to a
// status; a refused request changes nothing.
package service
