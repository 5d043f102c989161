package docker

import (
	"bufio"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
)

// loadCompose decodes compose.yaml (anchors and merge keys resolved, as
// Compose does) into plain JSON values.
func loadCompose(t *testing.T) any {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	// Round-trip through JSON: the validator takes JSON values.
	j, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(string(j)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func composeSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("testdata/compose-spec.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("compose_spec.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("compose_spec.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestComposeFileIsValid validates compose.yaml against the Compose
// specification's JSON schema, and that the schema does refuse a broken
// copy of it (an unknown service key, a depends_on condition that does not
// exist).
func TestComposeFileIsValid(t *testing.T) {
	s := composeSchema(t)
	doc := loadCompose(t)
	if err := s.Validate(doc); err != nil {
		t.Fatalf("compose.yaml does not follow the Compose specification:\n%v", err)
	}
	services := doc.(map[string]any)["services"].(map[string]any)
	api := services["api-1"].(map[string]any)
	api["comand"] = []any{"api"}
	if err := s.Validate(doc); err == nil {
		t.Error("the schema accepted an unknown service key")
	}
	delete(api, "comand")
	api["depends_on"] = map[string]any{"setup": map[string]any{"condition": "service_finished"}}
	if err := s.Validate(doc); err == nil {
		t.Error("the schema accepted an unknown depends_on condition")
	}
}

// TestComposeShape: every application service waits for the setup job,
// which waits for every Kafka, ZooKeeper and Temporal service to be
// healthy; every long-running service has a healthcheck (or disables the
// image's on purpose); state lives in named volumes.
func TestComposeShape(t *testing.T) {
	var doc struct {
		Services map[string]struct {
			Image       string         `yaml:"image"`
			Command     []string       `yaml:"command"`
			DependsOn   map[string]any `yaml:"depends_on"`
			Healthcheck map[string]any `yaml:"healthcheck"`
			Volumes     []string       `yaml:"volumes"`
		} `yaml:"services"`
		Volumes map[string]any `yaml:"volumes"`
	}
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	setup, ok := doc.Services["setup"]
	if !ok || len(setup.Command) == 0 || setup.Command[0] != "setup" {
		t.Fatalf("no setup job running cloudservers setup: %+v", setup)
	}
	for name, svc := range doc.Services {
		cond := func(dep string) string {
			if m, ok := svc.DependsOn[dep].(map[string]any); ok {
				s, _ := m["condition"].(string)
				return s
			}
			return ""
		}
		app := svc.Image == "cloudservers:latest"
		switch {
		case app && name != "setup":
			if c := cond("setup"); c != "service_completed_successfully" {
				t.Errorf("%s: depends on setup with %q, want service_completed_successfully", name, c)
			}
		case name == "setup":
			for dep := range doc.Services {
				if strings.HasPrefix(dep, "kafka-") || strings.HasPrefix(dep, "zookeeper-") || dep == "temporal" {
					if c := cond(dep); c != "service_healthy" {
						t.Errorf("setup: depends on %s with %q, want service_healthy", dep, c)
					}
				}
			}
		}
		if svc.Healthcheck == nil && name != "temporal-ui" {
			t.Errorf("%s: no healthcheck", name)
		}
		for _, v := range svc.Volumes {
			src := strings.SplitN(v, ":", 2)[0]
			if !strings.HasPrefix(src, ".") && !strings.HasPrefix(src, "/") {
				if _, ok := doc.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared", name, src)
				}
			}
		}
	}
	count := map[string]int{}
	for name := range doc.Services {
		count[strings.SplitN(name, "-", 2)[0]]++
	}
	if count["kafka"] != 3 || count["zookeeper"] != 3 {
		t.Errorf("want 3 Kafka and 3 ZooKeeper services, have %v", count)
	}
	if _, err := os.Stat("clouds.yaml.example"); err != nil {
		t.Errorf("the documented clouds.yaml example: %v", err)
	}
}

// instruction is one line of a Dockerfile (continuations joined).
type instruction struct {
	cmd, args string
}

// buildStage returns the instructions of the Dockerfile's first stage.
func buildStage(t *testing.T) []instruction {
	t.Helper()
	f, err := os.Open("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []instruction
	var cur string
	sc := bufio.NewScanner(f)
	froms := 0
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur += strings.TrimSuffix(line, "\\") + " "
			continue
		}
		line, cur = cur+line, ""
		cmd, args, _ := strings.Cut(line, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			froms++
			if froms > 1 {
				break
			}
			continue
		}
		out = append(out, instruction{cmd, strings.TrimSpace(args)})
	}
	return out
}

// dockerignore reads ../.dockerignore: plain paths and globs relative to
// the context; anything else fails the test rather than being misread.
func dockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var pats []string
	for _, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, "!") || strings.Contains(l, "**") {
			t.Fatalf(".dockerignore line %q: this test reads only plain paths and globs", l)
		}
		pats = append(pats, strings.Trim(l, "/"))
	}
	return pats
}

