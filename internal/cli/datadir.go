package cli

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/uuid"
)

// The data dir's layout. Changing what these hold, or how, needs a new
// dataDirFormat.
const (
	formatFileName      = "deltadisk.json"   // {"format": 1}, written first
	metaFileName        = "meta.db"          // bbolt
	zonesDirName        = "zones"            // a directory of pack files per zone, named as the zone
	nbdSocketName       = "nbd.sock"         // NBD exports of attached disks
	stateFileName       = "identity.json"    // tenant, subscription, principal, signing key (0600)
	credentialsFileName = "credentials.json" // for clients, rewritten at start when it changed (0600)
	tlsDirName          = "tls"              // CA and server certificate (keys 0600)
	journalDirName      = "journal"          // write-ahead journals of attached disks

	// dataDirFormat is the data dir layout this binary reads and writes.
	// Format 1 kept all packs in one "chunks" directory, before zones.
	dataDirFormat = 2
)

// resolveDataDir picks the data dir: the flag, else $DELTADISK_DATA_DIR,
// else $XDG_DATA_HOME/deltadisk (when absolute, as the XDG spec requires),
// else ~/.local/share/deltadisk. The result is absolute, since
// credentials.json hands out paths inside it.
func resolveDataDir(flag string, getenv func(string) string, homeDir func() (string, error)) (string, error) {
	dir := flag
	if dir == "" {
		dir = getenv("DELTADISK_DATA_DIR")
	}
	if dir == "" {
		if x := getenv("XDG_DATA_HOME"); filepath.IsAbs(x) {
			dir = filepath.Join(x, "deltadisk")
		} else {
			home, err := homeDir()
			if err != nil || home == "" {
				return "", fmt.Errorf("no --data-dir, no $DELTADISK_DATA_DIR and no home directory to default to (%v)", err)
			}
			dir = filepath.Join(home, ".local", "share", "deltadisk")
		}
	}
	return filepath.Abs(dir)
}

type formatFile struct {
	Format int `json:"format"`
}

// prepareDataDir creates dir (0700) and its format file, or checks the
// format file of an existing one. A dir holding deltadisk's files but no
// format file is refused rather than adopted.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, formatFileName)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		for _, name := range []string{metaFileName, stateFileName, zonesDirName, "chunks"} {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return fmt.Errorf("data dir %s holds %s but no %s: it is damaged, or not a deltadisk data dir; refusing to use it",
					dir, name, formatFileName)
			}
		}
		b, _ := json.Marshal(formatFile{Format: dataDirFormat})
		return writeFileAtomic(path, append(b, '\n'), 0o600)
	case err != nil:
		return fmt.Errorf("data dir: %w", err)
	}
	var f formatFile
	if err := json.Unmarshal(b, &f); err != nil || f.Format == 0 {
		return fmt.Errorf("data dir %s: %s is not a deltadisk format file (%s); refusing to use the data dir",
			dir, path, bytes.TrimSpace(b))
	}
	if f.Format == 1 {
		return fmt.Errorf("data dir %s has format 1, written before zones: it keeps every region's packs in one store, "+
			"which this deltadisk (format %d, a store per zone) cannot adopt; start with a new data dir and copy disks over "+
			"(deltadisk disk download, then disk upload)", dir, dataDirFormat)
	}
	if f.Format != dataDirFormat {
		return fmt.Errorf("data dir %s has format %d, and this deltadisk reads only format %d; run a deltadisk release that knows format %d",
			dir, f.Format, dataDirFormat, f.Format)
	}
	return nil
}

// state is what the first start creates and every later start reuses:
// the default tenant, subscription and service principal, and the key
// that signs tokens and SAS. It lives in identity.json, mode 0600.
type state struct {
	TenantID       string `json:"tenantId"`
	SubscriptionID string `json:"subscriptionId"`
	ClientID       string `json:"clientId"`
	ClientSecret   string `json:"clientSecret"`
	SigningKey     []byte `json:"signingKey"` // base64 in JSON
}

const signingKeySize = 32

// loadOrCreateState reads the data dir's state, creating it on first use.
func loadOrCreateState(dir string) (state, error) {
	path := filepath.Join(dir, stateFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		st, err := newState()
		if err != nil {
			return state{}, err
		}
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := writeFileAtomic(path, append(b, '\n'), 0o600); err != nil {
			return state{}, err
		}
		return st, nil
	}
	if err != nil {
		return state{}, err
	}
	var st state
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&st); err != nil {
		return state{}, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case uuid.Validate(st.TenantID) != nil, uuid.Validate(st.SubscriptionID) != nil, uuid.Validate(st.ClientID) != nil:
		return state{}, fmt.Errorf("%s: tenantId, subscriptionId and clientId must be GUIDs", path)
	case st.ClientSecret == "":
		return state{}, fmt.Errorf("%s: clientSecret is empty", path)
	case len(st.SigningKey) < signingKeySize:
		return state{}, fmt.Errorf("%s: signingKey has %d bytes, want at least %d", path, len(st.SigningKey), signingKeySize)
	}
	if err := restrictMode(path); err != nil {
		return state{}, err
	}
	return st, nil
}

func newState() (state, error) {
	secret := make([]byte, 32)
	key := make([]byte, signingKeySize)
	if _, err := rand.Read(secret); err != nil {
		return state{}, err
	}
	if _, err := rand.Read(key); err != nil {
		return state{}, err
	}
	return state{
		TenantID:       uuid.NewString(),
		SubscriptionID: uuid.NewString(),
		ClientID:       uuid.NewString(),
		// Hex: safe on any command line (a leading '-' would read as an
		// option to az) and in form encoding.
		ClientSecret: hex.EncodeToString(secret),
		SigningKey:   key,
	}, nil
}

// credentials is credentials.json: what a client needs to log in and
// trust the server.
type credentials struct {
	TenantID           string `json:"tenantId"`
	SubscriptionID     string `json:"subscriptionId"`
	ClientID           string `json:"clientId"`
	ClientSecret       string `json:"clientSecret"`
	ResourceManagerURL string `json:"resourceManagerUrl"`
	Authority          string `json:"authority"`
	Audience           string `json:"audience"`
	CACertFile         string `json:"caCertFile"`
	Location           string `json:"location"`
}

// writeCredentials makes path hold c. A file that already holds it is left
// alone (its mode made 0600 again, which takes no space): rewriting it at
// every start would keep a server on a full filesystem from starting at all.
func writeCredentials(path string, c credentials) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, b) {
		return restrictMode(path)
	}
	return writeFileAtomic(path, b, 0o600)
}

// restrictMode makes a secret file 0600 again if someone loosened it.
func restrictMode(path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if info.Mode().Perm()&0o077 != 0 {
		return os.Chmod(path, 0o600)
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file beside it is
// written with mode perm, synced and renamed over it, and the directory
// synced, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(path)+"-")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
