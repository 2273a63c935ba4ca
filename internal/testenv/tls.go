package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// GenerateTLS writes a fresh ECDSA P-256 PKI into dir: a CA, a server
// certificate for 127.0.0.1, ::1 and localhost, and a client certificate
// (CN "sanitel-test-client"), all signed by the CA and valid for a day. It
// returns the PEM files' paths; keys are PKCS #8.
func GenerateTLS(t testing.TB, dir string) (caFile, serverCert, serverKey, clientCert, clientKey string) {
	t.Helper()
	fail := func(err error) { t.Helper(); t.Fatalf("testenv: generate TLS files: %v", err) }
	now := time.Now()

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fail(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "sanitel test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		fail(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		fail(err)
	}

	leaf := func(cn string, usage x509.ExtKeyUsage, server bool) (certPEM, keyPEM []byte) {
		t.Helper()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			fail(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(t),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			fail(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			fail(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	}
	srvCert, srvKey := leaf("localhost", x509.ExtKeyUsageServerAuth, true)
	cliCert, cliKey := leaf("sanitel-test-client", x509.ExtKeyUsageClientAuth, false)

	write := func(name string, data []byte, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			fail(err)
		}
		return p
	}
	caFile = write("ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	serverCert = write("server.pem", srvCert, 0o644)
	serverKey = write("server-key.pem", srvKey, 0o600)
	clientCert = write("client.pem", cliCert, 0o644)
	clientKey = write("client-key.pem", cliKey, 0o600)
	return caFile, serverCert, serverKey, clientCert, clientKey
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatalf("testenv: serial number: %v", err)
	}
	return n.Add(n, big.NewInt(1))
}
