package ec2emu

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// IMDS header names (IMDSv2).
const (
	imdsTokenHeader = "X-Aws-Ec2-Metadata-Token"
	imdsTTLHeader   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	imdsMaxTTL      = 21600 // seconds, as EC2 allows
	roleName        = "weft-emu-role"
)

// IMDS returns the instance metadata service of instance id, as it answers
// on 169.254.169.254 inside that instance. It requires IMDSv2: a token from
// PUT /latest/api/token (TTL header 1-21600 s) in the X-aws-ec2-metadata-token
// header of every GET, else 401. Tokens never expire in the emulator. It
// serves instance-id, local-ipv4, mac, placement/{availability-zone,region},
// network/interfaces/macs/<mac>/{interface-id,vpc-id,subnet-id,
// subnet-ipv4-cidr-block,local-ipv4s}, iam/security-credentials/ (when the
// instance has a RoleKey) and dynamic/instance-identity/document. The
// instance is looked up on each request, so knobs apply at once.
func (e *Emulator) IMDS(id string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.serveIMDS(id, w, r)
	})
}

func (e *Emulator) serveIMDS(id string, w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.calls["IMDS "+r.Method]++
	e.mu.Unlock()
	if r.URL.Path == "/latest/api/token" {
		e.imdsToken(id, w, r)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	e.mu.Lock()
	owner, ok := e.tokens[r.Header.Get(imdsTokenHeader)]
	var in Instance
	found := false
	if p, exists := e.instances[id]; exists {
		in, found = *p, true
	}
	secret := e.cfg.Credentials[in.RoleKey]
	e.mu.Unlock()
	if !ok || owner != id {
		// IMDSv1 (no token) is refused, as with http-tokens=required.
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
		return
	}
	if !found {
		http.NotFound(w, r)
		return
	}
	body, ok := e.metadata(in, secret, r.URL.Path)
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write([]byte(body))
}

func (e *Emulator) imdsToken(id string, w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.Header.Get("X-Forwarded-For") != "" {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
	if err != nil || ttl < 1 || ttl > imdsMaxTTL {
		http.Error(w, "Bad Request: invalid "+imdsTTLHeader, http.StatusBadRequest)
		return
	}
	e.mu.Lock()
	tok := e.nextIDLocked("emu-token-")
	e.tokens[tok] = id
	e.mu.Unlock()
	w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
	_, _ = w.Write([]byte(tok))
}

// identityDocument is the JSON of /latest/dynamic/instance-identity/document.
type identityDocument struct {
	AccountID        string `json:"accountId"`
	Architecture     string `json:"architecture"`
	AvailabilityZone string `json:"availabilityZone"`
	ImageID          string `json:"imageId"`
	InstanceID       string `json:"instanceId"`
	InstanceType     string `json:"instanceType"`
	PrivateIP        string `json:"privateIp"`
	Region           string `json:"region"`
	Version          string `json:"version"`
}

// roleCredentials is the JSON of /latest/meta-data/iam/security-credentials/<role>.
type roleCredentials struct {
	Code            string
	LastUpdated     time.Time
	Type            string
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	Token           string
	Expiration      time.Time
}

// metadata returns the body of an IMDS path and whether it exists.
func (e *Emulator) metadata(in Instance, secret, path string) (string, bool) {
	switch path {
	case "/latest/dynamic/instance-identity/document":
		b, err := json.Marshal(identityDocument{
			AccountID: e.cfg.AccountID, Architecture: "x86_64", AvailabilityZone: in.Zone,
			ImageID: "ami-00000000", InstanceID: in.ID, InstanceType: "t3.micro",
			PrivateIP: in.PrivateIP.String(), Region: e.cfg.Region, Version: "2017-09-30",
		})
		return string(b), err == nil
	case "/latest/meta-data/iam/security-credentials/":
		return roleName, in.RoleKey != ""
	case "/latest/meta-data/iam/security-credentials/" + roleName:
		if in.RoleKey == "" {
			return "", false
		}
		now := time.Now().UTC()
		b, err := json.Marshal(roleCredentials{
			Code: "Success", LastUpdated: now, Type: "AWS-HMAC",
			AccessKeyID: in.RoleKey, SecretAccessKey: secret, Token: "emu-session-token",
			Expiration: now.Add(6 * time.Hour),
		})
		return string(b), err == nil
	}
	rest, ok := strings.CutPrefix(path, "/latest/meta-data/")
	if !ok {
		return "", false
	}
	iface := "network/interfaces/macs/" + in.MAC + "/"
	switch rest {
	case "instance-id":
		return in.ID, true
	case "local-ipv4", iface + "local-ipv4s":
		return in.PrivateIP.String(), true
	case "mac", iface + "mac":
		return in.MAC, true
	case "placement/availability-zone":
		return in.Zone, true
	case "placement/region":
		return e.cfg.Region, true
	case iface + "interface-id":
		return in.ENI, true
	case iface + "vpc-id":
		return in.VPC, true
	case iface + "subnet-id":
		return in.Subnet, true
	case iface + "subnet-ipv4-cidr-block":
		return in.SubnetCIDR.String(), true
	}
	return "", false
}
