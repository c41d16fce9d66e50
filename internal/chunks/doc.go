// Package chunks stores the content of non-zero blocks as chunks addressed by
// the BLAKE3-256 hash of their plaintext, packed into immutable pack objects
// on a small [Backend] seam (local files, later S3).
//
// One packer and one pack format serve every backend. A chunk is durable
// when [Store.Put] returns; every read verifies the hash, so corruption is an
// error naming the chunk, never wrong bytes. Where a chunk lives (its
// [Location]) is recorded by the caller in the metadata store; this package
// holds no index of its own.
package chunks

// # Writing
//
// [Store.Put] encodes chunks in the caller's goroutine (s2 when
// [Config.Compress] is set and it helps) and queues them. One flush
// goroutine at a time takes everything queued, lays it out into packs of at
// most [Config.MaxPackSize] and writes them one after another; a Put returns
// when the last pack holding its chunks is durable. Callers that arrive
// while a pack is being written share the next one (group commit).
//
// # Pack format
//
// A pack is a header and records back to back, all integers little-endian,
// checksums CRC-32C (Castagnoli):
//
//	header, 24 bytes:
//	  0  4  magic "DDPK"
//	  4  4  format version, 1
//	  8  8  pack length in bytes, header included
//	 16  4  number of records
//	 20  4  checksum of bytes 0-19
//	record, 48 bytes then the stored bytes:
//	  0 32  Ref (BLAKE3-256 of the plaintext)
//	 32  1  codec: 0 raw, 1 s2 (block format)
//	 33  3  reserved, zero
//	 36  4  stored length
//	 40  4  plaintext length (at most MaxChunkSize)
//	 44  4  checksum of bytes 0-43
//	 48     stored bytes
//
// A raw record stores exactly its plaintext; an s2 record is strictly
// smaller than its plaintext. A [Location] points at the stored bytes, so
// [Store.Get] reads just them and checks the plaintext against the Ref; the
// framing is read only by [Store.ScanPack] and [Store.ReadPack], which
// rebuild or check an index from the packs alone. The pack length in the
// header lets them read a pack without asking the Backend for its size.
//
// Pack names carry their creation time (see [PackPrefix] and [PackTime]),
// which GC needs for its grace period.
