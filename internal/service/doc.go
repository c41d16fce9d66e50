// Package service holds deltadisk's domain rules: subscriptions, resource
// groups, disks and snapshots with their lifecycle, families, grants and
// every restriction of the incremental-snapshot feature. It stores its
// records in the meta store beside the engine's and drives the engine for
// data. Refusals are *Error values whose Kind the API layers map to a
// status; a refused request changes nothing.
//
// Each domain operation is one meta.Update that loads what it needs,
// checks every rule and writes the records and the engine's metadata
// together (the engine's ...Tx forms); a Put Page's checks run inside the
// engine's commit of its blocks (WritePages). The store serializes the
// transactions, so the rules hold between goroutines and between
// Services sharing one store, with no lock of the package's own.
package service
