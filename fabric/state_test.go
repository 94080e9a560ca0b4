package fabric

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeState(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    State
		wantErr string
		// prefixOnly compares only the start of the error: the rest is
		// encoding/json's own text.
		prefixOnly bool
	}{
		{
			name: "full",
			data: `{"subnet": "10.244.3.0/24", "claimedAt": 1700000000000, "static": true}`,
			want: State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: 1700000000000, Static: true},
		},
		{
			name: "only the subnet",
			data: `{"subnet": "10.244.3.0/24"}`,
			want: State{Subnet: subnetPrefix("10.244.3.0/24")},
		},
		{
			name: "unknown fields are ignored",
			data: `{"subnet": "10.244.3.0/24", "claimedAt": 5, "future": {"x": [1, 2]}}`,
			want: State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: 5},
		},
		{
			name: "ipv6",
			data: `{"subnet": "fd00:10:0:3::/64", "claimedAt": 5, "static": false}`,
			want: State{Subnet: subnetPrefix("fd00:10:0:3::/64"), ClaimedAt: 5},
		},
		{name: "empty", data: ``, wantErr: "decode subnet state: ", prefixOnly: true},
		{name: "not json", data: `subnet=10.244.3.0/24`, wantErr: "decode subnet state: ", prefixOnly: true},
		{name: "trailing data", data: `{"subnet": "10.244.3.0/24"} {}`, wantErr: "decode subnet state: ", prefixOnly: true},
		{name: "array", data: `["10.244.3.0/24"]`, wantErr: "decode subnet state: ", prefixOnly: true},
		{name: "null", data: `null`, wantErr: "decode subnet state: not a JSON object"},
		{name: "no subnet", data: `{"claimedAt": 5}`, wantErr: "decode subnet state: subnet: missing"},
		{name: "subnet null", data: `{"subnet": null}`, wantErr: `decode subnet state: subnet "": netip.ParsePrefix(""): no '/'`},
		{name: "subnet not a string", data: `{"subnet": 10}`, wantErr: `decode subnet state: subnet "10": not a string`},
		{name: "subnet not a prefix", data: `{"subnet": "10.244.3.0"}`, wantErr: `decode subnet state: subnet "10.244.3.0": netip.ParsePrefix("10.244.3.0"): no '/'`},
		{name: "subnet with host bits", data: `{"subnet": "10.244.3.1/24"}`, wantErr: "decode subnet state: subnet 10.244.3.1/24: host bits set, want 10.244.3.0/24"},
		{name: "claimedAt a string", data: `{"subnet": "10.244.3.0/24", "claimedAt": "5"}`, wantErr: `decode subnet state: claimedAt "\"5\"": not an integer of milliseconds`},
		{name: "claimedAt a fraction", data: `{"subnet": "10.244.3.0/24", "claimedAt": 5.5}`, wantErr: `decode subnet state: claimedAt "5.5": not an integer of milliseconds`},
		{name: "claimedAt too large", data: `{"subnet": "10.244.3.0/24", "claimedAt": 99999999999999999999}`, wantErr: `decode subnet state: claimedAt "99999999999999999999": not an integer of milliseconds`},
		{name: "claimedAt negative", data: `{"subnet": "10.244.3.0/24", "claimedAt": -1}`, wantErr: "decode subnet state: claimedAt -1: negative"},
		{name: "static a string", data: `{"subnet": "10.244.3.0/24", "static": "yes"}`, wantErr: `decode subnet state: static "\"yes\"": not true or false`},
		{name: "static null", data: `{"subnet": "10.244.3.0/24", "static": null}`, wantErr: `decode subnet state: static "null": not true or false`},
		{
			name:    "long values are cut in errors",
			data:    `{"subnet": "10.244.3.0/24", "static": "` + strings.Repeat("x", 100) + `"}`,
			wantErr: `decode subnet state: static "\"` + strings.Repeat("x", 39) + `...": not true or false`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeState([]byte(tt.data))
			gotErr := subnetErrString(err)
			if tt.prefixOnly && strings.HasPrefix(gotErr, tt.wantErr) && len(gotErr) > len(tt.wantErr) {
				gotErr = tt.wantErr
			}
			if diff := cmp.Diff(tt.wantErr, gotErr); diff != "" {
				t.Errorf("DecodeState error (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got, subnetCmp()); diff != "" {
				t.Errorf("DecodeState (-want +got):\n%s", diff)
			}
		})
	}
}

