package cloudservers_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var (
	guideBlockRE = regexp.MustCompile("(?s)(<!-- from (\\S+) -->\n)?```go\n(.*?)```\n")
	guideRowRE   = regexp.MustCompile("(?m)^\\| (`[^|]+) \\|")
	guidePathRE  = regexp.MustCompile("`([^`]+)`")
)

// docs/writing-a-saga.md shows the real code of the rebuild operation:
// every Go block names the file it comes from and is, word for word, in
// that file, which compiles and whose tests run. Every file its table
// lists exists.
func TestGuideCodeIsTheRealCode(t *testing.T) {
	page, err := os.ReadFile(filepath.Join("docs", "writing-a-saga.md"))
	if err != nil {
		t.Fatal(err)
	}
	blocks := guideBlockRE.FindAllStringSubmatch(string(page), -1)
	if len(blocks) < 5 {
		t.Fatalf("%d Go blocks in the guide: the pattern no longer finds them", len(blocks))
	}
	for _, b := range blocks {
		file, code := b[2], b[3]
		if file == "" {
			t.Errorf("a Go block names no file (<!-- from FILE --> before it):\n%s", code)
			continue
		}
		src, err := os.ReadFile(file)
		if err != nil {
			t.Errorf("a Go block names %s: %v", file, err)
			continue
		}
		if !strings.Contains(string(src), code) {
			t.Errorf("this block of the guide is no longer in %s:\n%s", file, code)
		}
	}
	rows := guideRowRE.FindAllStringSubmatch(string(page), -1)
	if len(rows) < 8 {
		t.Fatalf("%d rows in the guide's table of files", len(rows))
	}
	for _, r := range rows {
		for _, p := range guidePathRE.FindAllStringSubmatch(r[1], -1) {
			path := p[1]
			if strings.HasSuffix(path, "/") {
				path = strings.TrimSuffix(path, "/")
			}
			if m, _ := filepath.Glob(path); len(m) == 0 && !strings.Contains(path, " ") {
				t.Errorf("the guide's table lists %s, which does not exist", p[1])
			}
		}
	}
}
