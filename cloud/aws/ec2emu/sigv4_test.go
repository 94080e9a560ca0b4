package ec2emu

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSigV4(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		want    sigV4
		wantErr bool
	}{
		{
			name:   "sdk form",
			header: "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=content-length;host;x-amz-date, Signature=abcd",
			want: sigV4{accessKey: "AKID", date: "20260101", region: "us-east-1", service: "ec2",
				signedHeaders: []string{"content-length", "host", "x-amz-date"}, signature: "abcd"},
		},
		{name: "other algorithm", header: "AWS4-HMAC-SHA512 Credential=A/d/r/s/aws4_request, SignedHeaders=host, Signature=x", wantErr: true},
		{name: "short scope", header: "AWS4-HMAC-SHA256 Credential=A/d/r, SignedHeaders=host, Signature=x", wantErr: true},
		{name: "no signature", header: "AWS4-HMAC-SHA256 Credential=A/d/r/s/aws4_request, SignedHeaders=host", wantErr: true},
		{name: "part without =", header: "AWS4-HMAC-SHA256 Credential", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseSigV4(tt.header)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error: %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(sigV4{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func FuzzParseSigV4(f *testing.F) {
	f.Add("AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=abcd")
	f.Add("AWS4-HMAC-SHA256 ")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		s, err := parseSigV4(h)
		if err != nil {
			return
		}
		if s.accessKey == "" || s.signature == "" || len(s.signedHeaders) == 0 || strings.Contains(s.accessKey, "/") {
			t.Errorf("parseSigV4(%q) = %+v without error", h, s)
		}
	})
}
