package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is the bar of a transfer: bytes done of a total, with the rate
// and the time left. It is drawn on stderr only when stderr is a terminal
// and --only-show-errors is not given, so that scripts, pipes and logs
// see nothing of it. A nil *progress draws nothing; its methods are safe
// for concurrent use.
type progress struct {
	bar *progressbar.ProgressBar
	w   io.Writer
}

// newProgress starts the bar of a transfer of total bytes (what is left
// of it, when it resumes: the rate and the time left are this run's), or
// returns nil when no bar is drawn.
func (g *globals) newProgress(desc string, total int64) *progress {
	if total <= 0 || g.client.onlyShowErrors || !isTerminal(g.stderr) {
		return nil
	}
	return newProgressBar(g.stderr, desc, total)
}

// newProgressBar draws a bar on w, terminal or not.
func newProgressBar(w io.Writer, desc string, total int64) *progress {
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionShowCount(),
		progressbar.OptionShowTotalBytes(true),
		progressbar.OptionUseIECUnits(true),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetRenderBlankState(true),
		progressbar.OptionSetTheme(progressbar.Theme{Saucer: "=", SaucerHead: ">", SaucerPadding: " ", BarStart: "[", BarEnd: "]"}),
	)
	return &progress{bar: bar, w: w}
}

// add counts n more bytes done.
func (p *progress) add(n int64) {
	if p != nil && n > 0 {
		_ = p.bar.Add64(n)
	}
}

// finish draws the full bar and ends its line.
func (p *progress) finish() {
	if p == nil {
		return
	}
	_ = p.bar.Finish()
	fmt.Fprintln(p.w)
}

// abort ends the bar's line where it stands, so that an error message
// that follows starts on a line of its own.
func (p *progress) abort() {
	if p == nil {
		return
	}
	_ = p.bar.Exit()
	fmt.Fprintln(p.w)
}
