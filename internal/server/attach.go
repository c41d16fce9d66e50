package server

import (
	"context"
	"crypto/rand"
	"errors"
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
	// exports holds each attached disk's export, by disk id.
	exports map[string]attached
}

// attached is one attached disk's export and the write-back buffer behind it.
type attached struct {
	remove func()
	wb     *engine.WriteBack
}

var _ arm.Attacher = (*Attachments)(nil)

// NewAttachments exports through srv, which the caller serves on tcpAddr
// and (if not empty) the unix socket.
func NewAttachments(srv *nbd.Server, e *engine.Engine, tcpAddr, socket string) *Attachments {
	return &Attachments{nbd: srv, engine: e, tcpAddr: tcpAddr, socket: socket, exports: make(map[string]attached)}
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
// answer carries. Writes to the export are buffered (an engine WriteBack)
// and durable once a following flush is answered, as on a disk with a
// write-back cache.
func (a *Attachments) Attach(ctx context.Context, disk string, volume engine.ID) (arm.Export, error) {
	name := newExportName()
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.exports[disk]; ok {
		return arm.Export{}, fmt.Errorf("disk %s is already exported", disk)
	}
	wb, err := a.engine.OpenWriteBack(ctx, volume, 0)
	if err != nil {
		return arm.Export{}, err
	}
	remove, err := a.nbd.Export(name, wb, false)
	if err != nil {
		return arm.Export{}, errors.Join(err, wb.Close(ctx))
	}
	a.exports[disk] = attached{remove: remove, wb: wb}
	exp := arm.Export{NBDURI: "nbd://" + a.tcpAddr + "/" + name}
	if a.socket != "" {
		exp.UnixSocket = a.socket
		exp.UnixURI = "nbd+unix:///" + name + "?socket=" + url.QueryEscape(a.socket)
	}
	return exp, nil
}

// Detach ends the export and its connections, then commits what its
// buffer holds; an unknown disk is not an error (the export ended with a
// restart). If the commit fails, the disk stays exported in name only: no
// client can reach it, its writes stay buffered, and a later Detach tries
// again.
func (a *Attachments) Detach(ctx context.Context, disk string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.detachLocked(ctx, disk)
}

func (a *Attachments) detachLocked(ctx context.Context, disk string) error {
	at, ok := a.exports[disk]
	if !ok {
		return nil
	}
	at.remove()
	if err := at.wb.Close(ctx); err != nil {
		return fmt.Errorf("detach %s: committing its buffered writes: %w", disk, err)
	}
	delete(a.exports, disk)
	return nil
}

// Close ends every export and commits every buffer, for a server that
// stops; what it cannot commit is lost as in a crash, and reported.
func (a *Attachments) Close(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for disk := range a.exports {
		errs = append(errs, a.detachLocked(ctx, disk))
	}
	return errors.Join(errs...)
}
