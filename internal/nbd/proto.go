package nbd

// Wire constants of the NBD protocol (NetworkBlockDevice/nbd doc/proto.md).
// All integers are big-endian.

const (
	magicNBD      = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption   = 0x49484156454f5054 // "IHAVEOPT"
	magicOptReply = 0x0003e889045565a9
	magicRequest  = 0x25609513
	magicReply    = 0x67446698 // simple reply
)

// Handshake flags (server) and client flags.
const (
	flagFixedNewstyle uint16 = 1 << 0
	flagNoZeroes      uint16 = 1 << 1

	clientFixedNewstyle uint32 = 1 << 0
	clientNoZeroes      uint32 = 1 << 1
)

// Options.
const (
	optExportName       uint32 = 1
	optAbort            uint32 = 2
	optList             uint32 = 3
	optStartTLS         uint32 = 5
	optInfo             uint32 = 6
	optGo               uint32 = 7
	optStructuredReply  uint32 = 8
	optListMetaContext  uint32 = 9
	optSetMetaContext   uint32 = 10
	optExtendedHeaders  uint32 = 11
	maxOptionDataLength        = 16 << 10 // a name is at most 4096 bytes
)

// Option reply types.
const (
	repAck        uint32 = 1
	repServer     uint32 = 2
	repInfo       uint32 = 3
	repErrUnsup   uint32 = 1<<31 + 1
	repErrPolicy  uint32 = 1<<31 + 2
	repErrInvalid uint32 = 1<<31 + 3
	repErrUnknown uint32 = 1<<31 + 6
	repErrTooBig  uint32 = 1<<31 + 9
)

// Information types of NBD_OPT_INFO and NBD_OPT_GO.
const (
	infoExport    uint16 = 0
	infoName      uint16 = 1
	infoBlockSize uint16 = 3
)

// Transmission flags.
const (
	tfHasFlags        uint16 = 1 << 0
	tfReadOnly        uint16 = 1 << 1
	tfSendFlush       uint16 = 1 << 2
	tfSendFUA         uint16 = 1 << 3
	tfSendTrim        uint16 = 1 << 5
	tfSendWriteZeroes uint16 = 1 << 6
	tfCanMultiConn    uint16 = 1 << 8
	tfSendFastZero    uint16 = 1 << 11
)

// Commands.
const (
	cmdRead        uint16 = 0
	cmdWrite       uint16 = 1
	cmdDisc        uint16 = 2
	cmdFlush       uint16 = 3
	cmdTrim        uint16 = 4
	cmdCache       uint16 = 5
	cmdWriteZeroes uint16 = 6
	cmdBlockStatus uint16 = 7
)

// Command flags.
const (
	cmdFlagFUA      uint16 = 1 << 0
	cmdFlagNoHole   uint16 = 1 << 1
	cmdFlagFastZero uint16 = 1 << 4
)

// Error values of simple replies.
const (
	errPerm     uint32 = 1
	errIO       uint32 = 5
	errInval    uint32 = 22
	errNoSpc    uint32 = 28
	errShutdown uint32 = 108
)

// Block size constraints advertised with NBD_INFO_BLOCK_SIZE.
const (
	// SectorSize is the alignment of every offset and length a [Device] is
	// given, and the minimum block size advertised to clients.
	SectorSize = 512
	// preferredBlockSize is the preferred block size advertised: requests
	// this large or larger, aligned to it, avoid read-modify-write in the
	// engine as well as here.
	preferredBlockSize = 64 << 10
	// advertisedMaxRequest is the maximum block size advertised (at most
	// Config.MaxRequest). It bounds the buffers of clients that obey it;
	// Config.MaxRequest stays the hard limit for those that do not.
	advertisedMaxRequest = 4 << 20
)

func cmdName(typ uint16) string {
	switch typ {
	case cmdRead:
		return "read"
	case cmdWrite:
		return "write"
	case cmdDisc:
		return "disc"
	case cmdFlush:
		return "flush"
	case cmdTrim:
		return "trim"
	case cmdCache:
		return "cache"
	case cmdWriteZeroes:
		return "write_zeroes"
	case cmdBlockStatus:
		return "block_status"
	}
	return "unknown"
}
