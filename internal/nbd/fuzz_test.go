package nbd

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// fuzzPrefix is what a well-behaved client sends to get into transmission on
// export "disk" with NBD_OPT_GO.
func fuzzPrefix() []byte {
	b := be.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	return append(b, encodeOption(optGo, encodeInfoRequest("disk", infoBlockSize))...)
}

// FuzzConn feeds arbitrary bytes to a connection as a client would, while
// draining whatever the server answers. The server must not panic, must only
// make aligned in-range Device calls (memDevice checks), and must end the
// connection once the input is exhausted.
func FuzzConn(f *testing.F) {
	hello := be.AppendUint32(nil, clientFixedNewstyle|clientNoZeroes)
	seeds := [][]byte{
		{},
		hello,
		append(hello, encodeOption(optList, nil)...),
		append(hello, encodeOption(optInfo, encodeInfoRequest("disk", infoName, infoBlockSize))...),
		append(hello, encodeOption(optInfo, []byte{0, 0, 0, 9, 'x'})...),
		append(hello, encodeOption(optAbort, nil)...),
		append(hello, encodeOption(optStructuredReply, nil)...),
		append(hello, encodeOption(optExportName, []byte("disk"))...),
		append(hello, encodeOption(optExportName, []byte("nope"))...),
		append(append(hello, encodeOption(9999, []byte("junk"))...), encodeOption(optGo, encodeInfoRequest("disk"))...),
	}
	tx := [][]byte{
		append(encodeRequest(cmdWrite, 0, 1, 1000, 5), "hello"...),
		encodeRequest(cmdRead, 0, 2, 999, 7),
		encodeRequest(cmdWriteZeroes, cmdFlagNoHole, 3, 100, 2000),
		encodeRequest(cmdTrim, 0, 4, 1, 5000),
		encodeRequest(cmdFlush, 0, 5, 0, 0),
		encodeRequest(cmdRead, 0, 6, 1<<20, 1<<30),
		append(encodeRequest(cmdWrite, 0, 7, 1<<64-1, 3), "abc"...),
		encodeRequest(cmdWrite, 0, 8, 0, 1<<31), // payload never comes
		encodeRequest(cmdBlockStatus, 0, 9, 0, 512),
		encodeRequest(cmdDisc, 0, 10, 0, 0),
	}
	all := fuzzPrefix()
	for _, r := range tx {
		seeds = append(seeds, append(fuzzPrefix(), r...))
		all = append(all, r...)
	}
	seeds = append(seeds, all)
	for _, s := range seeds {
		f.Add(s)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		s := NewServer(Config{MaxRequest: 64 << 10, HandshakeTimeout: 10 * time.Second})
		d := newMemDevice(t, 64<<10)
		remove, err := s.Export("disk", d, false)
		if err != nil {
			t.Fatal(err)
		}
		defer remove()

		srv, cli := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.serveConn(context.Background(), srv)
		}()
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			io.Copy(io.Discard, cli)
		}()
		cli.Write(data) // fails early if the server hangs up first: fine
		// End of input. net.Pipe has no half-close: replies still being
		// written fail, which the server must also handle.
		cli.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("server did not end the connection after the input ended")
		}
		<-drained
	})
}
