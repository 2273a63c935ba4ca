package api

import (
	"net/http"

	"github.com/sanitel/sanitel/tickets"
)

// Authenticate returns who holds token, checked exactly as a bearer token
// of a request is. With no tokens configured every token (also an empty
// one) is the anonymous admin.
func (s *Server) Authenticate(token string) (tickets.Actor, bool) {
	r := &http.Request{Header: http.Header{"Authorization": {"Bearer " + token}}}
	return s.authenticate(r)
}
