package wireguard_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-net/weft/encap/wireguard"
)

func TestGenerateKey(t *testing.T) {
	a, err := wireguard.GenerateKey()
	must(t, err)
	b, err := wireguard.GenerateKey()
	must(t, err)
	if a.IsZero() || a == b {
		t.Fatalf("GenerateKey gave a zero or repeated key")
	}
	if a[0]&7 != 0 || a[31]&0xc0 != 0x40 {
		t.Errorf("key not clamped: first byte %#x, last %#x", a[0], a[31])
	}
	if got, want := a.PublicKey(), wireguard.PublicKey(wgtypes.Key(a).PublicKey()); got != want {
		t.Errorf("PublicKey = %s, want %s", got, want)
	}
}

// TestPrivateKeyNeverShown prints and logs a private key every way a
// mistake would, and looks for it in every encoding.
func TestPrivateKeyNeverShown(t *testing.T) {
	k := key(7)
	secrets := []string{base64.StdEncoding.EncodeToString(k[:]), hex.EncodeToString(k[:]), fmt.Sprint([32]byte(k))}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", k, "want", wireguard.Device{PrivateKey: k})
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "key", k, "ptr", &k)
	_, merr := json.Marshal(struct{ K wireguard.PrivateKey }{k})
	outputs := map[string]string{
		"%v": fmt.Sprintf("%v", k), "%s": fmt.Sprintf("%s", k), "%+v": fmt.Sprintf("%+v", k),
		"%#v": fmt.Sprintf("%#v", k), "%x": fmt.Sprintf("%x", k), "%q": fmt.Sprintf("%q", k),
		"device %+v": fmt.Sprintf("%+v", wireguard.Device{PrivateKey: k}),
		"slog":       logged.String(),
	}
	for how, out := range outputs {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows the key: %s", how, out)
			}
		}
	}
	if merr == nil {
		t.Error("json.Marshal of a private key succeeded")
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	k, err := wireguard.LoadOrCreateKey(dir)
	must(t, err)
	path := filepath.Join(dir, wireguard.KeyFile)
	fi, err := os.Stat(path)
	must(t, err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	// The file is what `wg genkey` writes.
	b, err := os.ReadFile(path)
	must(t, err)
	if wk, err := wgtypes.ParseKey(strings.TrimSuffix(string(b), "\n")); err != nil || wk != wgtypes.Key(k) {
		t.Errorf("key file %q: not the key in base64 (%v)", b, err)
	}
	again, err := wireguard.LoadOrCreateKey(dir)
	must(t, err)
	if again != k {
		t.Error("second LoadOrCreateKey gave another key")
	}

	rotated, err := wireguard.Rotate(dir)
	must(t, err)
	if rotated == k || rotated.IsZero() {
		t.Error("Rotate gave the old or a zero key")
	}
	loaded, err := wireguard.LoadOrCreateKey(dir)
	must(t, err)
	if loaded != rotated {
		t.Error("LoadOrCreateKey after Rotate did not give the new key")
	}
	entries, err := os.ReadDir(dir)
	must(t, err)
	var files []string
	for _, e := range entries {
		files = append(files, e.Name())
	}
	if diff := cmp.Diff([]string{wireguard.KeyFile}, files); diff != "" {
		t.Errorf("state dir after Rotate (-want +got):\n%s", diff)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("rotated key file: %v, mode %v", err, fi.Mode())
	}
}

func TestLoadOrCreateKeyConcurrent(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	keys := make([]wireguard.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = wireguard.LoadOrCreateKey(dir) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || keys[i] != keys[0] {
			t.Errorf("caller %d: error %v, same key %v", i, errs[i], keys[i] == keys[0])
		}
	}
}

func TestLoadOrCreateKeyRefuses(t *testing.T) {
	valid := base64.StdEncoding.EncodeToString(make([]byte, 31)) // 31 bytes
	zero := base64.StdEncoding.EncodeToString(make([]byte, 32))
	secret := "c2VjcmV0LWJ1dC1ub3QtYS1rZXktc2VjcmV0LWJ1dA=="
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    string
	}{
		{"group readable", "", 0o640, "mode 0640: open to group or others, want 0600"},
		{"world readable", "", 0o604, "mode 0604"},
		{"not base64", "not a key!\n", 0o600, "not one base64 32-byte key"},
		{"short", valid + "\n", 0o600, "not one base64 32-byte key"},
		{"secret garbage is not quoted", secret + "\n", 0o600, "not one base64 32-byte key"},
		{"zero", zero + "\n", 0o600, "all zeros"},
		{"empty", "", 0o600, "read wireguard key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, wireguard.KeyFile)
			content := tt.content
			if content == "" && tt.name != "empty" {
				k := key(5)
				content = base64.StdEncoding.EncodeToString(k[:]) + "\n"
			}
			must(t, os.WriteFile(path, []byte(content), tt.mode))
			must(t, os.Chmod(path, tt.mode))
			_, err := wireguard.LoadOrCreateKey(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadOrCreateKey = %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), strings.TrimSpace(content)) && content != "" {
				t.Errorf("the error quotes the file: %v", err)
			}
			// The file is left as it was.
			b, err := os.ReadFile(path)
			must(t, err)
			if string(b) != content {
				t.Errorf("file changed to %q", b)
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Mkdir(filepath.Join(dir, wireguard.KeyFile), 0o700))
		if _, err := wireguard.LoadOrCreateKey(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("LoadOrCreateKey on a directory = %v", err)
		}
	})
}

func TestParsePublicKey(t *testing.T) {
	good := key(2).PublicKey()
	s := good.String()
	// Flip the lowest of the last character's bits, which the 32 bytes
	// do not use: non-canonical base64 of the same bytes.
	noncanonical := s[:42] + string(rune(s[42]+1)) + "="
	tests := []struct {
		in   string
		want string // error text; "" for success
	}{
		{s, ""},
		{"", "0 bytes, want 32"},
		{s[:43], "illegal base64"},
		{base64.StdEncoding.EncodeToString(make([]byte, 31)), "31 bytes, want 32"},
		{base64.StdEncoding.EncodeToString(make([]byte, 32)), "all zeros"},
		{noncanonical, "illegal base64"},
		{"!" + s[1:], "illegal base64"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			k, err := wireguard.ParsePublicKey(tt.in)
			switch {
			case tt.want == "" && (err != nil || k != good):
				t.Errorf("ParsePublicKey = %s, %v; want %s", k, err, good)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("ParsePublicKey = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// Text round trip, as in a JSON record.
	b, err := json.Marshal(struct{ K wireguard.PublicKey }{good})
	must(t, err)
	var back struct{ K wireguard.PublicKey }
	must(t, json.Unmarshal(b, &back))
	if back.K != good {
		t.Errorf("JSON round trip %s gave %s", b, back.K)
	}
	if err := json.Unmarshal([]byte(`{"K":"bad"}`), &back); err == nil || back.K != good {
		t.Errorf("Unmarshal of a bad key = %v, key now %s", err, back.K)
	}
}

func FuzzParsePublicKey(f *testing.F) {
	f.Add(key(2).PublicKey().String())
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := wireguard.ParsePublicKey(s)
		if err != nil {
			return
		}
		if k.IsZero() || k.String() != s {
			t.Errorf("ParsePublicKey(%q) = %s: zero, or not canonical", s, k)
		}
	})
}
