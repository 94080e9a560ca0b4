package ec2emu

import (
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// sigV4 is the parsed Authorization header of a SigV4-signed request:
// "AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/ec2/aws4_request,
// SignedHeaders=content-length;content-type;host;x-amz-date, Signature=hex".
type sigV4 struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

const sigV4Algorithm = "AWS4-HMAC-SHA256"

// parseSigV4 parses an Authorization header value.
func parseSigV4(h string) (sigV4, error) {
	rest, ok := strings.CutPrefix(h, sigV4Algorithm+" ")
	if !ok {
		return sigV4{}, fmt.Errorf("authorization %q: not %s", h, sigV4Algorithm)
	}
	var s sigV4
	var cred, signed string
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return sigV4{}, fmt.Errorf("authorization part %q: no '='", part)
		}
		switch k {
		case "Credential":
			cred = v
		case "SignedHeaders":
			signed = v
		case "Signature":
			s.signature = v
		}
	}
	scope := strings.Split(cred, "/")
	if len(scope) != 5 || scope[0] == "" || scope[4] != "aws4_request" {
		return sigV4{}, fmt.Errorf("authorization credential %q: want AKID/date/region/service/aws4_request", cred)
	}
	s.accessKey, s.date, s.region, s.service = scope[0], scope[1], scope[2], scope[3]
	if signed == "" || s.signature == "" {
		return sigV4{}, fmt.Errorf("authorization %q: SignedHeaders and Signature are required", h)
	}
	s.signedHeaders = strings.Split(signed, ";")
	return s, nil
}

// authenticate checks a request's SigV4 signature: the access key must be
// one of Config.Credentials, the scope this emulator's region and "ec2", and
// the signature must verify with that key's secret.
func (e *Emulator) authenticate(r *http.Request, body []byte) *apiError {
	h := r.Header.Get("Authorization")
	if h == "" {
		return errorf(http.StatusUnauthorized, "AuthFailure", "The request has no Authorization header (it must be signed with SigV4).")
	}
	s, err := parseSigV4(h)
	if err != nil {
		return errorf(http.StatusUnauthorized, "AuthFailure", "%v", err)
	}
	secret, ok := e.cfg.Credentials[s.accessKey]
	if !ok {
		return errorf(http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials")
	}
	if s.region != e.cfg.Region || s.service != "ec2" {
		return errorf(http.StatusUnauthorized, "AuthFailure",
			"Credential should be scoped to a valid region and service: got %s/%s, want %s/ec2", s.region, s.service, e.cfg.Region)
	}
	want := signature(secret, s, canonicalRequest(r, s.signedHeaders, body), r.Header.Get("X-Amz-Date"))
	if !hmac.Equal([]byte(want), []byte(s.signature)) {
		return errorf(http.StatusForbidden, "SignatureDoesNotMatch",
			"The request signature we calculated does not match the signature you provided.")
	}
	return nil
}

// canonicalRequest is SigV4's canonical form of r: method, path, sorted
// query, the signed headers with trimmed values, and the payload hash.
func canonicalRequest(r *http.Request, signed []string, body []byte) string {
	var b strings.Builder
	b.WriteString(r.Method + "\n")
	b.WriteString(cmp.Or(r.URL.EscapedPath(), "/") + "\n")
	b.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, name := range signed {
		var values []string
		switch name {
		case "host":
			values = []string{r.Host}
		case "content-length":
			values = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			values = r.Header.Values(name)
		}
		for i, v := range values {
			values[i] = strings.Join(strings.Fields(v), " ")
		}
		b.WriteString(name + ":" + strings.Join(values, ",") + "\n")
	}
	b.WriteString("\n" + strings.Join(signed, ";") + "\n")
	sum := sha256.Sum256(body)
	b.WriteString(hex.EncodeToString(sum[:]))
	return b.String()
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, escape(k)+"="+escape(v))
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "&")
}

// escape is SigV4's URI encoding: RFC 3986 unreserved characters stay,
// spaces are %20.
func escape(s string) string {
	return strings.ReplaceAll(url.QueryEscape(s), "+", "%20")
}

// signature is the hex SigV4 signature of a canonical request.
func signature(secret string, s sigV4, canonical, amzDate string) string {
	scope := strings.Join([]string{s.date, s.region, s.service, "aws4_request"}, "/")
	sum := sha256.Sum256([]byte(canonical))
	toSign := strings.Join([]string{sigV4Algorithm, amzDate, scope, hex.EncodeToString(sum[:])}, "\n")
	key := []byte("AWS4" + secret)
	for _, part := range []string{s.date, s.region, s.service, "aws4_request", toSign} {
		key = hmacSHA256(key, part)
	}
	return hex.EncodeToString(key)
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}
