package ec2emu

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// apiError is an EC2 error response: HTTP status, code and message.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

func invalidParameter(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidParameterValue", format, args...)
}

// xmlns is the namespace of EC2 API version 2016-11-15, the one the SDK uses.
const xmlns = "http://ec2.amazonaws.com/doc/2016-11-15/"

// ServeHTTP answers one EC2 Query API request: a form-encoded POST (or a GET
// with the same query) signed with SigV4.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, "", errorf(http.StatusBadRequest, "InvalidRequest", "read body: %v", err))
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || r.Method == http.MethodGet {
		form, err = url.ParseQuery(r.URL.RawQuery)
	}
	if err != nil {
		writeError(w, "", errorf(http.StatusBadRequest, "MalformedQueryString", "%v", err))
		return
	}
	action := form.Get("Action")

	e.mu.Lock()
	e.calls[action]++
	reqID := e.nextIDLocked("emu-req-")
	throttled := e.takeThrottleLocked(action)
	e.mu.Unlock()

	if aerr := e.authenticate(r, body); aerr != nil {
		writeError(w, reqID, aerr)
		return
	}
	if throttled {
		writeError(w, reqID, errorf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."))
		return
	}
	var resp any
	var aerr *apiError
	changed := false
	switch action {
	case "DescribeRouteTables":
		resp, aerr = e.describeRouteTables(form)
	case "DescribeInstances":
		resp, aerr = e.describeInstances(form)
	case "CreateRoute", "ReplaceRoute":
		resp, aerr = e.putRoute(action, form)
		changed = aerr == nil
	case "DeleteRoute":
		resp, aerr = e.deleteRoute(form)
		changed = aerr == nil
	case "ModifyInstanceAttribute":
		resp, aerr = e.modifyInstanceAttribute(form)
	default:
		aerr = errorf(http.StatusBadRequest, "InvalidAction", "The action %s is not valid for this web service.", action)
	}
	if aerr != nil {
		writeError(w, reqID, aerr)
		return
	}
	if changed {
		e.changed()
	}
	writeResponse(w, action, reqID, resp)
}

func (e *Emulator) takeThrottleLocked(action string) bool {
	for _, k := range []string{action, ""} {
		if e.throttle[k] > 0 {
			e.throttle[k]--
			return true
		}
	}
	return false
}

// returnResponse is the body of actions that answer only <return>true</return>.
type returnResponse struct {
	Return bool `xml:"return"`
}

func (e *Emulator) putRoute(action string, form url.Values) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, dst, aerr := e.routeTarget(form)
	if aerr != nil {
		return nil, aerr
	}
	r := Route{
		Dst:      dst,
		Gateway:  form.Get("GatewayId"),
		Instance: form.Get("InstanceId"),
		ENI:      form.Get("NetworkInterfaceId"),
		Origin:   "CreateRoute",
	}
	if n := countNonEmpty(r.Gateway, r.Instance, r.ENI); n != 1 {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterCombination",
			"exactly one target is required (GatewayId, InstanceId, NetworkInterfaceId); got %d", n)
	}
	if r.Gateway == "local" {
		return nil, invalidParameter("cannot create or replace a local route")
	}
	if r.Instance != "" {
		in, ok := e.instances[r.Instance]
		if !ok || in.State == StateTerminated {
			return nil, errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", r.Instance)
		}
		if in.VPC != t.VPC {
			return nil, invalidParameter("instance %s is not in vpc %s", r.Instance, t.VPC)
		}
	}
	if r.ENI != "" && e.instanceByENILocked(r.ENI) == nil {
		return nil, errorf(http.StatusBadRequest, "InvalidNetworkInterfaceID.NotFound", "The networkInterface ID '%s' does not exist", r.ENI)
	}
	e.fillTargetLocked(&r)
	i := slices.IndexFunc(t.Routes, func(x Route) bool { return x.Dst == dst })
	switch {
	case action == "CreateRoute" && i >= 0:
		return nil, errorf(http.StatusBadRequest, "RouteAlreadyExists",
			"The route identified by %s already exists.", dst)
	case action == "CreateRoute" && countLocked(t) >= e.limit:
		return nil, errorf(http.StatusBadRequest, "RouteLimitExceeded",
			"The maximum number of routes has been reached for route table %s (%d).", t.ID, e.limit)
	case action == "CreateRoute":
		t.Routes = append(t.Routes, r)
	case i < 0:
		return nil, errorf(http.StatusBadRequest, "InvalidRoute.NotFound",
			"no route with destination-cidr-block %s in route table %s", dst, t.ID)
	case t.Routes[i].Gateway == "local":
		return nil, invalidParameter("cannot replace the local route %s", dst)
	default:
		t.Routes[i] = r
	}
	return returnResponse{Return: true}, nil
}

func (e *Emulator) deleteRoute(form url.Values) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, dst, aerr := e.routeTarget(form)
	if aerr != nil {
		return nil, aerr
	}
	i := slices.IndexFunc(t.Routes, func(x Route) bool { return x.Dst == dst })
	if i < 0 {
		return nil, errorf(http.StatusBadRequest, "InvalidRoute.NotFound",
			"no route with destination-cidr-block %s in route table %s", dst, t.ID)
	}
	if t.Routes[i].Gateway == "local" {
		return nil, invalidParameter("cannot remove local route %s in route table %s", dst, t.ID)
	}
	t.Routes = slices.Delete(t.Routes, i, i+1)
	return returnResponse{Return: true}, nil
}

