// Package aws is weft's cloud.Provider for Amazon EC2, on aws-sdk-go-v2: it
// discovers the instance through IMDSv2, keeps VPC route tables holding
// "workload subnet -> instance" routes so that hosts in one VPC talk without
// encapsulation, and turns off the instance's source/destination check.
//
// Data flow of one ReconcileRoutes (one resync): read the whole picture in
// two paginated describe calls whatever the number of peers (every route
// table of this VPC; every instance tagged as this cluster's), plan (pure:
// [plan]), apply the few writes the plan needs (deletes of stale routes
// first, then creates and replaces of this host's own routes), and report
// which wanted routes are in place from what the tables now hold.
//
// Ownership without memory: EC2 routes carry no tags, so a route is weft's
// when its target is an instance tagged TagCluster=<cluster name> (terminated
// instances keep their tags while EC2 still lists them), or, when
// Config.ClusterCIDR is set, a blackhole route into that range whose target
// instance EC2 no longer knows at all. Every other route is never touched.
// Each host creates and replaces only routes to itself, and deletes its own
// routes that no wanted route claims; routes to terminated instances are
// deleted by one host, the sweeper: the running, tagged instance of this VPC
// with the lowest instance ID, which every host computes alike from the same
// describe call, so no leader election or lock is needed. A route whose
// destination a live node wants is never deleted by a sweeper: its new owner
// replaces it, so a delete cannot race a replace.
package aws

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/weft-net/weft/cloud"
)

// Name is the provider's name in the config (`cloud: aws`) and in
// cloud.Instance.Cloud.
const Name = "aws"

// TagCluster is the tag key that marks an instance (and, by default, a route
// table) as belonging to a weft cluster; its value is the cluster name.
const TagCluster = "weft:cluster"

// Defaults.
const (
	// DefaultRouteLimit is EC2's default quota of routes per route table.
	// Only used to say "full" before a create fails; a raised quota just
	// makes creates succeed.
	DefaultRouteLimit = 50
	// DefaultMaxAttempts is how often one call is tried, throttling
	// (RequestLimitExceeded) included, with the SDK's exponential backoff
	// with jitter in between. The SDK's default is 3; route writes are rare
	// and a resync that gives up only delays native routing.
	DefaultMaxAttempts = 5
)

// Config configures a Provider. Only ClusterName is required.
type Config struct {
	// ClusterName is the value of TagCluster on this cluster's instances;
	// required.
	ClusterName string
	// Region of the EC2 API; empty: from IMDS.
	Region string
	// Endpoint is the EC2 API base URL (e.g. an emulator's); empty: the
	// SDK's regional endpoint.
	Endpoint string
	// IMDSEndpoint is the metadata service's base URL; empty: the SDK's
	// (169.254.169.254, or AWS_EC2_METADATA_SERVICE_ENDPOINT).
	IMDSEndpoint string
	// Credentials; nil: the SDK's default chain (environment, shared
	// config and credentials files, SSO, web identity, instance role).
	Credentials sdk.CredentialsProvider
	// RouteTableIDs are route tables of this host's VPC to manage (IDs of
	// other VPCs' tables are ignored). RouteTableTag ("key=value") selects
	// more by tag. With both empty, the tables of this VPC tagged
	// TagCluster=ClusterName are managed.
	RouteTableIDs []string
	RouteTableTag string
	// ClusterCIDR, if valid, lets the sweeper delete blackhole routes inside
	// it whose target instance EC2 no longer lists at all (terminated more
	// than about an hour ago): their tag is gone, the range says whose they
	// were. Leave it unset if other routes point into that range.
	ClusterCIDR netip.Prefix
	// RouteLimit is the routes a table may hold (the account's quota);
	// default DefaultRouteLimit.
	RouteLimit int
	// MaxAttempts per call (default DefaultMaxAttempts) and MaxBackoff,
	// the longest wait between attempts (default: the SDK's, 20 s).
	MaxAttempts int
	MaxBackoff  time.Duration
	// HTTPClient for EC2 and IMDS calls (e.g. one that dials into a lab
	// namespace); nil: the SDK's. The SDK cannot add AWS_CA_BUNDLE's CAs to
	// a plain *http.Client, so New fails with both set.
	HTTPClient *http.Client
	// Logger gets route changes (Info), new fallbacks (Warn) and per-call
	// detail (Debug); nil discards.
	Logger *slog.Logger
}

