package engine_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/chunks"
	"github.com/deltadisk/deltadisk/internal/chunks/local"
	"github.com/deltadisk/deltadisk/internal/engine"
	"github.com/deltadisk/deltadisk/internal/meta/bolt"
)

// The crash test runs a child process (this test binary again) that writes,
// zeroes, snapshots, deletes snapshots and collects garbage on a real store
// (bolt file and local packs) and logs each operation before it starts
// ("I") and once it is acknowledged ("A"). The parent SIGKILLs it at a
// random moment, reopens the store, and checks that every acknowledged
// operation is there, that the one in flight either happened whole or not
// at all, that every snapshot reads byte-identical to the model, and that
// the consistency check passes. Then the next child goes on from there.
//
// DELTADISK_CRASH_ROUNDS sets the number of kills (default 50; the long
// mode runs 1000 or more).

const (
	crashChildEnv = "DELTADISK_CRASH_CHILD"
	crashVolSize  = 32 << 20
)

func TestCrash(t *testing.T) {
	if dir := os.Getenv(crashChildEnv); dir != "" {
		crashChild(dir)
		return
	}
	rounds := 50
	if s := os.Getenv("DELTADISK_CRASH_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("DELTADISK_CRASH_ROUNDS=%q: want a positive count", s)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d (set DELTADISK_CRASH_SEED to replay the kill times)", seed)
	if s := os.Getenv("DELTADISK_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	dir := t.TempDir()
	m := &crashModel{snaps: make(map[engine.ID][]byte)}
	var logPos int64
	uncertainRounds := 0
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+rng.IntN(250)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended on its own (%v): %s", round, err, stderr.String())
		}
		var inFlight *crashOp
		logPos, inFlight = m.replay(t, filepath.Join(dir, "ops.log"), logPos)
		if inFlight != nil {
			uncertainRounds++
		}
		m.verify(t, dir, round, inFlight)
	}
	t.Logf("%d kills, %d ops acknowledged, %d kills with an operation in flight, %d snapshots live",
		rounds, m.acked, uncertainRounds, len(m.snaps))
	if m.acked == 0 {
		t.Fatalf("no operation was acknowledged in %d rounds: the child does no work", rounds)
	}
}

type crashOp struct {
	seq     int
	kind    string // create, write, zero, snapshot, delete, gc
	off, n  int64
	id      engine.ID
	ackedID engine.ID
}

// crashData is the deterministic content of write seq: random bytes with
// whole zero blocks mixed in, and repeats so that dedupe happens.
func crashData(seq int, n int64) []byte {
	p := make([]byte, n)
	var seed [32]byte
	seed[0] = byte(seq % 97) // content repeats every 97 writes
	_, _ = rand.NewChaCha8(seed).Read(p)
	for off := int64(0); off+engine.BlockSize <= n; off += 3 * engine.BlockSize {
		clear(p[off : off+engine.BlockSize])
	}
	return p
}

type crashModel struct {
	vol   engine.ID
	data  []byte
	snaps map[engine.ID][]byte
	acked int
}

func (m *crashModel) apply(op *crashOp) {
	switch op.kind {
	case "create":
		m.vol, m.data = op.ackedID, make([]byte, crashVolSize)
	case "write":
		copy(m.data[op.off:], crashData(op.seq, op.n))
	case "zero":
		clear(m.data[op.off : op.off+op.n])
	case "snapshot":
		m.snaps[op.ackedID] = bytes.Clone(m.data)
	case "delete":
		delete(m.snaps, op.id)
	}
}

