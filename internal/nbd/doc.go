// Package nbd serves block devices to Network Block Device clients (qemu,
// libnbd's nbdcopy and nbdinfo, the Linux nbd driver): a small server of our
// own for the fixed newstyle protocol, with simple replies only. deltadisk
// uses it to attach a disk: the disk's volume becomes an export that a client
// reads and writes until the export is removed (detach).
//
// # Protocol
//
// The handshake is fixed newstyle with NBD_FLAG_NO_ZEROES. Options:
// NBD_OPT_EXPORT_NAME, NBD_OPT_GO and NBD_OPT_INFO (NBD_INFO_EXPORT and
// NBD_INFO_BLOCK_SIZE always, NBD_INFO_NAME on request) and NBD_OPT_ABORT.
// NBD_OPT_LIST gets NBD_REP_ERR_POLICY. Everything else, TLS, structured
// replies, metadata contexts and extended headers included, gets
// NBD_REP_ERR_UNSUP, so every reply in transmission is a simple reply. An
// unknown export, never exported or removed alike, gets NBD_REP_ERR_UNKNOWN
// (or, after NBD_OPT_EXPORT_NAME, which cannot carry an error, a hard
// disconnect).
//
// # Security
//
// There is no authentication and no TLS: whoever can connect and names an
// export reads and writes it. The names are therefore the secret. Exports
// are never listed, a wrong name tells nothing, and callers that serve
// beyond one machine must choose names nobody can guess (deltadisk's
// attach uses 128 random bits). [Server.Serve] logs a warning when it
// listens on a TCP address other than loopback.
//
// Commands: READ, WRITE, FLUSH, TRIM, WRITE_ZEROES (NO_HOLE and FAST_ZERO
// accepted) and DISC; FUA is accepted on all of them. CACHE, BLOCK_STATUS
// and unknown commands or flags get EINVAL. Requests are pipelined: each
// connection runs up to [Config.MaxInFlight] requests at once, replies go
// out in completion order, one at a time.
//
// # Durability and flush
//
// A [Device] write need not be durable when it returns, only once a
// Device.Flush that follows it returns (deltadisk's attached disks buffer
// writes in memory, as a disk with a write-back cache does). The server
// replies to a write once its Device calls returned, so reads see it; FLUSH
// is answered once every write the export had received before the flush,
// on any of its connections, has finished and Device.Flush has returned;
// a request with FUA is answered after its own Device.Flush. Waiting for
// writes received, not only those answered, is more than the protocol
// asks, and it is what makes NBD_FLAG_CAN_MULTI_CONN safe to advertise:
// there is no per-connection cache, every connection reads and writes the
// same Device, and a flush on one connection covers writes completed on all
// of them.
//
// # Alignment
//
// A Device sees only offsets and lengths that are multiples of [SectorSize].
// The server advertises NBD_INFO_BLOCK_SIZE (minimum 512, preferred 64 KiB,
// maximum 4 MiB), but it does not rely on clients obeying it: a client that
// used NBD_OPT_EXPORT_NAME never saw it, and the protocol's defaults are a
// minimum of 1 byte and requests up to 32 MiB. So:
//   - an unaligned read reads the covering sectors and returns the slice asked for;
//   - an unaligned WRITE or WRITE_ZEROES writes its aligned middle directly and
//     each partial sector at its edges by read-modify-write;
//   - an unaligned TRIM zeroes only the whole sectors inside it (trim is a hint);
//   - writes to overlapping sectors never run at once (a range lock per export,
//     across connections), so a read-modify-write cannot undo a concurrent
//     write to the other bytes of its sector.
//
// # Limits and errors
//
// READ and WRITE longer than [Config.MaxRequest] (default 32 MiB) get EINVAL;
// the payload of such a write is read and discarded, never buffered. Reads
// out of range, and trims, get EINVAL; writes out of range ENOSPC; writes to
// a read-only export EPERM. A Device error becomes ENOSPC when it wraps
// [ErrNoSpace] (or ENOSPC, EDQUOT, EFBIG), EPERM when it wraps EACCES, EPERM
// or EROFS (a store that may not write), ESHUTDOWN while the server stops,
// and EIO otherwise; its text is logged, never sent.
package nbd
