package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"
)

// modulePath identifies the repository root: the directory whose go.mod
// declares it.
const modulePath = "github.com/sanitel/sanitel"

// InfluxdPackage is what scripts/test.sh installs into <repo>/.cache/bin.
const InfluxdPackage = "github.com/influxdata/influxdb/cmd/influxd@v1.8.3"

// Binary returns the path of a server binary the tests need.
//
// mosquitto is looked for in $SANITEL_TEST_MOSQUITTO, then PATH, then
// /usr/sbin and /usr/local/sbin (Debian installs it in /usr/sbin, which is not
// on an ordinary user's PATH).
//
// influxd is looked for in $SANITEL_TEST_INFLUXD, then <repo>/.cache/bin (the
// pinned 1.8.3 that scripts/test.sh builds), then PATH. An influxd found on
// PATH is used only if it is version 1.x: InfluxDB 2.x ships a binary of the
// same name that reads neither the config nor the API these tests use.
//
// Any other name is looked up on PATH. The error says how to install what is
// missing.
func Binary(name string) (string, error) {
	switch name {
	case "mosquitto":
		return findBinary(name, EnvMosquitto, nil,
			[]string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto"},
			nil, "run scripts/test.sh, or: apt-get install -y mosquitto mosquitto-clients")
	case "influxd":
		var cached []string
		gobin := "<repo>/.cache/bin"
		if root, err := RepoRoot(); err == nil {
			gobin = filepath.Join(root, ".cache", "bin")
			cached = []string{filepath.Join(gobin, "influxd")}
		}
		return findBinary(name, EnvInfluxd, cached, nil, checkInfluxd1,
			fmt.Sprintf("run scripts/test.sh (it builds influxd once, ~3 minutes), or: GOBIN=%s go install %s", gobin, InfluxdPackage))
	default:
		p, err := exec.LookPath(name)
		if err != nil {
			return "", fmt.Errorf("%s not found on PATH: %w", name, err)
		}
		return p, nil
	}
}

// findBinary looks in env, then before, then PATH, then after. check, if not
// nil, vets a candidate found on PATH.
func findBinary(name, env string, before, after []string, check func(string) error, install string) (string, error) {
	if p := os.Getenv(env); p != "" {
		if err := isExecutable(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w; unset it or fix it (%s)", env, p, err, install)
		}
		return p, nil
	}
	var notes []string
	for _, p := range before {
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		if check == nil {
			return p, nil
		}
		err := check(p)
		if err == nil {
			return p, nil
		}
		notes = append(notes, fmt.Sprintf("%s on PATH is not usable: %v", p, err))
	}
	for _, p := range after {
		if isExecutable(p) == nil {
			return p, nil
		}
	}
	looked := append([]string{"$" + env}, before...)
	looked = append(looked, "PATH")
	looked = append(looked, after...)
	msg := fmt.Sprintf("%s not found (looked in %s)", name, strings.Join(looked, ", "))
	if len(notes) > 0 {
		msg += "; " + strings.Join(notes, "; ")
	}
	return "", fmt.Errorf("%s; %s", msg, install)
}

func isExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

var influxdVersions sync.Map // path → error from checkInfluxd1

// checkInfluxd1 accepts an influxd that reports version 1.x, or "unknown" as
// a `go install` build of 1.8 does.
func checkInfluxd1(p string) error {
	if v, ok := influxdVersions.Load(p); ok {
		err, _ := v.(error)
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "version").Output()
	switch {
	case err != nil:
		err = fmt.Errorf("%s version: %w", p, err)
	case bytes.Contains(out, []byte(" v1.")) || bytes.Contains(out, []byte(" vunknown")):
		err = nil
	default:
		err = fmt.Errorf("need InfluxDB 1.x, it reports %q", strings.TrimSpace(string(out)))
	}
	influxdVersions.Store(p, err)
	return err
}

// RepoRoot returns the root of the sanitel repository: the nearest directory
// above the working directory (a package directory, under go test) whose
// go.mod declares the sanitel module, or failing that the one above this
// source file.
func RepoRoot() (string, error) {
	if wd, err := os.Getwd(); err == nil {
		if root, ok := findModuleRoot(wd); ok {
			return root, nil
		}
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		if root, ok := findModuleRoot(filepath.Dir(file)); ok {
			return root, nil
		}
	}
	return "", errors.New("cannot find the sanitel repository root (a go.mod declaring " + modulePath + ")")
}

func findModuleRoot(dir string) (string, bool) {
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && f[1] == modulePath {
					return dir, true
				}
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}