// routeTarget reads RouteTableId and DestinationCidrBlock.
func (e *Emulator) routeTarget(form url.Values) (*RouteTable, netip.Prefix, *apiError) {
	id := form.Get("RouteTableId")
	t, ok := e.tables[id]
	if !ok {
		return nil, netip.Prefix{}, errorf(http.StatusBadRequest, "InvalidRouteTableID.NotFound",
			"The routeTable ID '%s' does not exist", id)
	}
	dst, err := netip.ParsePrefix(form.Get("DestinationCidrBlock"))
	if err != nil || dst != dst.Masked() || !dst.Addr().Is4() {
		return nil, netip.Prefix{}, invalidParameter("Value (%s) for parameter destinationCidrBlock is invalid.",
			form.Get("DestinationCidrBlock"))
	}
	return t, dst, nil
}

func (e *Emulator) modifyInstanceAttribute(form url.Values) (any, *apiError) {
	v := form.Get("SourceDestCheck.Value")
	if v == "" && form.Get("Attribute") == "sourceDestCheck" {
		v = form.Get("Value")
	}
	on, err := strconv.ParseBool(v)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterCombination",
			"the emulator supports only the sourceDestCheck attribute (value %q)", v)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	id := form.Get("InstanceId")
	in, ok := e.instances[id]
	if !ok || in.State == StateTerminated {
		return nil, errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	in.SourceDestCheck = on
	return returnResponse{Return: true}, nil
}

// queryList reads an EC2 query list: prefix.1, prefix.2, ... up to the first
// gap.
func queryList(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+"."+strconv.Itoa(i)]
		if !ok || len(v) == 0 {
			return out
		}
		out = append(out, v[0])
	}
}

// filter is one Filter.N of a Describe call: a resource matches when one of
// its values for Name equals one of Values.
type filter struct {
	name   string
	values []string
}

func queryFilters(form url.Values) []filter {
	var out []filter
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name := form.Get(p + ".Name")
		if name == "" {
			return out
		}
		out = append(out, filter{name: name, values: queryList(form, p+".Value")})
	}
}

// matches reports whether a resource passes every filter; get returns the
// resource's values for a filter name and whether the name is supported.
func matches(filters []filter, get func(name string) ([]string, bool)) (bool, *apiError) {
	for _, f := range filters {
		have, ok := get(f.name)
		if !ok {
			return false, invalidParameter("The filter '%s' is invalid", f.name)
		}
		if !slices.ContainsFunc(f.values, func(v string) bool { return slices.Contains(have, v) }) {
			return false, nil
		}
	}
	return true, nil
}

// tagFilter answers the tag:<key> and tag-key filters.
func tagFilter(tags map[string]string, name string) ([]string, bool) {
	if name == "tag-key" {
		var keys []string
		for k := range tags {
			keys = append(keys, k)
		}
		return keys, true
	}
	if key, ok := strings.CutPrefix(name, "tag:"); ok {
		if v, ok := tags[key]; ok {
			return []string{v}, true
		}
		return nil, true
	}
	return nil, false
}

// page cuts a sorted result by MaxResults and NextToken (an offset).
func page[T any](items []T, form url.Values, maxLimit int) ([]T, string, *apiError) {
	start := 0
	if tok := form.Get("NextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(items) {
			return nil, "", errorf(http.StatusBadRequest, "InvalidPaginationToken", "The token '%s' is invalid.", tok)
		}
		start = n
	}
	size := len(items) - start
	if v := form.Get("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 5 || n > maxLimit {
			return nil, "", invalidParameter("Value (%s) for parameter maxResults is invalid. Expecting a value between 5 and %d.", v, maxLimit)
		}
		size = min(size, n)
	}
	next := ""
	if start+size < len(items) {
		next = strconv.Itoa(start + size)
	}
	return items[start : start+size], next, nil
}

func countNonEmpty(ss ...string) int {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	return n
}

// errorResponse is EC2's error body, which the SDK's ec2query protocol
// parses.
type errorResponse struct {
	XMLName   xml.Name `xml:"Response"`
	Code      string   `xml:"Errors>Error>Code"`
	Message   string   `xml:"Errors>Error>Message"`
	RequestID string   `xml:"RequestID"`
}

func writeError(w http.ResponseWriter, reqID string, e *apiError) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	// Encoding a fixed struct of strings cannot fail.
	_ = xml.NewEncoder(&b).Encode(errorResponse{Code: e.code, Message: e.message, RequestID: reqID})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write(b.Bytes())
}

// writeResponse wraps body in <{Action}Response xmlns=...> with a requestId,
// as EC2 does.
func writeResponse(w http.ResponseWriter, action, reqID string, body any) {
	inner, err := xml.Marshal(body)
	if err != nil {
		writeError(w, reqID, errorf(http.StatusInternalServerError, "InternalError", "encode response: %v", err))
		return
	}
	// xml.Marshal names the root after the Go type; swap it for the
	// action's response element and keep its children.
	start := bytes.IndexByte(inner, '>') + 1
	end := bytes.LastIndexByte(inner, '<')
	var b bytes.Buffer
	b.WriteString(xml.Header)
	fmt.Fprintf(&b, "<%sResponse xmlns=%q><requestId>%s</requestId>", action, xmlns, reqID)
	if start > 0 && end >= start {
		b.Write(inner[start:end])
	}
	fmt.Fprintf(&b, "</%sResponse>", action)
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write(b.Bytes())
}