// replay applies the acknowledged operations logged since pos and returns
// the operation in flight at the kill, if any.
func (m *crashModel) replay(t *testing.T, path string, pos int64) (int64, *crashOp) {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return pos, nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Seek(pos, 0); err != nil {
		t.Fatal(err)
	}
	var pending *crashOp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if !strings.HasSuffix(line, ";") || len(fields) < 3 {
			break // a torn last line: the kill hit the log write itself
		}
		pos += int64(len(line)) + 1
		seq, _ := strconv.Atoi(fields[1])
		switch fields[0] {
		case "I":
			if pending != nil {
				t.Fatalf("log: intent %d while %d is unacknowledged", seq, pending.seq)
			}
			op := &crashOp{seq: seq, kind: fields[2]}
			if len(fields) >= 6 {
				op.off, _ = strconv.ParseInt(fields[3], 10, 64)
				op.n, _ = strconv.ParseInt(fields[4], 10, 64)
				id, _ := strconv.ParseUint(fields[5], 10, 64)
				op.id = engine.ID(id)
			}
			pending = op
		case "A":
			if pending == nil || pending.seq != seq {
				t.Fatalf("log: ack %d without its intent", seq)
			}
			id, _ := strconv.ParseUint(fields[2], 10, 64)
			pending.ackedID = engine.ID(id)
			m.apply(pending)
			m.acked++
			pending = nil
		}
	}
	return pos, pending
}

var crashZones = []string{"z1", "z2"}