// copyInto copies src (a file or folder under the context) to dst,
// leaving out what .dockerignore excludes.
func copyInto(t *testing.T, context, src, dst string, ignore []string) {
	t.Helper()
	root := filepath.Join(context, src)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(context, p)
		for _, pat := range ignore {
			if ok, _ := filepath.Match(pat, filepath.ToSlash(rel)); ok {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		inner, _ := filepath.Rel(root, p)
		target := filepath.Join(dst, inner)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatalf("COPY %s: %v", src, err)
	}
}

// TestDockerfileBuildStage runs the Dockerfile's build stage here, in an
// empty folder standing for the image's file system: each COPY brings
// only what it names from the build context (the repository, less
// .dockerignore), each RUN runs at that point with only what was copied
// before it. So a step that needs a file copied later (go mod download
// before third_party/ was there) fails here as it fails in docker build.
// The Go toolchain and module cache are this machine's.
func TestDockerfileBuildStage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	context, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	ignore := dockerignore(t)
	fsRoot := t.TempDir() // the stage's "/"
	workdir := fsRoot
	ran := 0
	for _, in := range buildStage(t) {
		switch in.cmd {
		case "WORKDIR":
			workdir = filepath.Join(fsRoot, in.args)
			if err := os.MkdirAll(workdir, 0o755); err != nil {
				t.Fatal(err)
			}
		case "COPY":
			if strings.HasPrefix(in.args, "--") || strings.HasPrefix(in.args, "[") {
				t.Fatalf("COPY %s: this test reads only COPY <src>... <dest>", in.args)
			}
			parts := strings.Fields(in.args)
			dest := parts[len(parts)-1]
			destDir := filepath.Join(workdir, dest)
			if filepath.IsAbs(dest) {
				destDir = filepath.Join(fsRoot, dest)
			}
			for _, src := range parts[:len(parts)-1] {
				fi, err := os.Stat(filepath.Join(context, src))
				if err != nil {
					t.Fatalf("COPY %s: %v", src, err)
				}
				target := destDir
				if !fi.IsDir() {
					target = filepath.Join(destDir, filepath.Base(src))
				}
				copyInto(t, context, src, target, ignore)
			}
		case "RUN":
			// Absolute paths in the command are the stage's: rebase them.
			script := strings.ReplaceAll(in.args, " /", " "+fsRoot+"/")
			cmd := exec.Command("sh", "-c", script)
			cmd.Dir = workdir
			// GOFLAGS=-mod=mod would hide a missing go.sum line; the
			// image has neither GOFLAGS nor a workspace.
			cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off")
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("RUN %s: %v\n%s", in.args, err, out)
			}
			ran++
		case "ENV", "ARG", "LABEL", "USER":
			t.Fatalf("%s in the build stage: teach this test about it", in.cmd)
		}
	}
	if ran < 2 {
		t.Fatalf("the build stage ran %d RUN steps, want the download and the build", ran)
	}
	bin := filepath.Join(fsRoot, "out", "cloudservers")
	out, err := exec.Command(bin, "help").CombinedOutput()
	if !strings.Contains(string(out), "setup") {
		t.Fatalf("the built binary: %v\n%s", err, out)
	}
}
