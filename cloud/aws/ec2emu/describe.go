package ec2emu

import (
	"cmp"
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

// The XML shapes below are EC2's (API version 2016-11-15) as the SDK's
// ec2query deserializers read them: lists are <xxxSet><item>...</item></xxxSet>,
// names are lowerCamelCase.

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(tags map[string]string) []xmlTag {
	out := make([]xmlTag, 0, len(tags))
	for k, v := range tags {
		out = append(out, xmlTag{Key: k, Value: v})
	}
	slices.SortFunc(out, func(a, b xmlTag) int { return cmp.Compare(a.Key, b.Key) })
	return out
}

type xmlRoute struct {
	DestinationCidrBlock string `xml:"destinationCidrBlock"`
	GatewayID            string `xml:"gatewayId,omitempty"`
	InstanceID           string `xml:"instanceId,omitempty"`
	InstanceOwnerID      string `xml:"instanceOwnerId,omitempty"`
	NetworkInterfaceID   string `xml:"networkInterfaceId,omitempty"`
	State                string `xml:"state"`
	Origin               string `xml:"origin"`
}

type xmlAssociationState struct {
	State string `xml:"state"`
}

type xmlAssociation struct {
	RouteTableAssociationID string              `xml:"routeTableAssociationId"`
	RouteTableID            string              `xml:"routeTableId"`
	SubnetID                string              `xml:"subnetId,omitempty"`
	Main                    bool                `xml:"main"`
	AssociationState        xmlAssociationState `xml:"associationState"`
}

type xmlRouteTable struct {
	RouteTableID string           `xml:"routeTableId"`
	VpcID        string           `xml:"vpcId"`
	OwnerID      string           `xml:"ownerId"`
	Routes       []xmlRoute       `xml:"routeSet>item"`
	Associations []xmlAssociation `xml:"associationSet>item"`
	Tags         []xmlTag         `xml:"tagSet>item"`
}

type describeRouteTablesResponse struct {
	RouteTables []xmlRouteTable `xml:"routeTableSet>item"`
	NextToken   string          `xml:"nextToken,omitempty"`
}

func (e *Emulator) describeRouteTables(form url.Values) (any, *apiError) {
	ids := queryList(form, "RouteTableId")
	filters := queryFilters(form)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if _, ok := e.tables[id]; !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidRouteTableID.NotFound", "The routeTable ID '%s' does not exist", id)
		}
	}
	var found []xmlRouteTable
	for _, t := range e.tables {
		if len(ids) > 0 && !slices.Contains(ids, t.ID) {
			continue
		}
		ok, aerr := matches(filters, func(name string) ([]string, bool) { return routeTableFilter(t, name) })
		if aerr != nil {
			return nil, aerr
		}
		if ok {
			found = append(found, e.xmlRouteTableLocked(t))
		}
	}
	slices.SortFunc(found, func(a, b xmlRouteTable) int { return cmp.Compare(a.RouteTableID, b.RouteTableID) })
	items, next, aerr := page(found, form, 100)
	if aerr != nil {
		return nil, aerr
	}
	return describeRouteTablesResponse{RouteTables: items, NextToken: next}, nil
}

func routeTableFilter(t *RouteTable, name string) ([]string, bool) {
	switch name {
	case "vpc-id":
		return []string{t.VPC}, true
	case "route-table-id":
		return []string{t.ID}, true
	case "association.subnet-id":
		return t.Subnets, true
	case "association.main":
		return []string{strconv.FormatBool(t.Main)}, true
	}
	return tagFilter(t.Tags, name)
}

func (e *Emulator) xmlRouteTableLocked(t *RouteTable) xmlRouteTable {
	s := e.snapshotLocked(t)
	x := xmlRouteTable{RouteTableID: s.ID, VpcID: s.VPC, OwnerID: e.cfg.AccountID, Tags: xmlTags(s.Tags)}
	for _, r := range s.Routes {
		xr := xmlRoute{
			DestinationCidrBlock: r.Dst.String(),
			GatewayID:            r.Gateway,
			InstanceID:           r.Instance,
			NetworkInterfaceID:   r.ENI,
			State:                r.State,
			Origin:               r.Origin,
		}
		if r.Instance != "" {
			xr.InstanceOwnerID = e.cfg.AccountID
		}
		x.Routes = append(x.Routes, xr)
	}
	assoc := func(subnet string, main bool) xmlAssociation {
		return xmlAssociation{
			RouteTableAssociationID: "rtbassoc-" + s.ID + "-" + cmp.Or(subnet, "main"),
			RouteTableID:            s.ID,
			SubnetID:                subnet,
			Main:                    main,
			AssociationState:        xmlAssociationState{State: "associated"},
		}
	}
	if s.Main {
		x.Associations = append(x.Associations, assoc("", true))
	}
	for _, sub := range s.Subnets {
		x.Associations = append(x.Associations, assoc(sub, false))
	}
	return x
}

