package selector

import (
	"fmt"
	"strings"
)

// Limits on label names and values, as Kubernetes sets them
// (k8s.io/apimachinery/pkg/util/validation), which Calico's validator uses
// for the labels of every resource.
const (
	maxLabelNameLen   = 63  // the name part of a key, and a value
	maxLabelPrefixLen = 253 // a DNS subdomain
)

// ValidateLabelKey checks a label key as Calico validates label names: a
// Kubernetes qualified name, that is an optional prefix and "/" followed by
// a name. The name is 1 to 63 characters of [A-Za-z0-9._-] that begin and
// end with a letter or digit; the prefix, if present, is a DNS subdomain
// (at most 253 characters, dot-separated parts of [a-z0-9-] that begin and
// end with a letter or digit), e.g. projectcalico.org/namespace. The error
// names the key and says what is wrong.
func ValidateLabelKey(k string) error {
	name := k
	prefix, rest, found := strings.Cut(k, "/")
	if found {
		name = rest
		if strings.Contains(rest, "/") {
			return fmt.Errorf("label key %q: more than one \"/\": a key is an optional prefix, \"/\" and a name", k)
		}
		if err := checkDNSSubdomain(prefix); err != nil {
			return fmt.Errorf("label key %q: prefix %q: %w", k, prefix, err)
		}
	}
	if err := checkLabelName(name, false); err != nil {
		return fmt.Errorf("label key %q: name %q: %w", k, name, err)
	}
	return nil
}

// ValidateLabelValue checks a label value as Calico validates them (a
// Kubernetes label value): empty, or 1 to 63 characters of [A-Za-z0-9._-]
// that begin and end with a letter or digit. The error names the value.
func ValidateLabelValue(v string) error {
	if err := checkLabelName(v, true); err != nil {
		return fmt.Errorf("label value %q: %w", v, err)
	}
	return nil
}

// checkLabelName checks the name part of a key, or a value (which may be
// empty).
func checkLabelName(s string, emptyOK bool) error {
	switch {
	case s == "" && emptyOK:
		return nil
	case s == "":
		return fmt.Errorf("must not be empty")
	case len(s) > maxLabelNameLen:
		return fmt.Errorf("is %d characters long, more than %d", len(s), maxLabelNameLen)
	case !isAlnum(s[0]) || !isAlnum(s[len(s)-1]):
		return fmt.Errorf("must begin and end with a letter or digit")
	}
	for i, r := range s {
		if r >= 0x80 || !isAlnum(byte(r)) && r != '-' && r != '_' && r != '.' {
			return fmt.Errorf("has %q at %d: only letters, digits, '-', '_' and '.' are allowed", r, i)
		}
	}
	return nil
}

// checkDNSSubdomain checks a key's prefix as an RFC 1123 subdomain.
func checkDNSSubdomain(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > maxLabelPrefixLen {
		return fmt.Errorf("is %d characters long, more than %d", len(s), maxLabelPrefixLen)
	}
	for part := range strings.SplitSeq(s, ".") {
		if part == "" {
			return fmt.Errorf("has an empty part between dots: it must be a DNS subdomain such as example.com")
		}
		for _, r := range part {
			if r >= 0x80 || !isLowerAlnum(byte(r)) && r != '-' {
				return fmt.Errorf("has %q: a DNS subdomain has only lower-case letters, digits, '-' and '.'", r)
			}
		}
		if part[0] == '-' || part[len(part)-1] == '-' {
			return fmt.Errorf("part %q must begin and end with a lower-case letter or digit", part)
		}
	}
	return nil
}

func isLowerAlnum(c byte) bool { return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' }

func isAlnum(c byte) bool { return isLowerAlnum(c) || 'A' <= c && c <= 'Z' }
