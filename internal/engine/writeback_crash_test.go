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
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/deltadisk/deltadisk/internal/engine"
)

// The write-back crash test runs a child (this test binary again) that
// writes a volume through a WriteBack from one goroutine, in pieces of 512
// bytes to 192 KiB at random places, with a small buffer (so that it
// commits when full, between flushes) and a Flush now and then. It logs
// each write before it starts ("W seq off n") and each flush once it
// returned ("F"). The parent SIGKILLs it at a random moment and checks what
// write-back promises: the volume holds exactly the first k writes of the
// round for some k, so each write is wholly there or not and none is there
// without those before it, and k covers every write before the last
// acknowledged flush. The engine journals the child's flushes, so the kills land in journal
// syncs, folds and replays alike. DELTADISK_CRASH_ROUNDS scales it like
// TestCrash.

const (
	wbCrashChildEnv = "DELTADISK_WB_CRASH_CHILD"
	wbCrashVolSize  = 4 << 20
)

type wbWrite struct {
	seq    int
	off, n int64
}

// wbData is the content of write seq: bytes that differ from write to write.
func wbData(seq int, n int64) []byte {
	p := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seq), byte(seq >> 8), byte(seq >> 16), 'w'}).Read(p)
	return p
}

func TestWriteBackCrash(t *testing.T) {
	if dir := os.Getenv(wbCrashChildEnv); dir != "" {
		wbCrashChild(dir)
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
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	dir := t.TempDir()
	e, closeAll, err := openCrashStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.CreateVolume(t.Context(), wbCrashVolSize); err != nil {
		t.Fatal(err)
	}
	closeAll()
	state := make([]byte, wbCrashVolSize) // what the volume holds
	var writes, flushedRounds int
	for round := range rounds {
		logPath := filepath.Join(dir, fmt.Sprintf("round-%d.log", round))
		cmd := exec.Command(os.Args[0], "-test.run=^TestWriteBackCrash$")
		cmd.Env = append(os.Environ(), wbCrashChildEnv+"="+dir, "DELTADISK_WB_CRASH_LOG="+logPath)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// The kill comes at a random moment after the child has opened
		// the store: under the race detector, start-up alone can outlast
		// the sleep.
		waitReady(t, logPath, cmd)
		time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("round %d: child ended on its own (%v): %s", round, err, stderr.String())
		}
		ws, flushed := readWBLog(t, logPath)
		writes += len(ws)
		if flushed > 0 {
			flushedRounds++
		}

		e, closeAll, err := openCrashStore(dir)
		if err != nil {
			t.Fatalf("round %d: reopening after the crash: %v", round, err)
		}
		vols, err := e.List(t.Context())
		if err != nil || len(vols) != 1 {
			t.Fatalf("round %d: images %v, %v; want the one volume", round, vols, err)
		}
		got := read(t, e, vols[0].ID, wbCrashVolSize)
		checkClean(t, e, true)
		closeAll()
		// Find k: the state after the first k writes, k at least the
		// flushed ones.
		k := -1
		for i := 0; i <= len(ws); i++ {
			if i > 0 {
				w := ws[i-1]
				copy(state[w.off:], wbData(w.seq, w.n))
			}
			if i >= flushed && bytes.Equal(got, state) {
				k = i
				break
			}
		}
		if k < 0 {
			t.Fatalf("round %d: after the kill the volume holds no prefix of the %d writes that covers the %d flushed", round, len(ws), flushed)
		}
		copy(state, got)
	}
	t.Logf("%d kills, %d writes logged, %d rounds with a flush acknowledged", rounds, writes, flushedRounds)
	if flushedRounds == 0 {
		t.Fatal("no child acknowledged a flush: the test checked nothing durable")
	}
}

// waitReady waits until the child's log exists and is not empty: the child
// creates it once its WriteBack is open.
func waitReady(t *testing.T, logPath string, cmd *exec.Cmd) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if fi, err := os.Stat(logPath); err == nil && fi.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the child did not open the store within a minute")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// readWBLog returns the writes a child logged and how many of them the last
// acknowledged flush covers. A line torn by the kill is dropped.
func readWBLog(t *testing.T, path string) ([]wbWrite, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ws []wbWrite
	flushed := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var w wbWrite
		switch {
		case line == "F":
			flushed = len(ws)
		case len(line) > 0 && line[0] == 'W':
			if n, _ := fmt.Sscanf(line, "W %d %d %d .", &w.seq, &w.off, &w.n); n == 3 {
				ws = append(ws, w)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ws, flushed
}

func wbCrashChild(dir string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "write-back crash child:", err)
		os.Exit(3)
	}
	ctx := context.Background()
	e, _, err := openCrashStore(dir)
	if err != nil {
		fail(err)
	}
	vols, err := e.List(ctx)
	if err != nil || len(vols) != 1 {
		fail(fmt.Errorf("images %v, %v", vols, err))
	}
	wb, err := e.OpenWriteBack(ctx, vols[0].ID, 8*engine.BlockSize)
	if err != nil {
		fail(err)
	}
	logf, err := os.Create(os.Getenv("DELTADISK_WB_CRASH_LOG"))
	if err != nil {
		fail(err)
	}
	if _, err := fmt.Fprintln(logf, "R"); err != nil {
		fail(err)
	}
	rng := rand.New(rand.NewPCG(uint64(os.Getpid()), uint64(time.Now().UnixNano())))
	// Sequence numbers differ from round to round, so that a write of an
	// earlier round never passes for one of this round.
	seq := int(rng.Uint32())
	for {
		seq++
		n := int64(1+rng.IntN(384)) * 512
		off := rng.Int64N((wbCrashVolSize-n)/512+1) * 512
		// Logged before it starts: a write the kill interrupts may be
		// committed by a flush already under way.
		if _, err := fmt.Fprintf(logf, "W %d %d %d .\n", seq, off, n); err != nil {
			fail(err)
		}
		if err := wb.WriteAt(ctx, wbData(seq, n), off); err != nil {
			fail(err)
		}
		if rng.IntN(10) == 0 {
			if err := wb.Flush(ctx); err != nil {
				fail(err)
			}
			if _, err := fmt.Fprintln(logf, "F"); err != nil {
				fail(err)
			}
		}
	}
}
