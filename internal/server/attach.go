package server

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
	"strings"
	"sync"

	"github.com/deltadisk/deltadisk/internal/arm"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/nbd"
)

// Attachments exports attached disks' volumes over NBD: the arm.Attacher
// behind deltadisk's attach/detach extension.
type Attachments struct {
	nbd    *nbd.Server
	engine *engine.Engine
	// tcpAddr and socket are where the NBD server listens.
	tcpAddr, socket string

	mu sync.Mutex
	// exports holds each attached disk's remove function, by disk id.
	exports map[string]func()
}

var _ arm.Attacher = (*Attachments)(nil)

// NewAttachments exports through srv, which the caller serves on tcpAddr
// and (if not empty) the unix socket.
func NewAttachments(srv *nbd.Server, e *engine.Engine, tcpAddr, socket string) *Attachments {
	return &Attachments{nbd: srv, engine: e, tcpAddr: tcpAddr, socket: socket, exports: make(map[string]func())}
}

// newExportName returns a name nobody can guess: NBD has no
// authentication, so the name, handed only to whoever attached the disk, is
// what keeps everyone else from it. A name derived from the disk id could be
// computed by anyone who knows the id; this one has 130 random bits, and a
// new one comes with every attach. Base32 needs no escaping in a URI.
func newExportName() string {
	return "disk-" + strings.ToLower(rand.Text())
}

// Attach exports the volume under a new random name, which only the
// answer carries.
func (a *Attachments) Attach(ctx context.Context, disk string, volume engine.ID) (arm.Export, error) {
	info, err := a.engine.Stat(ctx, volume)
	if err != nil {
		return arm.Export{}, err
	}
	name := newExportName()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.exports[disk]; ok {
		return arm.Export{}, fmt.Errorf("disk %s is already exported", disk)
	}
	remove, err := a.nbd.Export(name, volumeDevice{e: a.engine, id: volume, size: info.Size}, false)
	if err != nil {
		return arm.Export{}, err
	}
	a.exports[disk] = remove
	exp := arm.Export{NBDURI: "nbd://" + a.tcpAddr + "/" + name}
	if a.socket != "" {
		exp.UnixSocket = a.socket
		exp.UnixURI = "nbd+unix:///" + name + "?socket=" + url.QueryEscape(a.socket)
	}
	return exp, nil
}

// Detach ends the export and its connections; an unknown disk is not an
// error (the export ended with a restart).
func (a *Attachments) Detach(_ context.Context, disk string) error {
	a.mu.Lock()
	remove := a.exports[disk]
	delete(a.exports, disk)
	a.mu.Unlock()
	if remove != nil {
		remove()
	}
	return nil
}

// volumeDevice serves an engine volume as an NBD device. Engine writes are
// durable when they return, so a flush has nothing left to do.
type volumeDevice struct {
	e    *engine.Engine
	id   engine.ID
	size int64
}

func (d volumeDevice) Size() int64 { return d.size }

func (d volumeDevice) ReadAt(ctx context.Context, p []byte, off int64) error {
	return d.e.ReadAt(ctx, d.id, p, off)
}

func (d volumeDevice) WriteAt(ctx context.Context, p []byte, off int64) error {
	return d.e.WriteAt(ctx, d.id, p, off)
}

func (d volumeDevice) Zero(ctx context.Context, off, n int64) error {
	return d.e.Zero(ctx, d.id, off, n)
}