// openCrashStore opens the engine on dir's bolt file and local packs.
func openCrashStore(dir string) (*engine.Engine, func(), error) {
	ctx := context.Background()
	cfg := bolt.DefaultConfig()
	cfg.Path = filepath.Join(dir, "meta.db")
	cfg.Timeout = 10 * time.Second
	ms, err := bolt.Open(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	// Two zones, and the volume in both: a write lands in two stores before
	// its commit, so a kill can fall between them.
	var backends []*local.Backend
	closeAll := func() {
		for _, be := range backends {
			be.Close()
		}
		ms.Close()
	}
	ecfg := engine.DefaultConfig()
	ecfg.Meta = ms
	// The write-back crash test journals its flushes; TestCrash writes
	// directly and leaves the directory empty.
	ecfg.JournalDir = filepath.Join(dir, "journal")
	for _, zone := range crashZones {
		be, err := local.Open(ctx, local.Config{Dir: filepath.Join(dir, zone)})
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		backends = append(backends, be)
		ccfg := chunks.DefaultConfig()
		ccfg.Backend, ccfg.Compress = be, true
		cs, err := chunks.New(ccfg)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		ecfg.Zones = append(ecfg.Zones, engine.Zone{Name: zone, Store: cs})
	}
	e, err := engine.Open(ctx, ecfg)
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return e, closeAll, nil
}

func (m *crashModel) verify(t *testing.T, dir string, round int, inFlight *crashOp) {
	t.Helper()
	ctx := context.Background()
	e, closeAll, err := openCrashStore(dir)
	if err != nil {
		t.Fatalf("round %d: reopening after the crash: %v", round, err)
	}
	defer closeAll()
	rep, err := e.Check(ctx, engine.CheckOptions{ReadData: round%10 == 0})
	if err != nil || rep.Err() != nil {
		t.Fatalf("round %d: check after the crash: %v %v", round, err, rep.Err())
	}
	images, err := e.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if inFlight != nil {
		switch inFlight.kind {
		case "create":
			if len(images) == 1 { // created but not acknowledged
				inFlight.ackedID = images[0].ID
				m.apply(inFlight)
			}
		case "write", "zero":
			got := read(t, e, m.vol, crashVolSize)
			if !bytes.Equal(got, m.data) {
				m.apply(inFlight)
				if !bytes.Equal(got, m.data) {
					t.Fatalf("round %d: the volume matches neither the state before nor after the %s in flight (seq %d)", round, inFlight.kind, inFlight.seq)
				}
			}
		case "snapshot":
			for _, info := range images {
				if _, known := m.snaps[info.ID]; info.Kind == engine.KindSnapshot && !known {
					inFlight.ackedID = info.ID
					m.apply(inFlight)
				}
			}
		case "delete":
			if _, err := e.Stat(ctx, inFlight.id); err != nil {
				m.apply(inFlight)
			}
		}
	}
	var live []engine.ID
	for _, info := range images {
		live = append(live, info.ID)
	}
	want := []engine.ID{}
	if m.vol != 0 {
		want = append(want, m.vol)
	}
	for id := range m.snaps {
		want = append(want, id)
	}
	slices.Sort(want)
	if fmt.Sprint(live) != fmt.Sprint(want) && !(len(live) == 0 && len(want) == 0) {
		t.Fatalf("round %d: images %v, want %v", round, live, want)
	}
	if m.vol == 0 {
		return
	}
	if got := read(t, e, m.vol, crashVolSize); !bytes.Equal(got, m.data) {
		t.Fatalf("round %d: volume differs from the model at %d", round, firstDiff(got, m.data))
	}
	for id, data := range m.snaps {
		if got := read(t, e, id, crashVolSize); !bytes.Equal(got, data) {
			t.Fatalf("round %d: snapshot %d differs from the model at %d", round, id, firstDiff(got, data))
		}
	}
}

// crashChild works on the store until it is killed.
func crashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	logf, err := os.OpenFile(filepath.Join(dir, "ops.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fail(err)
	}
	// Drop a line torn by the last kill, and continue the numbering.
	seq := 0
	if b, err := os.ReadFile(filepath.Join(dir, "ops.log")); err == nil {
		whole := bytes.LastIndexByte(b, '\n') + 1
		if err := os.Truncate(filepath.Join(dir, "ops.log"), int64(whole)); err != nil {
			fail(err)
		}
		seq = bytes.Count(b, []byte("\n")) + 1
	}
	e, _, err := openCrashStore(dir)
	if err != nil {
		fail(err)
	}
	logLine := func(format string, args ...any) {
		if _, err := fmt.Fprintf(logf, format+" ;\n", args...); err != nil {
			fail(err)
		}
	}
	images, err := e.List(ctx)
	if err != nil {
		fail(err)
	}
	var vol engine.ID
	var snaps []engine.ID
	for _, info := range images {
		if info.Kind == engine.KindVolume {
			vol = info.ID
		} else {
			snaps = append(snaps, info.ID)
		}
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	if vol == 0 {
		seq++
		logLine("I %d create", seq)
		if vol, err = e.CreateVolume(ctx, crashVolSize, crashZones...); err != nil {
			fail(err)
		}
		logLine("A %d %d", seq, vol)
	}
	for {
		seq++
		switch x := rng.IntN(100); {
		case x < 55 || x < 65:
			kind := "write"
			if x >= 55 {
				kind = "zero"
			}
			var off, n int64
			if rng.IntN(2) == 0 {
				off = rng.Int64N(crashVolSize/engine.BlockSize) * engine.BlockSize
				n = (1 + rng.Int64N(16)) * engine.BlockSize
			} else {
				off = rng.Int64N(crashVolSize/512) * 512
				n = (1 + rng.Int64N(2048)) * 512
			}
			n = min(n, crashVolSize-off)
			logLine("I %d %s %d %d 0", seq, kind, off, n)
			if kind == "write" {
				err = e.WriteAt(ctx, vol, crashData(seq, n), off)
			} else {
				err = e.Zero(ctx, vol, off, n)
			}
			if err != nil {
				fail(err)
			}
			logLine("A %d 0", seq)
		case x < 80 && len(snaps) < 6:
			logLine("I %d snapshot", seq)
			id, err := e.Snapshot(ctx, vol)
			if err != nil {
				fail(err)
			}
			snaps = append(snaps, id)
			logLine("A %d %d", seq, id)
		case x < 95 && len(snaps) > 0:
			i := rng.IntN(len(snaps))
			logLine("I %d delete 0 0 %d", seq, snaps[i])
			if err := e.Delete(ctx, snaps[i]); err != nil {
				fail(err)
			}
			logLine("A %d 0", seq)
			snaps = slices.Delete(snaps, i, i+1)
		default:
			logLine("I %d gc", seq)
			if _, err := e.GC(ctx, engine.GCOptions{CompactBelow: 0.5}); err != nil {
				fail(err)
			}
			logLine("A %d 0", seq)
		}
	}
}
