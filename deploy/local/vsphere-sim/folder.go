package main

import (
	"context"
	"net/http"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// guardFolder puts session checks and a per-stream rate limit in front of the simulator's /folder handler.
//
// The simulator registers "/folder/" itself when the server is created; method-qualified patterns are more
// specific (Go 1.22+ ServeMux), so they take those requests first without a registration conflict.
func guardFolder(mux *http.ServeMux, model *simulator.Model, c *config) {
	sm := model.Map().SessionManager()
	active := func(r *http.Request) bool {
		cookie, err := r.Cookie(soap.SessionCookieName)
		if err != nil {
			return false
		}
		req := &types.SessionIsActive{This: sm.Self, SessionID: cookie.Value, UserName: c.username}
		body, ok := sm.SessionIsActive(model.Service.Context, req).(*methods.SessionIsActiveBody)
		return ok && body.Res != nil && body.Res.Returnval
	}
	handler := func(w http.ResponseWriter, r *http.Request) {
		if c.folderAuth && !active(r) {
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		if c.folderRate > 0 && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			w = &throttled{ResponseWriter: w, ctx: r.Context(), rate: float64(c.folderRate), start: time.Now()}
		}
		model.Service.ServeDatastore(w, r)
	}
	for _, m := range []string{"GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"} {
		mux.HandleFunc(m+" /folder/", handler)
	}
}

// throttled paces a response body to rate bytes/s, like one ESXi NFC stream. It deliberately does not
// implement io.ReaderFrom, so the file server copies through Write instead of sendfile.
type throttled struct {
	http.ResponseWriter
	ctx   context.Context
	rate  float64
	start time.Time
	sent  int64
}

func (t *throttled) Write(p []byte) (int, error) {
	const slice = 32 << 10
	written := 0
	for len(p) > 0 {
		n, err := t.ResponseWriter.Write(p[:min(len(p), slice)])
		written += n
		t.sent += int64(n)
		if err != nil {
			return written, err
		}
		p = p[n:]
		due := t.start.Add(time.Duration(float64(t.sent) / t.rate * float64(time.Second)))
		if wait := time.Until(due); wait > 0 {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-t.ctx.Done():
				timer.Stop()
				return written, t.ctx.Err()
			}
		}
	}
	return written, nil
}
