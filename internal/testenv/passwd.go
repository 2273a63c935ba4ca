package testenv

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// WritePasswordFile writes a mosquitto password file at path with the given
// users and clear-text passwords, hashed as mosquitto_passwd 2.x does
// ("$7$": PBKDF2-SHA512, 101 iterations), so tests need no mosquitto_passwd.
func WritePasswordFile(t testing.TB, path string, users map[string]string) {
	t.Helper()
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, u := range names {
		salt := make([]byte, 12)
		if _, err := rand.Read(salt); err != nil {
			t.Fatalf("testenv: password salt: %v", err)
		}
		const iterations = 101
		hash, err := pbkdf2.Key(sha512.New, users[u], salt, iterations, sha512.Size)
		if err != nil {
			t.Fatalf("testenv: hash password of %s: %v", u, err)
		}
		fmt.Fprintf(&b, "%s:$7$%d$%s$%s\n", u, iterations,
			base64.StdEncoding.EncodeToString(salt), base64.StdEncoding.EncodeToString(hash))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatalf("testenv: write password file: %v", err)
	}
}
