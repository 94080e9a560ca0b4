package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// ErrNoAgent is returned by Client calls when no agent serves the socket.
var ErrNoAgent = errors.New("no weft agent is running")

// Client talks to an agent's API socket. It is safe for concurrent use.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the agent whose run directory is runDir.
func NewClient(runDir string) *Client {
	path := filepath.Join(runDir, SocketName)
	return &Client{
		path: path,
		hc: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				// One connection per request: clients are cheap and made
				// per call (the lab polls agents with new ones), and idle
				// keep-alive connections would pile up as open files.
				DisableKeepAlives: true,
				DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", path)
				},
			},
		},
	}
}

// Status asks GET /v1/status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	err := c.do(ctx, http.MethodGet, "/v1/status", &s)
	return s, err
}

// Peers asks GET /v1/peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var p []Peer
	err := c.do(ctx, http.MethodGet, "/v1/peers", &p)
	return p, err
}

// Routes asks GET /v1/routes.
func (c *Client) Routes(ctx context.Context) (Routes, error) {
	var r Routes
	err := c.do(ctx, http.MethodGet, "/v1/routes", &r)
	return r, err
}

// Cloud asks GET /v1/cloud.
func (c *Client) Cloud(ctx context.Context) (Cloud, error) {
	var cl Cloud
	err := c.do(ctx, http.MethodGet, "/v1/cloud", &cl)
	return cl, err
}

// RotateKeys asks POST /v1/keys/rotate.
func (c *Client) RotateKeys(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/keys/rotate", nil)
}

// Leave asks POST /v1/leave.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/leave", nil)
}

func (c *Client) do(ctx context.Context, method, path string, out any) error {
	return c.send(ctx, method, path, nil, out)
}

// send makes one request, with in as its JSON body unless in is nil, and
// decodes the answer into out unless out is nil.
func (c *Client) send(ctx context.Context, method, path string, in, out any) error {
	var reqBody io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request of %s %s: %w", method, path, err)
		}
		reqBody = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://weft"+path, reqBody)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no socket answers at %s; start one with `weft agent`, or point --run-dir at its run directory)", ErrNoAgent, c.path)
		}
		return fmt.Errorf("%s %s on %s: %w", method, path, c.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s %s: agent says: %s", method, path, e.Error)
		}
		return fmt.Errorf("%s %s: agent answered %s", method, path, resp.Status)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}
