package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BadFiles loads every file matching glob (at least min of them) with load,
// each in a subtest named after the file without ext, and requires an error
// that contains every "# want: …" line of the file and none of its
// "# not: …" lines. It is how config and rules files that must be refused
// are tested.
func BadFiles(t *testing.T, glob, ext string, min int, load func(file string) error) {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < min {
		t.Fatalf("only %d files match %s, want at least %d", len(files), glob, min)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ext), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var wants, nots []string
			for line := range strings.SplitSeq(string(data), "\n") {
				if w, ok := strings.CutPrefix(line, "# want: "); ok {
					wants = append(wants, w)
				}
				if w, ok := strings.CutPrefix(line, "# not: "); ok {
					nots = append(nots, w)
				}
			}
			if len(wants) == 0 {
				t.Fatal("no '# want:' line")
			}
			err = load(file)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\ndoes not contain %q", err, w)
				}
			}
			for _, w := range nots {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\ncontains %q", err, w)
				}
			}
		})
	}
}