func TestStateValidate(t *testing.T) {
	tests := []struct {
		name  string
		state State
		want  string
	}{
		{name: "valid", state: State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: 1}},
		{name: "zero", state: State{}, want: `subnet "invalid Prefix": not a valid prefix`},
		{name: "host bits", state: State{Subnet: subnetPrefix("10.244.3.1/24")}, want: "subnet 10.244.3.1/24: host bits set, want 10.244.3.0/24"},
		{name: "negative", state: State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: -7}, want: "claimedAt -7: negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, subnetErrString(tt.state.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// subnetListDir returns the names in dir.
func subnetListDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// subnetMode returns the permission bits of path.
func subnetMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestSaveLoadState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")

	got, ok, err := LoadState(dir)
	if err != nil || ok || got != (State{}) {
		t.Fatalf("LoadState of a missing dir = %+v, %t, %v; want zero, false, nil", got, ok, err)
	}

	first := State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: 1700000000000}
	if err := SaveState(dir, first); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	if m := subnetMode(t, dir); m != 0o700 {
		t.Errorf("state dir mode %v, want 0700", m)
	}
	path := filepath.Join(dir, StateFile)
	if m := subnetMode(t, path); m != 0o600 {
		t.Errorf("state file mode %v, want 0600", m)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantData := "{\n  \"subnet\": \"10.244.3.0/24\",\n  \"claimedAt\": 1700000000000,\n  \"static\": false\n}\n"
	if diff := cmp.Diff(wantData, string(data)); diff != "" {
		t.Errorf("state file (-want +got):\n%s", diff)
	}
	got, ok, err = LoadState(dir)
	if err != nil || !ok {
		t.Fatalf("LoadState = %+v, %t, %v", got, ok, err)
	}
	if diff := cmp.Diff(first, got, subnetCmp()); diff != "" {
		t.Errorf("LoadState after SaveState (-want +got):\n%s", diff)
	}

	second := State{Subnet: subnetPrefix("fd00:10:0:7::/64"), ClaimedAt: 42, Static: true}
	if err := SaveState(dir, second); err != nil {
		t.Fatalf("SaveState over an existing state: %v", err)
	}
	got, _, err = LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(second, got, subnetCmp()); diff != "" {
		t.Errorf("LoadState after the second SaveState (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{StateFile}, subnetListDir(t, dir)); diff != "" {
		t.Errorf("state dir holds more than the state (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(Claim{Node: "n1", Subnet: second.Subnet, ClaimedAt: 42, Static: true}, got.Claim("n1"), subnetCmp()); diff != "" {
		t.Errorf("State.Claim (-want +got):\n%s", diff)
	}
}

func TestSaveStateRefusesInvalid(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	err := SaveState(dir, State{Subnet: subnetPrefix("10.244.3.0/24"), ClaimedAt: -1})
	want := "save subnet state " + filepath.Join(dir, StateFile) + ": claimedAt -1: negative"
	if diff := cmp.Diff(want, subnetErrString(err)); diff != "" {
		t.Errorf("SaveState error (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("SaveState of an invalid state created %s (stat: %v)", dir, err)
	}
}

func TestStateFileErrors(t *testing.T) {
	t.Run("bad content names the file and field", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, StateFile)
		if err := os.WriteFile(path, []byte(`{"subnet": "10.244.3.0/24", "claimedAt": -3}`), 0o600); err != nil {
			t.Fatal(err)
		}
		_, ok, err := LoadState(dir)
		want := "load subnet state " + path + ": decode subnet state: claimedAt -3: negative"
		if diff := cmp.Diff(want, subnetErrString(err)); diff != "" || ok {
			t.Errorf("LoadState ok %t, error (-want +got):\n%s", ok, diff)
		}
	})
	t.Run("unreadable", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Mkdir(filepath.Join(dir, StateFile), 0o700); err != nil {
			t.Fatal(err)
		}
		if _, ok, err := LoadState(dir); err == nil || ok || !strings.Contains(err.Error(), StateFile) {
			t.Errorf("LoadState of a directory named %s = %t, %v; want an error naming it", StateFile, ok, err)
		}
	})
	t.Run("failed rename leaves no temporary file", func(t *testing.T) {
		dir := t.TempDir()
		// A non-empty directory in the way makes rename(2) fail.
		if err := os.MkdirAll(filepath.Join(dir, StateFile, "x"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := SaveState(dir, State{Subnet: subnetPrefix("10.244.3.0/24")}); err == nil {
			t.Errorf("SaveState over a non-empty directory succeeded")
		}
		if diff := cmp.Diff([]string{StateFile}, subnetListDir(t, dir)); diff != "" {
			t.Errorf("state dir after a failed save (-want +got):\n%s", diff)
		}
	})
	t.Run("dir is a file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "file")
		if err := os.WriteFile(dir, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := SaveState(dir, State{Subnet: subnetPrefix("10.244.3.0/24")}); err == nil {
			t.Errorf("SaveState into a regular file succeeded")
		}
	})
}

// FuzzDecodeState checks that DecodeState never panics and that whatever it
// accepts survives a save and a load unchanged.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"subnet": "10.244.3.0/24", "claimedAt": 1700000000000, "static": true}`))
	f.Add([]byte(`{"subnet": "fd00:10:0:3::/64", "claimedAt": 0, "static": false}`))
	f.Add([]byte(`{"subnet": "10.244.3.0/24"}`))
	f.Add([]byte(`{"subnet": "10.244.3.1/24", "claimedAt": -1}`))
	f.Add([]byte(`{"subnet": null, "claimedAt": "x", "static": 1}`))
	f.Add([]byte(`{"subnet": "::ffff:10.244.3.0/120", "claimedAt": 1e3, "extra": [1]}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := DecodeState(data)
		if err != nil {
			if s != (State{}) {
				t.Fatalf("DecodeState returned %+v with error %v", s, err)
			}
			return
		}
		enc, err := encodeState(s)
		if err != nil {
			t.Fatalf("decoded state %+v does not encode: %v", s, err)
		}
		again, err := DecodeState(enc)
		if err != nil {
			t.Fatalf("encoded state %q does not decode: %v", enc, err)
		}
		if diff := cmp.Diff(s, again, subnetCmp()); diff != "" {
			t.Fatalf("state changed through encode and decode (-before +after):\n%s", diff)
		}
	})
}