// Provider is the EC2 cloud.Provider. Its methods are safe for concurrent
// use; ReconcileRoutes calls run one at a time.
type Provider struct {
	cfg      Config
	tagKey   string // of managed route tables
	tagValue string
	ec2      *ec2.Client
	imds     *imds.Client
	log      *slog.Logger

	selfMu sync.Mutex
	self   *cloud.Instance // from the last Discover

	mu   sync.Mutex              // serialises ReconcileRoutes; guards last
	last map[netip.Prefix]string // reason per wanted Dst ("" = programmed), for logging changes
}

var _ cloud.Provider = (*Provider)(nil)

// New validates c and builds the SDK clients. It makes no API call; when
// c.Region is empty it asks IMDS for the region, and fails if IMDS does not
// answer.
func New(ctx context.Context, c Config) (*Provider, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	c.RouteLimit = cmp.Or(c.RouteLimit, DefaultRouteLimit)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, DefaultMaxAttempts)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Provider{cfg: c, log: c.Logger.With("component", "cloud", "cloud", Name)}
	p.tagKey, p.tagValue = TagCluster, c.ClusterName
	if c.RouteTableTag != "" {
		p.tagKey, p.tagValue, _ = strings.Cut(c.RouteTableTag, "=")
	} else if len(c.RouteTableIDs) > 0 {
		p.tagKey = ""
	}

	newRetryer := func() sdk.Retryer {
		return retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxAttempts = c.MaxAttempts
			if c.MaxBackoff > 0 {
				o.MaxBackoff = c.MaxBackoff
			}
		})
	}
	imdsOpts := imds.Options{
		Endpoint:       c.IMDSEndpoint,
		EnableFallback: sdk.FalseTernary, // IMDSv2 only
		Retryer:        newRetryer(),
	}
	if c.HTTPClient != nil {
		imdsOpts.HTTPClient = c.HTTPClient
	}
	p.imds = imds.New(imdsOpts)
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(newRetryer),
		// Instance role credentials come through the same IMDSv2 client.
		config.WithEC2RoleCredentialOptions(func(o *ec2rolecreds.Options) { o.Client = p.imds }),
	}
	if c.Region != "" {
		opts = append(opts, config.WithRegion(c.Region))
	} else {
		opts = append(opts, config.WithEC2IMDSRegion(func(o *config.UseEC2IMDSRegion) { o.Client = p.imds }))
	}
	if c.Credentials != nil {
		opts = append(opts, config.WithCredentialsProvider(c.Credentials))
	}
	if c.HTTPClient != nil {
		opts = append(opts, config.WithHTTPClient(c.HTTPClient))
	}
	sc, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("load aws config: %w", err)
	}
	if sc.Region == "" {
		return nil, errors.New("load aws config: no region (set region, or run on EC2 with IMDS reachable)")
	}
	p.ec2 = ec2.NewFromConfig(sc, func(o *ec2.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = sdk.String(c.Endpoint)
		}
		o.HTTPClient = countingClient{next: o.HTTPClient}
	})
	return p, nil
}

func (c Config) validate() error {
	switch {
	case c.ClusterName == "" || len(c.ClusterName) > 256:
		return fmt.Errorf("clusterName %q: want 1 to 256 characters (an EC2 tag value)", c.ClusterName)
	case c.RouteTableTag != "" && !strings.Contains(c.RouteTableTag, "="):
		return fmt.Errorf("routeTableTag %q: want key=value", c.RouteTableTag)
	case c.RouteLimit < 0:
		return fmt.Errorf("routeLimit %d: must not be negative", c.RouteLimit)
	case c.MaxAttempts < 0:
		return fmt.Errorf("maxAttempts %d: must not be negative", c.MaxAttempts)
	case c.ClusterCIDR.IsValid() && c.ClusterCIDR != c.ClusterCIDR.Masked():
		return fmt.Errorf("clusterCIDR %s: host bits set", c.ClusterCIDR)
	}
	for _, id := range c.RouteTableIDs {
		if !strings.HasPrefix(id, "rtb-") {
			return fmt.Errorf("routeTableIDs: %q is not a route table ID (rtb-...)", id)
		}
	}
	return nil
}