type xmlInstanceState struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

// stateCode is EC2's code of an instance state.
func stateCode(state string) int {
	switch state {
	case StateRunning:
		return 16
	case StateShuttingDown:
		return 32
	case StateTerminated:
		return 48
	case "stopping":
		return 64
	case StateStopped:
		return 80
	}
	return 0 // pending
}

type xmlAttachment struct {
	DeviceIndex int    `xml:"deviceIndex"`
	Status      string `xml:"status"`
}

type xmlNetworkInterface struct {
	NetworkInterfaceID string        `xml:"networkInterfaceId"`
	SubnetID           string        `xml:"subnetId"`
	VpcID              string        `xml:"vpcId"`
	MacAddress         string        `xml:"macAddress"`
	PrivateIPAddress   string        `xml:"privateIpAddress"`
	SourceDestCheck    bool          `xml:"sourceDestCheck"`
	Status             string        `xml:"status"`
	Attachment         xmlAttachment `xml:"attachment"`
}

type xmlPlacement struct {
	AvailabilityZone string `xml:"availabilityZone"`
}

type xmlInstance struct {
	InstanceID        string                `xml:"instanceId"`
	InstanceState     xmlInstanceState      `xml:"instanceState"`
	PrivateIPAddress  string                `xml:"privateIpAddress,omitempty"`
	Placement         xmlPlacement          `xml:"placement"`
	SubnetID          string                `xml:"subnetId,omitempty"`
	VpcID             string                `xml:"vpcId,omitempty"`
	SourceDestCheck   bool                  `xml:"sourceDestCheck"`
	NetworkInterfaces []xmlNetworkInterface `xml:"networkInterfaceSet>item"`
	Tags              []xmlTag              `xml:"tagSet>item"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	Reservations []xmlReservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

func (e *Emulator) describeInstances(form url.Values) (any, *apiError) {
	ids := queryList(form, "InstanceId")
	filters := queryFilters(form)
	if len(ids) > 0 && form.Get("MaxResults") != "" {
		return nil, errorf(http.StatusBadRequest, "InvalidParameterCombination",
			"The parameter instancesSet cannot be used with the parameter maxResults")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		if _, ok := e.instances[id]; !ok {
			return nil, errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
	}
	var found []xmlReservation
	for _, in := range e.instances {
		if len(ids) > 0 && !slices.Contains(ids, in.ID) {
			continue
		}
		ok, aerr := matches(filters, func(name string) ([]string, bool) { return instanceFilter(in, name) })
		if aerr != nil {
			return nil, aerr
		}
		if ok {
			found = append(found, xmlReservation{
				ReservationID: "r-" + in.ID,
				OwnerID:       e.cfg.AccountID,
				Instances:     []xmlInstance{xmlInstanceOf(in)},
			})
		}
	}
	slices.SortFunc(found, func(a, b xmlReservation) int {
		return cmp.Compare(a.Instances[0].InstanceID, b.Instances[0].InstanceID)
	})
	items, next, aerr := page(found, form, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return describeInstancesResponse{Reservations: items, NextToken: next}, nil
}

func instanceFilter(in *Instance, name string) ([]string, bool) {
	switch name {
	case "instance-id":
		return []string{in.ID}, true
	case "instance-state-name":
		return []string{in.State}, true
	case "vpc-id", "subnet-id", "network-interface.network-interface-id":
		// A terminated instance has lost its network interface.
		if in.State == StateTerminated {
			return nil, true
		}
		switch name {
		case "vpc-id":
			return []string{in.VPC}, true
		case "subnet-id":
			return []string{in.Subnet}, true
		}
		return []string{in.ENI}, true
	}
	return tagFilter(in.Tags, name)
}

// xmlInstanceOf describes an instance; a terminated one, as on EC2, without
// its network details.
func xmlInstanceOf(in *Instance) xmlInstance {
	x := xmlInstance{
		InstanceID:      in.ID,
		InstanceState:   xmlInstanceState{Code: stateCode(in.State), Name: in.State},
		Placement:       xmlPlacement{AvailabilityZone: in.Zone},
		SourceDestCheck: in.SourceDestCheck,
		Tags:            xmlTags(in.Tags),
	}
	if in.State == StateTerminated {
		return x
	}
	x.PrivateIPAddress = in.PrivateIP.String()
	x.SubnetID = in.Subnet
	x.VpcID = in.VPC
	x.NetworkInterfaces = []xmlNetworkInterface{{
		NetworkInterfaceID: in.ENI,
		SubnetID:           in.Subnet,
		VpcID:              in.VPC,
		MacAddress:         in.MAC,
		PrivateIPAddress:   in.PrivateIP.String(),
		SourceDestCheck:    in.SourceDestCheck,
		Status:             "in-use",
		Attachment:         xmlAttachment{DeviceIndex: 0, Status: "attached"},
	}}
	return x
}
