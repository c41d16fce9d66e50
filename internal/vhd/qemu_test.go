package vhd_test

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/deltadisk/deltadisk/internal/tooltest"
	"github.com/deltadisk/deltadisk/internal/vhd"
)

// qemuImg returns the path of qemu-img (Debian package qemu-utils). Without
// it the test is skipped, unless DELTADISK_CI=1, where it fails.
func qemuImg(t *testing.T) string {
	t.Helper()
	return tooltest.Path(t, "qemu-img", "qemu-utils")
}

func runQemuImg(t *testing.T, qemu string, args ...string) []byte {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), qemu, args...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("qemu-img %s: %v\n%s%s", strings.Join(args, " "), err, out, ee.Stderr)
		}
		t.Fatalf("qemu-img %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// qemuVirtualSize returns the disk size qemu-img sees in a VHD file.
// "-f vpc" is needed: a fixed VHD has no header, so qemu would probe it as raw.
func qemuVirtualSize(t *testing.T, qemu, path string) int64 {
	t.Helper()
	out := runQemuImg(t, qemu, "info", "--output=json", "-f", "vpc", path)
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info output %q: %v", out, err)
	}
	return info.VirtualSize
}

// writeImages writes a raw image of size bytes, with random regions at both
// ends and in the middle and zeros between, and the same image followed by
// footer f as a VHD. It returns their paths.
func writeImages(t *testing.T, size int64, f vhd.Footer) (raw, vhdPath string) {
	t.Helper()
	img := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(size)})
	region := min(size/4, 256<<10)
	for _, off := range []int64{0, size / 2, size - region} {
		if _, err := io.ReadFull(rng, img[off:off+region]); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	raw = filepath.Join(dir, "disk.raw")
	vhdPath = filepath.Join(dir, "disk.vhd")
	if err := os.WriteFile(raw, img, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(vhdPath, append(img, marshal(t, f)...), 0o600); err != nil {
		t.Fatal(err)
	}
	return raw, vhdPath
}

// TestQemu checks our footers against qemu-img, an independent reader and
// writer of VHD files.
//
// qemu (7.2 here) sizes a VHD by its CHS geometry unless the creator
// application is one it knows to mean CurrentSize ("win ", "qem2", "d2v ",
// "CTXS", "tap\x00"), or the image has the maximum geometry, or the user
// passes force_size_calc=current_size. Geometry rounds down, so most sizes,
// 20 MiB included, are not CHS-exact: with a creator of our own ("dlta")
// qemu-img info reports 20959232 bytes for a 20 MiB disk and drops the
// tail. New therefore writes "win ", and these cases pin both behaviours.
func TestQemu(t *testing.T) {
	qemu := qemuImg(t)
	t.Run("reads our images", func(t *testing.T) {
		tests := []struct {
			name     string
			size     int64
			chsExact bool
		}{
			{"20MiB", 20 * mib, false},
			{"21MiB", 21 * mib, false},
			{"20MiB+512", 20*mib + 512, false},
			{"CHS-exact", 602 * 4 * 17 * 512, true},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				if exact := vhd.Geometry(tc.size).Sectors()*512 == tc.size; exact != tc.chsExact {
					t.Fatalf("Geometry(%d) CHS-exact = %v, want %v", tc.size, exact, tc.chsExact)
				}
				raw, path := writeImages(t, tc.size, newFooter(t, tc.size))
				if got := qemuVirtualSize(t, qemu, path); got != tc.size {
					t.Errorf("qemu-img info virtual-size = %d, want %d", got, tc.size)
				}
				// -s: strict, a size mismatch is a failure too.
				runQemuImg(t, qemu, "compare", "-s", "-f", "vpc", "-F", "raw", path, raw)
			})
		}
	})

	t.Run("sizes an unknown creator by CHS", func(t *testing.T) {
		const size = 20 * mib
		f := newFooter(t, size)
		f.CreatorApplication = [4]byte{'d', 'l', 't', 'a'}
		_, path := writeImages(t, size, f)
		if got, want := qemuVirtualSize(t, qemu, path), vhd.Geometry(size).Sectors()*512; got != want {
			t.Errorf("qemu-img info virtual-size with creator dlta = %d, want CHS size %d", got, want)
		}
	})

	t.Run("we read qemu's images", func(t *testing.T) {
		// Without force_size qemu rounds the size up to a CHS-exact one and
		// stores that geometry, so it checks Geometry; with force_size it
		// keeps the size, writes creator "qem2" and the maximum geometry.
		// The files are sparse.
		for _, size := range []string{"20M", "127M", "1G", "30G", "127G"} {
			for _, force := range []string{"off", "on"} {
				t.Run(size+"/force_size="+force, func(t *testing.T) {
					path := filepath.Join(t.TempDir(), "disk.vhd")
					runQemuImg(t, qemu, "create", "-q", "-f", "vpc", "-o", "subformat=fixed,force_size="+force, path, size)
					st, err := os.Stat(path)
					if err != nil {
						t.Fatal(err)
					}
					file, err := os.Open(path)
					if err != nil {
						t.Fatal(err)
					}
					defer file.Close()
					b := make([]byte, vhd.FooterSize)
					if _, err := file.ReadAt(b, st.Size()-vhd.FooterSize); err != nil {
						t.Fatal(err)
					}
					f, err := vhd.Parse(b)
					if err != nil {
						t.Fatalf("Parse(qemu footer %x) error = %v", b, err)
					}
					if f.CurrentSize != st.Size()-vhd.FooterSize {
						t.Errorf("Parse(qemu footer).CurrentSize = %d, want file size - 512 = %d", f.CurrentSize, st.Size()-vhd.FooterSize)
					}
					if force == "off" {
						if got := vhd.Geometry(f.CurrentSize); got != f.Geometry {
							t.Errorf("Geometry(%d) = %v, want qemu's %v", f.CurrentSize, got, f.Geometry)
						}
					}
				})
			}
		}
	})
}