// Discover reads this instance from IMDS (IMDSv2: a token, then six
// reads) and remembers it for ReconcileRoutes and DisableSourceDestCheck.
func (p *Provider) Discover(ctx context.Context) (cloud.Instance, error) {
	doc, err := p.imds.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		return cloud.Instance{}, fmt.Errorf("read instance identity from imds: %w", err)
	}
	in := cloud.Instance{Cloud: Name, ID: doc.InstanceID, Region: doc.Region, Zone: doc.AvailabilityZone}
	if in.PrivateIP, err = netip.ParseAddr(doc.PrivateIP); err != nil {
		return cloud.Instance{}, fmt.Errorf("read instance identity from imds: privateIp: %w", err)
	}
	mac, err := p.metadata(ctx, "mac")
	if err != nil {
		return cloud.Instance{}, err
	}
	iface := "network/interfaces/macs/" + mac + "/"
	for _, f := range []struct {
		path string
		dst  *string
	}{{iface + "vpc-id", &in.VPC}, {iface + "subnet-id", &in.Subnet}, {iface + "interface-id", &in.ENI}} {
		if *f.dst, err = p.metadata(ctx, f.path); err != nil {
			return cloud.Instance{}, err
		}
	}
	cidr, err := p.metadata(ctx, iface+"subnet-ipv4-cidr-block")
	if err != nil {
		return cloud.Instance{}, err
	}
	if in.SubnetCIDR, err = netip.ParsePrefix(cidr); err != nil {
		return cloud.Instance{}, fmt.Errorf("read %s from imds: %w", iface+"subnet-ipv4-cidr-block", err)
	}
	p.selfMu.Lock()
	p.self = &in
	p.selfMu.Unlock()
	p.log.Info("instance discovered", "instance", in.ID, "vpc", in.VPC, "subnet", in.Subnet, "zone", in.Zone)
	return in, nil
}

func (p *Provider) metadata(ctx context.Context, path string) (string, error) {
	out, err := p.imds.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		return "", fmt.Errorf("read %s from imds: %w", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 4096))
	if err != nil {
		return "", fmt.Errorf("read %s from imds: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// instance returns this host's instance, discovering it on first use.
func (p *Provider) instance(ctx context.Context) (cloud.Instance, error) {
	p.selfMu.Lock()
	self := p.self
	p.selfMu.Unlock()
	if self != nil {
		return *self, nil
	}
	return p.Discover(ctx)
}

// DisableSourceDestCheck turns off this instance's source/destination check
// (ModifyInstanceAttribute); it makes the call even when the check is off.
// ReconcileRoutes also turns it off whenever it finds it on.
func (p *Provider) DisableSourceDestCheck(ctx context.Context) error {
	self, err := p.instance(ctx)
	if err != nil {
		return err
	}
	return p.disableSourceDestCheck(ctx, self.ID)
}

func (p *Provider) disableSourceDestCheck(ctx context.Context, id string) error {
	_, err := p.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
		InstanceId:      sdk.String(id),
		SourceDestCheck: &ec2types.AttributeBooleanValue{Value: sdk.Bool(false)},
	})
	if err != nil {
		return apiError(err, "turn off source/destination check of %s", id)
	}
	p.log.Info("source/destination check turned off", "instance", id)
	return nil
}

// isAuthCode reports whether an EC2 error code means the credentials were
// refused or lack a permission.
func isAuthCode(code string) bool {
	switch code {
	case "AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch", "UnauthorizedOperation",
		"IncompleteSignature", "MissingAuthenticationToken", "ExpiredToken", "OptInRequired", "Blocked":
		return true
	}
	return false
}

// errorCode returns the API error code in err ("" if none): the SDK's
// errors carry it behind smithy.APIError.
func errorCode(err error) string {
	var ae interface{ ErrorCode() string }
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// apiError wraps err with what was being done, and with cloud.ErrAuth when
// the credentials were refused.
func apiError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if isAuthCode(errorCode(err)) {
		return fmt.Errorf("%s: %w: %w", what, cloud.ErrAuth, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// callCounterKey keys the counter of the HTTP requests (attempts, retries
// included) made with a context from withCallCounter.
type callCounterKey struct{}

func withCallCounter(ctx context.Context) (context.Context, *atomic.Int64) {
	n := new(atomic.Int64)
	return context.WithValue(ctx, callCounterKey{}, n), n
}

// countingClient is the EC2 client's HTTP client: it counts each request
// against the context's counter, and hands the transport a private copy of
// the (small, form-encoded) request body. Without the copy, the SDK closes
// its body when the response headers arrive, and if the transport's write
// loop still touches it, the transport closes the connection under the
// response being read ("use of closed network connection", which the SDK
// then retries: aws/aws-sdk-go-v2#2737). Seen here in about 1 of 50 calls
// with 60 kB responses.
type countingClient struct{ next ec2.HTTPClient }

func (c countingClient) Do(r *http.Request) (*http.Response, error) {
	if n, ok := r.Context().Value(callCounterKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
	if r.Body != nil && r.Body != http.NoBody {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, fmt.Errorf("read request body: %w", err)
		}
		r = r.Clone(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(b))
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		r.ContentLength = int64(len(b))
	}
	return c.next.Do(r)
}
