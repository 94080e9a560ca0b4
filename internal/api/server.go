package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Backend answers the API's questions. Its methods are called concurrently.
type Backend interface {
	Status() Status
	Peers() []Peer
	// Routes checks the data plane against the kernel; it may block briefly.
	Routes(ctx context.Context) (Routes, error)
	// Cloud reports the cloud adapter's state.
	Cloud() Cloud
	// RotateKeys puts a new WireGuard key pair in force and gossips it.
	RotateKeys(ctx context.Context) error
	// Leave takes the node out of the cluster for good; the agent stops after.
	Leave(ctx context.Context) error
}

// Server serves the API on a unix socket.
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
	log  *slog.Logger
}

// Listen creates the socket <runDir>/weft.sock with mode 0600 (removing a
// stale one left by a dead agent) and returns a server that is not yet serving.
func Listen(runDir string, b Backend, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, fmt.Errorf("create run dir %s: %w", runDir, err)
	}
	path := filepath.Join(runDir, SocketName)
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen on %s: another agent is serving there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Status()) })
	mux.HandleFunc("GET /v1/peers", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Peers()) })
	mux.HandleFunc("GET /v1/routes", func(w http.ResponseWriter, r *http.Request) {
		rs, err := b.Routes(r.Context())
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, rs)
	})
	mux.HandleFunc("GET /v1/cloud", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, b.Cloud()) })
	mux.HandleFunc("POST /v1/keys/rotate", func(w http.ResponseWriter, r *http.Request) {
		if err := b.RotateKeys(r.Context()); err != nil {
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	mux.HandleFunc("POST /v1/leave", func(w http.ResponseWriter, r *http.Request) {
		if err := b.Leave(r.Context()); err != nil {
			writeJSON(w, http.StatusInternalServerError, Error{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, struct{}{})
	})
	if pb, ok := b.(PolicyBackend); ok {
		registerPolicy(mux, pb)
	}
	return &Server{
		path: path,
		ln:   ln,
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		log:  log.With("component", "api"),
	}, nil
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Serve serves until Close; it blocks and returns nil after Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve api on %s: %w", s.path, err)
	}
	return nil
}

// Close stops serving (letting answers in flight finish for up to a second) and removes the socket.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, fmt.Errorf("remove socket %s: %w", s.path, rerr))
	}
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away: nothing to do
}
