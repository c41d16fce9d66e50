// Package engine implements deltadisk's volumes and incremental snapshots on
// top of the meta (ordered key-value) and chunks (content-addressed packs)
// seams.
//
// # Vocabulary
//
//   - A block is the unit of change tracking: 64 KiB, aligned. A block whose
//     bytes are all zero is stored as "zero", never as data.
//   - A chunk is the stored content of a non-zero block, addressed by the
//     BLAKE3-256 hash of its bytes and stored once however many blocks hold it.
//   - A lineage is one volume's timeline. Its generations are numbered from 1;
//     the highest is the head, which the volume writes into. Taking a snapshot
//     seals the head and opens the next generation, so it copies nothing.
//   - A volume is the writable head of a lineage; a snapshot is a sealed
//     generation of one. Both are images with an [ID].
//   - A clone is a volume whose lineage has a base (another lineage at a
//     sealed generation); blocks it never wrote read through to the base.
//   - A zone is one chunk store, a failure domain. An image's placement is
//     the set of zones that must each hold all of its chunks; the chunk
//     index lists every copy of a chunk, one per zone holding it.
//
// # Model
//
// The versioned block map holds (lineage, block, generation) → chunk ref or
// zero, with the generation stored inverted so that a forward seek from
// (lineage, block, ^g) lands on the newest entry at or below g. The
// changed-set index holds (lineage, generation, block) for every map entry
// of a generation > 0, so a diff scans only the generations between two
// snapshots. A generation lives while snapshots or clone bases reference it;
// when the last reference goes, its entries that the next live generation
// still reads are moved up into that generation and the rest are dropped.
// Generations that no one references therefore hold no entries, which keeps
// diff and delete proportional to what changed. Generation 0 is the layer a
// flattened clone copies its base into; it has no changed set.
//
// Chunk refcounts count map entries. A chunk whose count reaches zero stays
// indexed until [Engine.GC] removes it, and a pack is deleted only when no
// indexed chunk lies in it and it is older than the grace period, so a write
// in flight (pack written, metadata not yet committed) is never collected,
// even by another process sharing the stores.
//
// # Zones
//
// A write stores each new chunk in every zone of its volume's placement
// that lacks it, in parallel, before the transaction that points the block
// map at it: a write is acknowledged only once every zone holds it. An
// image made from a source whose placement does not cover its own (a
// zone-redundant snapshot of a one-zone volume) is created at once and
// marked pending; [Engine.Replicate] copies the missing chunks, reading
// only the blocks changed since an earlier snapshot of the lineage that is
// fully placed in the same zones. Reads try each copy in turn, trying last
// a zone that failed lately; [Engine.Scrub] verifies every copy and
// rewrites bad ones from good ones.
//
// # Transactions
//
// Every metadata change is one transaction of the meta seam, which is
// serializable and may run its closure more than once. The metadata-only
// operations also come in forms that run inside a caller's transaction
// ([Engine.SnapshotTx] and the like), and writes in forms whose guard runs
// inside the write's commit ([Engine.WriteAtIf]), so that a caller's rules
// and records commit together with the engine's; what follows a commit
// (waking replication, collecting a deleted generation) is left to the
// caller, since a closure that runs twice must not do it.
package engine
