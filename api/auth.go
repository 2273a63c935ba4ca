package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/sanitel/sanitel/tickets"
)

// anonymous is who every request is when no tokens are configured.
var anonymous = tickets.Actor{Name: "anonymous", Role: tickets.RoleAdmin}

// handlerFunc is a handler that knows who is asking.
type handlerFunc func(w http.ResponseWriter, r *http.Request, who tickets.Actor)

// authed requires a valid bearer token before calling h.
func (s *Server) authed(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who, ok := s.authenticate(r)
		if !ok {
			s.fail(w, r, errorf(http.StatusUnauthorized, "missing or unknown bearer token"))
			return
		}
		h(w, r, who)
	})
}

// authenticate finds the token of r. Every configured token is compared,
// in constant time and on equal-length digests, so the time taken tells
// neither which token matched nor how much of one did.
func (s *Server) authenticate(r *http.Request) (tickets.Actor, bool) {
	if s.open {
		return anonymous, true
	}
	h := r.Header.Get("Authorization")
	scheme, given, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return tickets.Actor{}, false
	}
	given = strings.TrimSpace(given)
	if given == "" {
		return tickets.Actor{}, false
	}
	sum := sha256.Sum256([]byte(given))
	found := -1
	for i := range s.tokens {
		if subtle.ConstantTimeCompare(sum[:], s.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return tickets.Actor{}, false
	}
	return s.tokens[found].actor, true
}
